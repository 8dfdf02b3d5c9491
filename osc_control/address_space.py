"""The OSC address space of ``voxflip live``: what each address accepts and what it becomes.

:func:`parse_message` is a pure function (no I/O, no state, never raises): it turns one
OSC message, as python-osc decodes it (``address`` and a list of Python values), into a
:class:`~voxflip.engine.params.ParamChange`, a :class:`StatusRequest` or a
:class:`Rejection` that says why not. :data:`ADDRESSES` is the same table as data, for
the docs and for listings (:func:`format_addresses`).

Addresses are matched literally: OSC address patterns (``*``, ``?``, ``[...]``, ``{...}``)
are not expanded, so ``/voxflip/*`` is an unknown address rather than "set everything".
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from voxflip.engine.direction import Direction
from voxflip.engine.params import ParamChange

#: every reason a message can be rejected for, in the order the docs list them
REJECTION_REASONS: tuple[str, ...] = (
    "malformed",        # the datagram is not valid OSC (server)
    "unknown_address",  # not an address of the table below
    "bad_args",         # wrong number or type of arguments, or a NaN/inf number
    "out_of_range",     # right type, outside the allowed range or set
    "not_allowed",      # sender outside the allowlist (server), or a preset name that is not a plain name
    "queue_full",       # valid, but the engine's parameter queue had no room (server)
    "rate_limited",     # more datagrams per second than the server takes (server); dropped unread
)

MODES: tuple[str, ...] = (*(d.value for d in Direction), "bypass")
PREFIX = "/voxflip"
FX_PREFIX = PREFIX + "/fx/"

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")   # fx plugin / parameter names and preset names
_MAX_SHOWN = 60                               # characters of a received value quoted in a detail


@dataclass(frozen=True)
class StatusRequest:
    """A request for a ``/voxflip/status`` reply (no parameter changes).

    Attributes:
        source: who asked (e.g. ``"osc 127.0.0.1:53211"``), for logs.
    """

    source: str = ""


@dataclass(frozen=True)
class Rejection:
    """Why a message was not turned into a :class:`ParamChange`.

    Attributes:
        reason: one of :data:`REJECTION_REASONS`.
        detail: one line naming the value received and what is allowed.
        address: the address of the message (empty for whole-datagram rejections).
    """

    reason: str
    detail: str
    address: str = ""


@dataclass(frozen=True)
class AddressSpec:
    """One row of the address table.

    Attributes:
        address: the OSC address; ``<name>`` and ``<param>`` stand for ``[A-Za-z0-9_-]{1,64}``.
        args: the OSC type tags accepted (``f`` float32, ``d`` float64, ``i`` int32,
            ``h`` int64, ``s`` string, ``T``/``F`` true/false), alternatives separated by ``|``.
        param: the :class:`ParamChange` name produced, or ``None`` (status).
        value: what :attr:`ParamChange.value` holds.
        allowed: the accepted values, with units.
        rejected: what is refused, and under which reason.
    """

    address: str
    args: str
    param: str | None
    value: str
    allowed: str
    rejected: str


ADDRESSES: tuple[AddressSpec, ...] = (
    AddressSpec("/voxflip/mode", "s", "mode", "str",
                "'speech', 'singing' or 'bypass' (lower case)",
                "another string: out_of_range; not a string or not one argument: bad_args"),
    AddressSpec("/voxflip/mix", "f|d|i", "mix", "float",
                "0..1 dry/wet (0 = dry input only, 1 = converted only)",
                "outside 0..1: out_of_range; NaN/inf, a string, a bool or not one argument: bad_args"),
    AddressSpec("/voxflip/gain", "f|d|i", "gain", "float",
                "-60..24 dB output gain",
                "outside -60..24: out_of_range; NaN/inf, other types or counts: bad_args"),
    AddressSpec("/voxflip/note", "i | i f | i i", "note", "(int note, float velocity)",
                "note: MIDI number 0..127 (int, or a float with no fraction); velocity: float 0..1, "
                "or int 0..127 (divided by 127); missing = 1.0; velocity 0 = note off",
                "note or velocity outside its range: out_of_range; a fractional note, NaN/inf, "
                "other types or counts: bad_args"),
    AddressSpec("/voxflip/transpose", "f|d|i", "transpose", "float",
                "-24..24 semitones",
                "outside -24..24: out_of_range; NaN/inf, other types or counts: bad_args"),
    AddressSpec("/voxflip/s2s/duration", "f|d|i", "duration", "float",
                "0..1 vowel shortening amount (singing -> speech)",
                "outside 0..1: out_of_range; NaN/inf, other types or counts: bad_args"),
    AddressSpec("/voxflip/fx/<name>/<param>", "f|d|i|T|F", "fx", "(str name, str param, float or bool)",
                "any finite number (int is sent on as float) or true/false; the engine checks the "
                "range against the plugin",
                "a name or param outside [A-Za-z0-9_-]{1,64}: unknown_address; NaN/inf, strings, "
                "other counts: bad_args"),
    AddressSpec("/voxflip/preset", "s", "preset", "str",
                "a preset name: [A-Za-z0-9_-]{1,64}, never a path",
                "a path separator, '..', a leading dot or any other character: not_allowed; "
                "not one string: bad_args"),
    AddressSpec("/voxflip/status", "(none)", None, "-",
                "no arguments; the reply goes to the sender's address and port",
                "any argument: bad_args"),
)


def format_addresses() -> str:
    """The address table as plain text, one address a line (for ``--help``-style listings)."""
    width = max(len(spec.address) for spec in ADDRESSES)
    args_width = max(len(spec.args) for spec in ADDRESSES)
    return "\n".join(f"{spec.address:<{width}}  {spec.args:<{args_width}}  {spec.allowed}" for spec in ADDRESSES)


def parse_message(address: str, args: Sequence[Any], *, source: str = "") -> ParamChange | StatusRequest | Rejection:
    """Validate one OSC message and say what it asks for.

    Args:
        address: the OSC address, matched literally against :data:`ADDRESSES`.
        args: the decoded arguments (python-osc: ``int`` for ``i``/``h``, ``float`` for
            ``f``/``d``, ``str`` for ``s``, ``bool`` for ``T``/``F``, ``None``, ``bytes``, ...).
        source: copied into the result's ``source`` (e.g. ``"osc 127.0.0.1:53211"``).

    Returns:
        A :class:`ParamChange` for a valid parameter message, a :class:`StatusRequest`
        for ``/voxflip/status``, or a :class:`Rejection`. Never raises.
    """
    if not isinstance(address, str):
        return Rejection("unknown_address", f"address {_show(address)} is not a string", "")
    try:
        args = list(args)
    except TypeError:
        return Rejection("bad_args", f"{_show(address)}: arguments {_show(args)} are not a sequence", address)
    rule = _RULES.get(address)
    if rule is not None:
        outcome = rule(address, args)
    elif address.startswith(FX_PREFIX):
        outcome = _fx(address, args)
    else:
        return Rejection("unknown_address", f"{_show(address)} is not a voxflip address; known: /voxflip/"
                         "{mode,mix,gain,note,transpose,s2s/duration,fx/<name>/<param>,preset,status} "
                         "(matched literally: no OSC wildcards)", address)
    if isinstance(outcome, Rejection):
        return outcome
    if isinstance(outcome, StatusRequest):
        return StatusRequest(source=source)
    name, value = outcome
    return ParamChange(name, value, source)


# --- one rule per address: (address, args) -> (name, value) | StatusRequest | Rejection ---

_Outcome = tuple[str, Any] | StatusRequest | Rejection


def _mode(address: str, args: list[Any]) -> _Outcome:
    if len(args) != 1 or not isinstance(args[0], str):
        return _bad_args(address, args, "one string: 'speech', 'singing' or 'bypass'")
    if args[0] not in MODES:
        return Rejection("out_of_range", f"{address} {_show(args[0])} is not a mode; "
                         "use 'speech', 'singing' or 'bypass'", address)
    return "mode", args[0]


def _ranged(name: str, low: float, high: float, unit: str) -> Any:
    def rule(address: str, args: list[Any]) -> _Outcome:
        allowed = f"one number {low:g}..{high:g}{unit}"
        if len(args) != 1:
            return _bad_args(address, args, allowed)
        value = _finite(address, args[0], allowed)
        if isinstance(value, Rejection):
            return value
        if not low <= value <= high:
            return Rejection("out_of_range", f"{address} {_show(args[0])} is outside {low:g}..{high:g}{unit}", address)
        return name, value
    return rule


def _note(address: str, args: list[Any]) -> _Outcome:
    allowed = "int note 0..127, then optionally velocity (float 0..1 or int 0..127)"
    if not 1 <= len(args) <= 2:
        return _bad_args(address, args, allowed)
    note = _finite(address, args[0], allowed)
    if isinstance(note, Rejection):
        return note
    if note != int(note):
        return Rejection("bad_args", f"{address} note {_show(args[0])} is not a whole MIDI note number; "
                         f"use {allowed}", address)
    if not 0 <= note <= 127:
        return Rejection("out_of_range", f"{address} note {_show(args[0])} is outside 0..127", address)
    if len(args) == 1:
        return "note", (int(note), 1.0)
    raw = args[1]
    velocity = _finite(address, raw, allowed)
    if isinstance(velocity, Rejection):
        return velocity
    if isinstance(raw, int):
        if not 0 <= raw <= 127:
            return Rejection("out_of_range", f"{address} int velocity {_show(raw)} is outside 0..127 "
                             "(or send a float 0..1)", address)
        velocity = raw / 127.0
    elif not 0.0 <= velocity <= 1.0:
        return Rejection("out_of_range", f"{address} float velocity {_show(raw)} is outside 0..1 "
                         "(or send an int 0..127)", address)
    return "note", (int(note), velocity)


def _fx(address: str, args: list[Any]) -> _Outcome:
    parts = address[len(FX_PREFIX):].split("/")
    if len(parts) != 2 or not all(_NAME.fullmatch(part) for part in parts):
        return Rejection("unknown_address", f"{_show(address)} is not /voxflip/fx/<name>/<param> with name "
                         "and param made of [A-Za-z0-9_-], 1..64 characters each", address)
    allowed = "one finite number or true/false (T/F)"
    if len(args) != 1:
        return _bad_args(address, args, allowed)
    raw = args[0]
    if isinstance(raw, bool):
        return "fx", (parts[0], parts[1], raw)
    value = _finite(address, raw, allowed)
    if isinstance(value, Rejection):
        return value
    return "fx", (parts[0], parts[1], value)


def _preset(address: str, args: list[Any]) -> _Outcome:
    if len(args) != 1 or not isinstance(args[0], str):
        return _bad_args(address, args, "one string: a preset name [A-Za-z0-9_-]{1,64}")
    name = args[0]
    if _NAME.fullmatch(name):
        return "preset", name
    if "/" in name or "\\" in name:
        why = "contains a path separator"
    elif ".." in name:
        why = "contains '..'"
    elif name.startswith("."):
        why = "starts with a dot"
    else:
        why = "is not 1..64 characters of [A-Za-z0-9_-]"
    return Rejection("not_allowed", f"{address} {_show(name)} {why}; presets are loaded by name only "
                     "([A-Za-z0-9_-]{1,64}), never by path", address)


def _status(address: str, args: list[Any]) -> _Outcome:
    if args:
        return _bad_args(address, args, "no arguments")
    return StatusRequest()


_RULES = {
    "/voxflip/mode": _mode,
    "/voxflip/mix": _ranged("mix", 0.0, 1.0, ""),
    "/voxflip/gain": _ranged("gain", -60.0, 24.0, " dB"),
    "/voxflip/note": _note,
    "/voxflip/transpose": _ranged("transpose", -24.0, 24.0, " semitones"),
    "/voxflip/s2s/duration": _ranged("duration", 0.0, 1.0, ""),
    "/voxflip/preset": _preset,
    "/voxflip/status": _status,
}


# --- helpers ---

def _finite(address: str, value: Any, allowed: str) -> float | Rejection:
    """``value`` as a finite float, or a ``bad_args`` rejection (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Rejection("bad_args", f"{address} got {_type_name(value)} {_show(value)}; expected {allowed}", address)
    number = float(value)
    if not math.isfinite(number):
        return Rejection("bad_args", f"{address} got {_show(value)}; expected {allowed} (finite)", address)
    return number


def _bad_args(address: str, args: list[Any], allowed: str) -> Rejection:
    types = ", ".join(_type_name(arg) for arg in args) or "no arguments"
    return Rejection("bad_args", f"{address} got {len(args)} argument(s) ({types}: {_show(args)}); "
                     f"expected {allowed}", address)


def _type_name(value: Any) -> str:
    return type(value).__name__


def _show(value: Any) -> str:
    """``repr(value)``, cut to a length that keeps a log line short (repr escapes newlines)."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."

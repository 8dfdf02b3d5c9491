"""What the effects of a chain accept: the built-in plugins and their parameters' ranges.

:func:`builtin_plugins` lists the pedalboard effect classes a preset may name;
:func:`param_specs` says what each parameter of a plugin accepts (a
:class:`ParamSpec`: kind, range with its unit, choices). The private helpers set
a checked value on a plugin and refuse filter cutoffs at or above Nyquist; the
:class:`~.effects.Chain` (``set_parameter``) and :mod:`.presets` use them.
``docs/effects.md`` ("Parameter ranges") lists the ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

try:
    import pedalboard
except ImportError as exc:  # pragma: no cover - pedalboard is a core dependency
    raise ImportError('effect chains need pedalboard. Install it with: pip install "pedalboard>=0.9.9"') from exc

_NOT_EFFECTS = frozenset({"Plugin", "PluginContainer", "Chain", "Mix", "Pedalboard", "IIRFilter", "ExternalPlugin"})


@cache
def _builtin_plugins() -> dict[str, type]:
    found = {}
    for name in dir(pedalboard):
        obj = getattr(pedalboard, name)
        if not (isinstance(obj, type) and issubclass(obj, pedalboard.Plugin)):
            continue
        if name.startswith("_") or name in _NOT_EFFECTS:
            continue
        if issubclass(obj, (pedalboard.PluginContainer, pedalboard.ExternalPlugin)):
            continue
        found[name] = obj
    return dict(sorted(found.items()))


def builtin_plugins() -> dict[str, type]:
    """The pedalboard effect classes a preset may name, by class name.

    Excludes file and device I/O, containers (``Pedalboard``, ``Chain``, ``Mix``),
    the ``IIRFilter`` base class and external (VST3/AU) plugin classes.
    """
    return dict(_builtin_plugins())


# -- parameters -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    """What one plugin parameter accepts.

    pedalboard's built-in plugins expose no ranges, and only some of them check
    values on assignment (a HighpassFilter takes a negative cutoff and outputs
    Inf); so the built-in ranges below are ours: pedalboard's own checks where
    it has them, JUCE's documented limits, and otherwise a usable audio range.
    External (VST3/AU) plugins give their ranges through ``plugin.parameters``.
    """

    kind: str = "float"  # "float", "bool", "enum", "path" or "any"
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    unit: str = ""
    choices: tuple[str, ...] = ()
    enum: Any = None
    settable: bool = True
    required: bool = False

    def describe(self) -> str:
        if self.kind == "float":
            unit = f" {self.unit}" if self.unit else ""
            return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]{unit}"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "enum":
            return "one of " + ", ".join(self.choices)
        if self.kind == "path":
            return "a path to an audio file, relative to the preset"
        return "a value the plugin accepts"

    def coerce(self, label: str, value: Any, base: Path | None = None) -> Any:
        """Check ``value`` and convert it for ``setattr``; ValueError names ``label`` and the range."""
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise ValueError(f"{label}={value!r} must be a number in {self.describe()}")
            v = float(value)
            if not math.isfinite(v) or v < self.low or v > self.high or (self.low_open and v == self.low):
                raise ValueError(f"{label}={value!r} is outside the allowed range {self.describe()}")
            return v
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int | float) and value in (0, 1):  # OSC sends numbers
                return bool(value)
            raise ValueError(f"{label}={value!r} must be true or false")
        if self.kind == "enum":
            if isinstance(value, str) and value in self.choices:
                return self.enum.__members__[value] if self.enum is not None else value
            if self.enum is not None and isinstance(value, int | float) and not isinstance(value, bool):
                for member in self.enum.__members__.values():
                    if int(member) == value:
                        return member
            raise ValueError(f"{label}={value!r} must be {self.describe()}")
        if self.kind == "path":
            if not isinstance(value, str) or not value:
                raise ValueError(f"{label}={value!r} must be {self.describe()}")
            path = Path(value) if Path(value).is_absolute() or base is None else base / value
            if not path.is_file():
                raise ValueError(f"{label}={value!r} does not exist (looked at {path})")
            return str(path)
        return value


def _f(low: float, high: float, unit: str = "", *, low_open: bool = False) -> ParamSpec:
    return ParamSpec("float", low, high, low_open, unit)


def _enum(enum: Any) -> ParamSpec:
    return ParamSpec("enum", choices=tuple(enum.__members__), enum=enum)


_UNIT = _f(0, 1)
_BOOL = ParamSpec("bool")
_THRESHOLD = _f(-120, 0, "dB")
_ATTACK = _f(0, 1000, "ms")
_RELEASE = _f(0, 5000, "ms")
_CUTOFF = _f(0, 20_000, "Hz", low_open=True)  # and below Nyquist once the rate is known
_Q = _f(0, 40, low_open=True)
_EQ_GAIN = _f(-48, 48, "dB")
_QUALITY = _enum(pedalboard.Resample.Quality)
_BUILTIN_PARAMS: dict[str, dict[str, ParamSpec]] = {
    "Bitcrush": {"bit_depth": _f(0, 32, "bits")},
    "BrickwallLimiter": {"ceiling_db": _f(-60, 0, "dB"), "release_ms": _f(0, 5000, "ms", low_open=True),
                         "lookahead_ms": _f(0, 100, "ms", low_open=True), "true_peak": _BOOL},
    "Chorus": {"rate_hz": _f(0, 100, "Hz"), "depth": _UNIT, "centre_delay_ms": _f(1, 100, "ms"),
               "feedback": _f(-1, 1), "mix": _UNIT},
    "Clipping": {"threshold_db": _THRESHOLD},
    "Compressor": {"threshold_db": _THRESHOLD, "ratio": _f(1, 100), "attack_ms": _ATTACK, "release_ms": _RELEASE},
    "Convolution": {"impulse_response_filename": ParamSpec("path", settable=False, required=True), "mix": _UNIT},
    "Delay": {"delay_seconds": _f(0, 30, "s"), "feedback": _UNIT, "mix": _UNIT},
    "Distortion": {"drive_db": _f(0, 100, "dB")},
    "GSMFullRateCompressor": {"quality": _QUALITY},
    "Gain": {"gain_db": _f(-100, 40, "dB")},
    "HighShelfFilter": {"cutoff_frequency_hz": _CUTOFF, "gain_db": _EQ_GAIN, "q": _Q},
    "HighpassFilter": {"cutoff_frequency_hz": _CUTOFF},
    "Invert": {},
    "LadderFilter": {"mode": _enum(pedalboard.LadderFilter.Mode), "cutoff_hz": _CUTOFF, "resonance": _UNIT,
                     "drive": _f(1, 100)},
    "Limiter": {"threshold_db": _THRESHOLD, "release_ms": _RELEASE},
    "LowShelfFilter": {"cutoff_frequency_hz": _CUTOFF, "gain_db": _EQ_GAIN, "q": _Q},
    "LowpassFilter": {"cutoff_frequency_hz": _CUTOFF},
    "MP3Compressor": {"vbr_quality": _f(0, 10)},
    "NoiseGate": {"threshold_db": _THRESHOLD, "ratio": _f(1, 100), "attack_ms": _ATTACK, "release_ms": _RELEASE},
    "PeakFilter": {"cutoff_frequency_hz": _CUTOFF, "gain_db": _EQ_GAIN, "q": _Q},
    "Phaser": {"rate_hz": _f(0, 100, "Hz"), "depth": _UNIT, "centre_frequency_hz": _CUTOFF,
               "feedback": _f(-1, 1), "mix": _UNIT},
    "PitchShift": {"semitones": _f(-72, 72, "semitones")},
    "Resample": {"target_sample_rate": _f(0, 384_000, "Hz", low_open=True), "quality": _QUALITY},
    "Reverb": {k: _UNIT for k in ("room_size", "damping", "wet_level", "dry_level", "width", "freeze_mode")},
}
# IIR filters whose output blows up to Inf when the cutoff is at or above Nyquist (measured for high/lowpass).
_NYQUIST_LIMITED = ("HighpassFilter", "LowpassFilter", "HighShelfFilter", "LowShelfFilter", "PeakFilter")


def param_specs(plugin: pedalboard.Plugin | type) -> dict[str, ParamSpec]:
    """The parameters of a plugin (or built-in plugin class) and what each accepts."""
    if isinstance(plugin, pedalboard.ExternalPlugin):
        specs = {}
        for key, p in plugin.parameters.items():
            if p.type is float and p.min_value is not None and p.max_value is not None:
                specs[key] = _f(float(p.min_value), float(p.max_value), str(p.label or ""))
            elif p.type is bool:
                specs[key] = _BOOL
            else:
                specs[key] = ParamSpec("enum", choices=tuple(str(v) for v in p.valid_values))
        return specs
    cls = plugin if isinstance(plugin, type) else type(plugin)
    if cls.__name__ in _BUILTIN_PARAMS:
        return dict(_BUILTIN_PARAMS[cls.__name__])
    # A plugin class newer than this table: its properties, checked by pedalboard alone.
    return {
        k: ParamSpec("any", settable=v.fset is not None)
        for k in dir(cls)
        if isinstance(v := getattr(cls, k), property) and k not in ("is_effect", "is_instrument")
    }


def _set_param(plugin: pedalboard.Plugin, param: str, value: Any, label: str) -> None:
    try:
        setattr(plugin, param, value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{label}.{param}={value!r} was refused by pedalboard: {_one_line(exc)}") from exc


def _check_nyquist(plugin: pedalboard.Plugin, changes: dict[str, Any], sample_rate: int, label: str) -> None:
    if type(plugin).__name__ not in _NYQUIST_LIMITED:
        return
    cutoff = float(changes.get("cutoff_frequency_hz", plugin.cutoff_frequency_hz))
    if cutoff >= sample_rate / 2:
        raise ValueError(
            f"{label}.cutoff_frequency_hz={cutoff:g} Hz must be below the Nyquist frequency "
            f"({sample_rate / 2:g} Hz at {sample_rate} Hz)"
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

"""Effect chains: pedalboard plugins before and after a voxflip converter.

A :class:`Chain` is a list like a ``pedalboard.Pedalboard`` with at most one
voxflip :class:`~voxflip.engine.converters.base.Converter` in it: the plugins
before it are pre-effects, those after it post-effects. Audio is float32
``(samples,)`` or ``(channels, samples)``. ``chain(audio, sample_rate)`` renders
a whole stream (post-effect tails included); ``reset=False`` or
:meth:`Chain.process` streams one block, :meth:`Chain.flush` ends the stream.

Streaming output does not depend on block sizes for the block-size-invariant
plugins (docs/effects.md lists them). Two things make that so. Plugins are
always called with ``reset=False``, so reverb tails and compressor envelopes
cross block boundaries. And pedalboard re-prepares a plugin, which clears its
state, whenever a call brings a larger block than any before it; so at the
start of each stream every board is prepared once for :data:`BLOCK_SAMPLES`
and reset, and every later call passes that same ``buffer_size``.

Presets (:func:`load_preset`) are JSON files; ``docs/effects.md`` has the format.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from voxflip.engine.converters.base import Converter
from voxflip.engine.errors import ConfigError

from .streamer import Streamer

try:
    import pedalboard
except ImportError as exc:  # pragma: no cover - pedalboard is a core dependency
    raise ImportError('effect chains need pedalboard. Install it with: pip install "pedalboard>=0.9.9"') from exc

#: Largest block any plugin sees; longer blocks are split by pedalboard.
BLOCK_SAMPLES = 8192
#: flush() renders post-effect tails until they stay below this level ...
TAIL_THRESHOLD_DBFS = -90.0
#: ... for at least this long (plus the longest Delay time in the post-effects) ...
TAIL_QUIET_S = 0.1
#: ... but never for longer than this after the end of the input (a frozen reverb never decays).
MAX_TAIL_S = 5.0
MAX_CHANNELS = 32
_TAIL_BLOCK = 1024
_TAIL_THRESHOLD = 10.0 ** (TAIL_THRESHOLD_DBFS / 20.0)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_NOT_EFFECTS = frozenset({"Plugin", "PluginContainer", "Chain", "Mix", "Pedalboard", "IIRFilter", "ExternalPlugin"})
_TOP_KEYS = ("name", "description", "pre", "post")
_ITEM_KEYS = ("plugin", "plugin_path", "plugin_name", "name", "params")


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


def bundled_presets() -> dict[str, Path]:
    """The presets shipped in ``voxflip/data/presets``, by file stem."""
    folder = Path(str(files("voxflip") / "data" / "presets"))
    return {p.stem: p for p in sorted(folder.glob("*.json"))}


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


class _Stage:
    """One ``pedalboard.Pedalboard`` run as a stream: prepared once, counted, drained at the end.

    Blocks are ``(channels, samples)`` float32. With more than one channel a
    block no longer than the channel count would be read by pedalboard as
    ``(samples, channels)``; such samples are held back until more arrive.
    """

    def __init__(self, board: pedalboard.Pedalboard) -> None:
        self.board = board
        self.channels = 1
        self.sample_rate = 0
        self.latency_samples = 0
        self.reset()

    def reset(self) -> None:
        self.board.reset()
        self.samples_in = 0
        self.samples_out = 0
        self._held: np.ndarray | None = None

    def start(self, channels: int, sample_rate: int) -> None:
        """Prepare every plugin for ``BLOCK_SAMPLES`` blocks, measure what the board withholds, reset."""
        self.channels, self.sample_rate = channels, sample_rate
        self.reset()
        if len(self.board):
            probe = np.zeros((channels, BLOCK_SAMPLES), np.float32)
            self.latency_samples = BLOCK_SAMPLES - self._call(probe).shape[1]
            self.reset()
        else:
            self.latency_samples = 0

    def _call(self, x: np.ndarray) -> np.ndarray:
        y = self.board.process(x, float(self.sample_rate), buffer_size=BLOCK_SAMPLES, reset=False)
        return y.reshape(self.channels, -1)

    def _run(self, x: np.ndarray) -> np.ndarray:
        self.samples_in += x.shape[1]
        y = self._call(x)
        self.samples_out += y.shape[1]
        return y

    def process(self, x: np.ndarray) -> np.ndarray:
        if not len(self.board):
            return x
        if self._held is not None:
            x, self._held = np.concatenate([self._held, x], axis=1), None
        if x.shape[1] == 0:
            return x
        if self.channels > 1 and x.shape[1] <= self.channels:
            self._held = x
            return np.zeros((self.channels, 0), np.float32)
        return self._run(x)

    def finish(self, tail_s: float = 0.0, quiet_s: float = 0.0) -> np.ndarray:
        """End of input: return what the plugins still owe of it, then up to ``tail_s`` of their tail.

        The tail stops once the output has stayed below ``TAIL_THRESHOLD_DBFS``
        for ``quiet_s`` and is cut after its last sample above that level.
        """
        ch = self.channels
        if not len(self.board):
            return np.zeros((ch, 0), np.float32)
        owed = self.samples_in - self.samples_out
        pending = []
        if self._held is not None:
            held = self._held.shape[1]
            owed += held
            pending.append(np.concatenate([self._held, np.zeros((ch, ch + 1 - held), np.float32)], axis=1))
            self._held = None
        cap = owed + round(tail_s * self.sample_rate)
        quiet = round(quiet_s * self.sample_rate)
        pieces, produced, last_loud = [], 0, -1
        for _ in range((cap + BLOCK_SAMPLES) // _TAIL_BLOCK + 64):  # bounded even if a plugin never answers
            if pending:
                y = self._run(pending.pop())
            elif produced >= cap or (produced >= owed and produced - (last_loud + 1) >= quiet):
                break
            else:
                y = self._run(np.zeros((ch, _TAIL_BLOCK), np.float32))
            if y.shape[1]:
                loud = np.flatnonzero(np.abs(y).max(axis=0) > _TAIL_THRESHOLD)
                if loud.size:
                    last_loud = produced + int(loud[-1])
            pieces.append(y)
            produced += y.shape[1]
        out = np.concatenate(pieces, axis=1) if pieces else np.zeros((ch, 0), np.float32)
        keep = min(cap, max(owed, last_loud + 1))
        if out.shape[1] < keep:  # a plugin that never gave its latency back: pad with silence
            out = np.concatenate([out, np.zeros((ch, keep - out.shape[1]), np.float32)], axis=1)
        return out[:, :keep]


def _default_name(plugin: pedalboard.Plugin) -> str:
    if isinstance(plugin, pedalboard.ExternalPlugin):
        raw = str(getattr(plugin, "name", "") or type(plugin).__name__)
        return re.sub(r"[^a-z0-9_.-]+", "_", raw.lower()).strip("_") or "plugin"
    return type(plugin).__name__.lower()


def _as_channels(audio: Any) -> np.ndarray:
    if not isinstance(audio, np.ndarray):
        raise TypeError(f"audio must be a numpy float32 array, got {type(audio).__name__}")
    if audio.dtype not in (np.float32, np.float64):
        raise TypeError(f"audio must be float32 (or float64) in [-1, 1], got dtype {audio.dtype}")
    if audio.ndim == 1:
        audio = audio[None, :]
    elif audio.ndim != 2:
        raise ValueError(f"audio must be 1-D or 2-D: (samples,) or (channels, samples); got shape {audio.shape}")
    if not 1 <= audio.shape[0] <= MAX_CHANNELS:
        raise ValueError(
            f"audio must be (channels, samples) with 1 to {MAX_CHANNELS} channels; got shape {audio.shape}"
            " (for (samples, channels) pass audio.T)"
        )
    if audio.size and not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or Inf samples")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _check_rate(sample_rate: Any) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | float | np.number):
        raise TypeError(f"sample_rate must be a number of Hz, got {sample_rate!r}")
    if not (np.isfinite(sample_rate) and sample_rate > 0 and float(sample_rate).is_integer()):
        raise ValueError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    return int(sample_rate)


class Chain:
    """Pre-effects -> converter -> post-effects, called like a ``pedalboard.Pedalboard``.

    Args:
        items: pedalboard plugins and at most one voxflip ``Converter`` (or a
            ``Streamer`` around one). Without a converter every plugin goes to
            :attr:`post` (so :meth:`flush` renders their tails) and :attr:`pre`
            is empty.
        sample_rate: rate of the stream in Hz; else the rate of the first call.
        names: optional name per item (``None`` for the converter or for the
            default, the lowercase class name, numbered ``_2``, ``_3`` ... when
            repeated); used by :meth:`set_parameter`.
        name: a label for the chain (a preset's ``"name"``).

    Raises:
        TypeError: an item that is neither a plugin nor a converter.
        ValueError: two converters, one plugin instance twice, a bad or repeated name.
    """

    def __init__(
        self,
        items: Sequence[pedalboard.Plugin | Converter | Streamer],
        sample_rate: int | None = None,
        *,
        names: Sequence[str | None] | None = None,
        name: str = "chain",
    ) -> None:
        items = list(items)
        names = list(names) if names is not None else [None] * len(items)
        if len(names) != len(items):
            raise ValueError(f"names has {len(names)} entries for {len(items)} items; give one per item")
        self.name = name
        self.converter: Converter | None = None
        self.sample_rate = None if sample_rate is None else _check_rate(sample_rate)
        self.max_tail_s = MAX_TAIL_S
        self._streamer: Streamer | None = None
        pre: list[pedalboard.Plugin] = []
        post: list[pedalboard.Plugin] = []
        self._effects: dict[str, pedalboard.Plugin] = {}
        for i, item in enumerate(items):
            if isinstance(item, Converter | Streamer):
                if self.converter is not None:
                    raise ValueError(f"a chain holds at most one converter; item {i} is a second one")
                self._adopt_converter(item)
            elif isinstance(item, pedalboard.Plugin):
                if any(item is p for p in pre + post):
                    raise ValueError(f"item {i} ({item!r}) appears twice; use a separate plugin instance")
                (post if self.converter is not None else pre).append(item)
            else:
                raise TypeError(f"item {i} must be a pedalboard plugin or a voxflip Converter, got {type(item).__name__}")
        if self.converter is None:
            pre, post = [], pre
        explicit = [n for n in names if n is not None]
        for n in explicit:
            if not isinstance(n, str) or not _NAME_RE.match(n):
                raise ValueError(f"effect name {n!r} must be letters, digits, '_', '.', '-' (it goes into OSC addresses)")
            if explicit.count(n) > 1:
                raise ValueError(f"effect name {n!r} is used twice; names must be unique")
        for item, n in zip(items, names, strict=True):
            if isinstance(item, pedalboard.Plugin):
                self._effects[n if n is not None else self._free_name(_default_name(item), explicit)] = item
        self.pre = pedalboard.Pedalboard(pre)
        self.post = pedalboard.Pedalboard(post)
        self._pre, self._post = _Stage(self.pre), _Stage(self.post)
        self._started = False
        self._flushed = False
        self._ndim = 1
        self._channels = 1

    def _adopt_converter(self, item: Converter | Streamer) -> None:
        if isinstance(item, Streamer):
            if item.output_sample_rate != item.input_sample_rate:
                raise ValueError(
                    f"a chain's Streamer must return audio at its input rate; this one turns "
                    f"{item.input_sample_rate} Hz into {item.output_sample_rate} Hz"
                )
            if self.sample_rate is not None and self.sample_rate != item.input_sample_rate:
                raise ValueError(
                    f"sample_rate={self.sample_rate} Hz but the Streamer takes {item.input_sample_rate} Hz"
                )
            self.sample_rate = item.input_sample_rate
            self.converter, self._streamer = item.converter, item
        else:
            self.converter = item

    def _free_name(self, base: str, explicit: list[str | None]) -> str:
        taken = set(self._effects) | set(explicit)
        name, k = base, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        return name

    # -- public -------------------------------------------------------------------------------------
    @property
    def effects(self) -> dict[str, pedalboard.Plugin]:
        """The plugins by the names :meth:`set_parameter` takes, in chain order."""
        return dict(self._effects)

    @property
    def latency_s(self) -> float:
        """Delay from input to output: the converter's Streamer plus what the plugins withhold.

        pedalboard does not expose built-in plugins' latency; what each board
        withholds (e.g. BrickwallLimiter's lookahead, a VST3's reported latency)
        is measured when the board is prepared for the stream's sample rate.
        """
        rate = self.sample_rate
        if rate is None:
            return 0.0 if self.converter is None else self.converter.latency_samples / self.converter.sample_rate
        if not self._started:
            self._pre.start(self._channels, rate)
            self._post.start(1 if self.converter is not None else self._channels, rate)
        conv = 0.0 if self.converter is None else self._get_streamer(rate).latency_s
        return conv + (self._pre.latency_samples + self._post.latency_samples) / rate

    def __call__(self, audio: np.ndarray, sample_rate: float, reset: bool = True) -> np.ndarray:
        """Run audio through the chain, pedalboard style.

        Args:
            audio: float32 ``(samples,)`` or ``(channels, samples)`` in [-1, 1].
            sample_rate: its rate in Hz (a whole number).
            reset: True: a whole new stream -- reset everything, process
                ``audio``, flush; the result includes the converter's held-back
                output and the post-effects' tails, so it can be longer than
                ``audio``. False: one block of the current stream; returns what
                is ready (the converter holds lookahead back).

        Returns:
            float32, ``(samples,)`` for 1-D input, else ``(channels, samples)``;
            one channel when there is a converter, the input's channels otherwise.

        Raises:
            ValueError: a rate other than the stream's without ``reset``; bad audio.
            RuntimeError: ``reset=False`` after the stream was flushed.
        """
        rate = _check_rate(sample_rate)
        if reset:
            self.sample_rate = rate  # a new rate gets a new Streamer at the start of the stream
            self.reset()
            head = self._process(audio)
            return np.concatenate([head, self.flush()], axis=-1)
        if self.sample_rate is not None and rate != self.sample_rate:
            raise ValueError(
                f"sample_rate={rate} Hz differs from this stream's {self.sample_rate} Hz; "
                f"pass reset=True (or call reset()) to start a new stream at {rate} Hz"
            )
        self.sample_rate = rate
        return self._process(audio)

    def process(self, block: np.ndarray) -> np.ndarray:
        """One block of the stream at :attr:`sample_rate`: ``self(block, self.sample_rate, reset=False)``."""
        if self.sample_rate is None:
            raise ValueError("this chain has no sample rate yet; pass Chain(..., sample_rate=...) or call chain(audio, rate)")
        return self(block, self.sample_rate, reset=False)

    def flush(self) -> np.ndarray:
        """End the stream: the converter's remaining output, then the post-effects' tails.

        Tails are rendered from silence until they stay below -90 dBFS, at most
        :attr:`max_tail_s` (default 5 s) past the end of the input. A second
        call returns nothing.
        """
        if self._flushed or not self._started:
            self._flushed = True
            return self._shape(np.zeros((1, 0), np.float32))
        self._flushed = True
        y = self._pre.finish()
        if self._streamer is not None:
            parts = [self._streamer.process(y)] if y.shape[1] else []
            y = np.concatenate([*parts, self._streamer.flush()])[None, :]
        y = self._post.process(y)
        tail = self._post.finish(self.max_tail_s, TAIL_QUIET_S + self._longest_delay_s())
        return self._shape(np.concatenate([y, tail], axis=1))

    def reset(self) -> None:
        """Start a new stream: reset every plugin and the converter's stream."""
        if self._streamer is not None:
            self._streamer.reset()
        self._pre.reset()
        self._post.reset()
        self._started = False
        self._flushed = False

    def set_parameter(self, plugin_name: str, param: str, value: float | str | bool) -> None:
        """Change one plugin parameter (between blocks; for OSC ``/voxflip/fx/<name>/<param>``).

        Raises:
            ValueError: unknown plugin or parameter (the message lists what
                exists), a fixed parameter, or a value outside its range.
        """
        plugin = self._effects.get(plugin_name)
        if plugin is None:
            raise ValueError(
                f"unknown effect {plugin_name!r}; this chain has: {', '.join(self._effects) or 'no effects'}"
            )
        specs = param_specs(plugin)
        spec: ParamSpec | None = specs.get(param)
        if spec is None:
            raise ValueError(
                f"effect {plugin_name!r} ({type(plugin).__name__}) has no parameter {param!r}; "
                f"it has: {', '.join(specs) or 'none'}"
            )
        if not spec.settable:
            settable = [k for k, s in specs.items() if s.settable]
            raise ValueError(
                f"{plugin_name}.{param} is fixed when the plugin is built; settable: {', '.join(settable) or 'none'}"
            )
        coerced = spec.coerce(f"{plugin_name}.{param}", value)
        if self.sample_rate is not None:
            _check_nyquist(plugin, {param: coerced}, self.sample_rate, plugin_name)
        _set_param(plugin, param, coerced, plugin_name)

    @property
    def streamer(self) -> Streamer | None:
        """The Streamer running the converter (None before the first call or without a converter)."""
        return self._streamer

    # -- internals ----------------------------------------------------------------------------------
    def _get_streamer(self, rate: int) -> Streamer:
        if self._streamer is None or self._streamer.input_sample_rate != rate:
            self._streamer = Streamer(self.converter, rate)  # type: ignore[arg-type]
        return self._streamer

    def _longest_delay_s(self) -> float:
        return max((p.delay_seconds for p in self.post if isinstance(p, pedalboard.Delay)), default=0.0)

    def _start(self, channels: int) -> None:
        rate = self.sample_rate
        assert rate is not None
        for plugin_name, plugin in self._effects.items():
            _check_nyquist(plugin, {}, rate, plugin_name)
        if self.converter is not None:
            self._get_streamer(rate).reset()
        self._channels = channels
        self._pre.start(channels, rate)
        self._post.start(1 if self.converter is not None else channels, rate)
        self._started = True

    def _process(self, audio: np.ndarray) -> np.ndarray:
        if self._flushed:
            raise RuntimeError("this stream was flushed; call reset() (or pass reset=True) to start a new one")
        x = _as_channels(audio)
        self._ndim = audio.ndim
        if not self._started:
            self._start(x.shape[0])
        elif x.shape[0] != self._channels:
            raise ValueError(
                f"audio has {x.shape[0]} channels but this stream started with {self._channels}; "
                "call reset() to change the channel count"
            )
        y = self._pre.process(x)
        if self._streamer is not None:
            y = (self._streamer.process(y) if y.shape[1] else np.zeros(0, np.float32))[None, :]
        return self._shape(self._post.process(y))

    def _shape(self, y: np.ndarray) -> np.ndarray:
        y = y.astype(np.float32, copy=False)
        return y[0] if self._ndim == 1 and y.shape[0] == 1 else y


def _build_item(item: Any, where: str, base: Path) -> tuple[pedalboard.Plugin, str | None]:
    """Make one plugin from a preset item; raises ValueError with a message for ConfigError."""
    if not isinstance(item, dict):
        raise ValueError(f'must be an object like {{"plugin": "Reverb", "params": {{"room_size": 0.3}}}}, got {item!r}')
    unknown = [k for k in item if k not in _ITEM_KEYS]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; allowed keys: {', '.join(_ITEM_KEYS)}")
    if ("plugin" in item) == ("plugin_path" in item):
        raise ValueError('needs exactly one of "plugin" (a built-in class name) or "plugin_path" (a VST3/AU file)')
    name = item.get("name")
    if name is not None and not (isinstance(name, str) and _NAME_RE.match(name)):
        raise ValueError(f"name {name!r} must be letters, digits, '_', '.', '-' (it goes into OSC addresses)")
    params = item.get("params", {})
    if not isinstance(params, dict):
        raise ValueError(f'"params" must be an object of parameter: value, got {params!r}')
    if "plugin" in item:
        cls = builtin_plugins().get(item["plugin"]) if isinstance(item["plugin"], str) else None
        if cls is None:
            raise ValueError(f"unknown plugin {item['plugin']!r}; built-in effects: {', '.join(builtin_plugins())}")
        specs = param_specs(cls)
        kwargs = {}
        for key, value in params.items():
            if key not in specs:
                raise ValueError(f"{cls.__name__} has no parameter {key!r}; it has: {', '.join(specs) or 'none'}")
            kwargs[key] = specs[key].coerce(key, value, base=base)
        missing = [k for k, s in specs.items() if s.required and k not in kwargs]
        if missing:
            raise ValueError(f"{cls.__name__} needs params.{missing[0]} ({specs[missing[0]].describe()})")
        try:
            return cls(**kwargs), name
        except (ValueError, TypeError, RuntimeError) as exc:
            raise ValueError(f"{cls.__name__}: {_one_line(exc)}") from exc
    raw = item["plugin_path"]
    if not isinstance(raw, str):
        raise ValueError(f"plugin_path must be a string path to a .vst3 or .component, got {raw!r}")
    path = Path(raw) if Path(raw).is_absolute() else base / raw
    if not path.exists():
        raise ValueError(f"plugin_path {raw!r} does not exist (looked at {path})")
    try:
        plugin = pedalboard.load_plugin(str(path), plugin_name=item.get("plugin_name"))
    except Exception as exc:  # pedalboard raises ImportError, RuntimeError or ValueError here
        raise ValueError(f"pedalboard cannot load plugin_path {raw!r}: {_one_line(exc)}") from exc
    if plugin.is_instrument and not plugin.is_effect:
        raise ValueError(f"plugin_path {raw!r} is an instrument; a chain takes audio effects only")
    specs = param_specs(plugin)
    for key, value in params.items():
        if key not in specs:
            raise ValueError(f"{_default_name(plugin)} has no parameter {key!r}; it has: {', '.join(specs) or 'none'}")
        _set_param(plugin, key, specs[key].coerce(key, value), _default_name(plugin))
    return plugin, name


def load_preset(path: str | Path, *, converter: Converter | None = None) -> Chain:
    """Build a :class:`Chain` from a JSON preset (format in docs/effects.md).

    Args:
        path: the preset file, or the name of a bundled preset (``"hall"``).
            Relative ``plugin_path`` and impulse-response paths are taken
            from the preset's folder.
        converter: goes between ``pre`` and ``post``; without one the preset is
            just its effects.

    Raises:
        ConfigError: one line naming the file, the item (``pre[1]``) and what
            is allowed -- missing file, bad JSON, unknown key, plugin or
            parameter, a value of the wrong type or out of range, a plugin file
            that is missing or cannot be loaded, a name used twice.
    """
    path = Path(path)
    if not path.is_file() and str(path) in bundled_presets():
        path = bundled_presets()[str(path)]
    if not path.is_file():
        shipped = ", ".join(bundled_presets()) or "none"
        raise ConfigError(f"preset file {str(path)!r} does not exist; bundled presets: {shipped}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the preset: {_one_line(exc)}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: a preset is a JSON object {{"name": ..., "pre": [...], "post": [...]}}')
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; allowed keys: {', '.join(_TOP_KEYS)}")
    name = data.get("name", path.stem)
    if not isinstance(name, str):
        raise ConfigError(f"{path}: name must be a string, got {name!r}")
    items: list[pedalboard.Plugin | Converter] = []
    names: list[str | None] = []
    seen: dict[str, str] = {}
    for section in ("pre", "post"):
        entries = data.get(section, [])
        if not isinstance(entries, list):
            raise ConfigError(f"{path}: {section} must be a list of effect objects, got {entries!r}")
        for i, entry in enumerate(entries):
            where = f"{section}[{i}]"
            try:
                plugin, item_name = _build_item(entry, where, path.parent)
            except ValueError as exc:
                raise ConfigError(f"{path}: {where}: {exc}") from exc
            if item_name is not None:
                if item_name in seen:
                    raise ConfigError(
                        f"{path}: {where}: name {item_name!r} is already used by {seen[item_name]}; names must be unique"
                    )
                seen[item_name] = where
            items.append(plugin)
            names.append(item_name)
        if section == "pre" and converter is not None:
            items.append(converter)
            names.append(None)
    return Chain(items, names=names, name=name)

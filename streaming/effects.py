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

Plugin parameters and their ranges are in :mod:`.effect_params`; presets
(JSON files that build a chain, :func:`~.presets.load_preset`) in :mod:`.presets`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from voxflip.engine.converters.base import Converter

from .effect_params import ParamSpec, _check_nyquist, _set_param, param_specs
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
        call returns nothing. :meth:`flush_chunks` gives the same in pieces.
        """
        return self._shape(np.concatenate(list(self._flush_pieces()), axis=1))

    def flush_chunks(self) -> Iterator[np.ndarray]:
        """:meth:`flush` in pieces of bounded size (a converter's long tail, e.g. a melody that
        outlasts the speech, is never held whole); the pieces joined are what :meth:`flush` returns."""
        for piece in self._flush_pieces():
            if piece.shape[-1]:
                yield self._shape(piece)

    def _flush_pieces(self) -> Iterator[np.ndarray]:
        if self._flushed or not self._started:
            self._flushed = True
            yield np.zeros((1, 0), np.float32)
            return
        self._flushed = True
        y = self._pre.finish()
        if self._streamer is not None:
            if y.shape[1]:
                yield self._post.process(self._streamer.process(y)[None, :])
            for piece in self._streamer.flush_chunks():
                yield self._post.process(piece[None, :])
        else:
            yield self._post.process(y)
        yield self._post.finish(self.max_tail_s, TAIL_QUIET_S + self._longest_delay_s())

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


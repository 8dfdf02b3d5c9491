"""The face every converter shows to the streaming engine.

A converter works at its own ``sample_rate`` on a fixed grid of chunks of
``chunk_samples``. For each chunk the caller (normally
:class:`voxflip.streaming.Streamer`) hands over a window that holds
``context_samples`` of history, the chunk itself and ``lookahead_samples`` of
future input (zeros before the start of the stream and after its end). Because
the grid is fixed, the output cannot depend on how the caller's audio arrived.

``step`` returns whatever output the chunk completes: exactly
``chunk_samples`` for a time-preserving converter, any number (including 0)
for a converter that changes timing. ``finish`` returns what is left once the
input has ended; ``finish_chunks`` yields the same samples in pieces of bounded
size (a melody can leave minutes of singing after the speech has ended, and the
caller writes each piece before the next is made). All history lives in the
state object from ``init_state``.

``latency_samples`` is the worst-case delay from an input sample arriving to
its converted output leaving ``step``: one chunk plus the lookahead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, OptionError


def joined(pieces: Iterable[np.ndarray]) -> np.ndarray:
    """The pieces of a :meth:`Converter.finish_chunks` as one array (what :meth:`Converter.finish` returns)."""
    pieces = list(pieces)
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


@dataclass
class ConverterReport:
    """What a converter has to say about a finished run (shown by the CLI)."""

    warnings: list[str] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)


class Converter(ABC):
    """Base class of all converters (see the module docstring)."""

    name: str = "converter"
    sample_rate: int = 24_000
    chunk_samples: int = 480
    context_samples: int = 0
    lookahead_samples: int = 0
    #: True when the output has exactly as many samples as the input.
    time_preserving: bool = True

    @property
    def latency_samples(self) -> int:
        return self.chunk_samples + self.lookahead_samples

    @property
    def window_samples(self) -> int:
        return self.context_samples + self.chunk_samples + self.lookahead_samples

    @abstractmethod
    def init_state(self) -> Any:
        """A fresh state for a new stream."""

    @abstractmethod
    def step(self, window: np.ndarray, state: Any, *, input_end: int | None = None) -> np.ndarray:
        """Convert one chunk.

        Args:
            window: ``(window_samples,)`` float64 samples at ``sample_rate``:
                context, chunk, lookahead.
            state: from :meth:`init_state`; updated in place.
            input_end: absolute index of the first sample after the input,
                once the caller knows where the input ends (the window then
                holds zeros from there on); ``None`` while streaming.

        Returns:
            float32 mono output samples.
        """

    def finish(self, state: Any) -> np.ndarray:
        """Output still owed after the last chunk (empty for most converters)."""
        return np.zeros(0, np.float32)

    def finish_chunks(self, state: Any) -> Iterator[np.ndarray]:
        """:meth:`finish`'s output in pieces of bounded size, in order (their concatenation equals it).

        The default yields ``finish(state)`` once; a converter whose tail can be long (the singing
        converters: the rest of a melody) overrides this and :meth:`finish` with it.
        """
        yield self.finish(state)

    def report(self, state: Any) -> ConverterReport:
        """Warnings and statistics about the run so far."""
        return ConverterReport()

    def set_param(self, state: Any, name: str, value: float | str) -> None:
        """Change a run-time parameter between chunks (OSC, presets)."""
        raise ConfigError(f"converter {self.name!r} has no run-time parameter {name!r}")

    def describe(self) -> str:
        return f"{self.name} @ {self.sample_rate} Hz"

    def use_cores(self, cores: int) -> int:
        """An offline render may give this converter ``cores`` CPU cores; the output must not change.
        Returns how many it will use: by default one. Never called on the live path."""
        return 1

    def close(self) -> None:
        """Release what :meth:`use_cores` started (worker threads or processes); the converter stays usable."""
        return None

    def prefetch(self, windows: list[tuple[int, np.ndarray]]) -> None:
        """The ``(chunk index, window)`` pairs the next :meth:`step` calls will get, in order (offline,
        when several are at hand): a converter using several cores may start on them. By default,
        nothing."""
        return None


class DelayConverter(Converter):
    """Returns its input delayed by nothing but its own lookahead: the plumbing test converter.

    Its output equals its input exactly, so any difference in a streamed result
    is the streaming engine's fault.
    """

    def __init__(self, sample_rate: int = 24_000, chunk_samples: int = 480, lookahead_samples: int = 37) -> None:
        self.name = "delay"
        self.sample_rate = sample_rate
        self.chunk_samples = chunk_samples
        self.context_samples = 0
        self.lookahead_samples = lookahead_samples

    def init_state(self) -> dict[str, int]:
        return {"chunks": 0}

    def step(self, window: np.ndarray, state: dict[str, int], *, input_end: int | None = None) -> np.ndarray:
        state["chunks"] += 1
        return window[self.context_samples : self.context_samples + self.chunk_samples].astype(np.float32)


TRANSPOSE_RANGE = (-24.0, 24.0)


def check_transpose(value: float | str, name: str = "transpose_semitones") -> float:
    """A transposition in semitones, -24..24 (what every converter accepts)."""
    value = float(value)
    lo, hi = TRANSPOSE_RANGE
    if not lo <= value <= hi:
        raise OptionError(name, value, f"semitones is outside {lo:g}..{hi:g}")
    return value


@dataclass(frozen=True)
class ChunkGrid:
    """The chunk sizes a converter can stream: whole numbers of its analysis hop, up to a limit.

    This is the one place a chunk length changes unit: the API and the CLI speak
    milliseconds (``chunk_ms``), converters count hops (``chunk_frames``), and
    :class:`Converter` multiplies by the hop for samples.

    Attributes:
        hop_samples, sample_rate: the converter's analysis hop and rate.
        default_frames: the chunk of an offline render.
        live_frames: the chunk ``voxflip live`` uses (less latency, more calls per second).
        max_ms: the longest chunk accepted (a longer one buys nothing and costs memory).
    """

    hop_samples: int
    sample_rate: int
    default_frames: int
    live_frames: int
    max_ms: float = 1000.0

    @property
    def hop_ms(self) -> float:
        return 1000.0 * self.hop_samples / self.sample_rate

    @property
    def live_ms(self) -> float:
        return self.live_frames * self.hop_ms

    def accepts(self, chunk_ms: float) -> bool:
        try:
            self.frames(chunk_ms)
        except OptionError:
            return False
        return True

    def frames(self, chunk_ms: float | None, name: str = "chunk_ms") -> int:
        """Hops per chunk for ``chunk_ms`` (``None``: the default), or an :class:`OptionError`."""
        if chunk_ms is None:
            return self.default_frames
        ratio = float(chunk_ms) / self.hop_ms
        if not (0 < chunk_ms <= self.max_ms) or abs(ratio - round(ratio)) > 1e-6:
            raise OptionError(name, chunk_ms, f"ms must be a multiple of the {self.hop_ms:g} ms hop, "
                                              f"{self.hop_ms:g}..{self.max_ms:g} ms")
        return round(ratio)

    def check_frames(self, chunk_frames: int) -> int:
        """``chunk_frames`` itself, if it is a whole number of hops within the limit."""
        if int(chunk_frames) != chunk_frames or not 1 <= chunk_frames <= self.max_ms / self.hop_ms:
            raise OptionError("chunk_frames", chunk_frames,
                              f"must be a whole number of hops, 1..{int(self.max_ms / self.hop_ms)}")
        return int(chunk_frames)

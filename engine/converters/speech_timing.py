"""Speech timing for sung frames: held vowels and long pauses shortened, every consonant kept.

Singing is slow where speech is not: vowels are held for the length of a note and
phrases are separated by long rests. Consonants and the transitions into and out of
vowels are sung at about the pace they are spoken. :class:`SpeechTiming` therefore
time-scales the frame sequence (WORLD analysis frames, or any per-frame parameters)
with a rate that depends on what each frame is:

* **transient** (a consonant, a vowel onset or release, a glide): rate 1. Each one
  comes out exactly as it went in.
* **steady vowel**: a voiced frame whose smoothed spectral envelope changes by less
  than ``steady_db`` between ``span_ms`` before and ``span_ms`` after it. The first
  ``vowel_keep_ms`` of a steady stretch keep their pace, the rest go at ``vowel_rate``
  output frames per input frame, reached over ``vowel_ease_ms`` by a rate falling
  linearly from 1 (a vowel a little longer than a spoken one is barely touched, a held
  note still loses all but its start). (The first frames of a slow glide, before the envelope
  has moved by ``steady_db`` across the span, still count as steady.)
* **pause**: an unvoiced frame more than ``pause_db`` below the running peak level.
  The first ``pause_keep_ms`` of a pause are kept, the rest dropped.

Compression is time-scale modification of the parameter tracks, not frame dropping:
an output frame of a compressed stretch is the mean (log envelope, aperiodicity,
level) of the input frames it covers, so vibrato and other fast envelope motion are
averaged away rather than aliased.

The decision about a frame needs ``span_ms`` of future frames, so the converter that
uses it declares that much more lookahead. Nothing else looks ahead; the output is a
function of the frame sequence alone, whatever the chunk sizes.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..features.world import Frames

TRANSIENT, STEADY, PAUSE = 0, 1, 2
#: a steady stretch this long (frames) is a vowel nucleus (statistics: ``TimingState.vowels``) ...
VOWEL_MIN_FRAMES = 6
#: ... a new one unless the voice ran on from the last without an unvoiced frame or a dip this deep (dB)
VOWEL_DIP_DB = 3.0


@dataclass(frozen=True)
class SpeechTimingConfig:
    """Settings of :class:`SpeechTiming` (module docstring). Defaults measured on the real pairs of
    ``docs/results.md`` ("Speech timing").

    Attributes:
        vowel_keep_ms: length of a steady stretch kept at the sung pace.
        vowel_rate: output frames per input frame after that, in (0, 1].
        vowel_ease_ms: after ``vowel_keep_ms``, the rate falls linearly from 1 to ``vowel_rate``
            over this long (0: at once, the default until 2026-12-07).
        steady_db: RMS change (dB) of the smoothed envelope, 0-5 kHz, between the frames
            ``span_ms`` before and after a frame, under which it is steady.
        span_ms: how far on each side steadiness is judged (the extra lookahead).
        pause_db: an unvoiced frame this far below the running peak level belongs to a pause.
        pause_keep_ms: length of a pause kept; the rest is dropped.
        envelope_order: DCT coefficients of the 0-5 kHz log envelope (after the mean) compared in the
            steadiness test: the envelope's shape at the scale of formants.
    """

    vowel_keep_ms: float = 80.0
    vowel_rate: float = 0.15
    # Eased over 120 ms rather than at once: on dev-data (five readings) DNSMOS +0.087 +- 0.041 for the
    # default psola-tsm at the same words (CER -0.011 +- 0.037), 1.12 times the reading's length against
    # 1.02 (docs/results.md, "The rate eased").
    vowel_ease_ms: float = 120.0
    steady_db: float = 7.0
    span_ms: float = 20.0
    pause_db: float = 35.0
    pause_keep_ms: float = 150.0
    envelope_order: int = 12

    @classmethod
    def sung(cls) -> SpeechTimingConfig:
        """The identity: every frame kept at the sung pace, no lookahead (for converters that keep time)."""
        return cls(vowel_rate=1.0, span_ms=0.0, pause_keep_ms=math.inf)

    @property
    def keeps_time(self) -> bool:
        return self.vowel_rate >= 1.0 and math.isinf(self.pause_keep_ms)

    def __post_init__(self) -> None:
        if not 0.0 < self.vowel_rate <= 1.0:
            raise ConfigError(f"timing.vowel_rate={self.vowel_rate!r} must be in (0, 1]")
        for name in ("vowel_keep_ms", "vowel_ease_ms", "pause_keep_ms", "span_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"timing.{name}={getattr(self, name)!r} must be >= 0 ms")
        if self.steady_db <= 0 or self.pause_db <= 0:
            raise ConfigError("timing.steady_db and timing.pause_db must be > 0 dB")
        if self.envelope_order < 2:
            raise ConfigError(f"timing.envelope_order={self.envelope_order!r} must be >= 2")


@dataclass
class _Bin:
    """Input frames waiting to become one output frame."""

    log_sp: np.ndarray | None = None
    ap: np.ndarray | None = None
    f0_sum: float = 0.0
    voiced: int = 0
    periodicity: float = 0.0
    level_db: float = 0.0
    count: int = 0
    first_index: int = 0
    first: Frames | None = None   # the first frame itself: a bin of one frame is that frame, bit for bit

    def add(self, frames: Frames, i: int, index: int) -> None:
        log_sp = np.log(np.maximum(frames.sp[i], 1e-30))
        if self.count == 0:
            self.log_sp, self.ap = log_sp.copy(), frames.ap[i].astype(np.float64).copy()
            self.first_index = index
            self.first = frames.slice(i, i + 1)
        else:
            assert self.log_sp is not None and self.ap is not None
            self.log_sp += log_sp
            self.ap += frames.ap[i]
        f0 = float(frames.f0_hz[i])
        if f0 > 0:
            self.f0_sum += f0
            self.voiced += 1
        self.periodicity += float(frames.periodicity[i])
        self.level_db += float(frames.level_db[i])
        self.count += 1


@dataclass
class TimingState:
    """Everything :class:`SpeechTiming` remembers between calls."""

    pending: deque = field(default_factory=deque)   # (one-frame Frames, envelope coefficients, voiced, level)
    base_index: int = 0               # input index of pending[0]
    next_index: int | None = None     # input index of the next frame to decide
    end_index: int | None = None      # the first frame past the input, once known
    peak_db: float = -120.0
    steady_run: int = 0
    pause_run: int = 0
    credit: float = 0.0
    bin: _Bin = field(default_factory=_Bin)
    frames_in: int = 0
    frames_out: int = 0
    counts: list[int] = field(default_factory=lambda: [0, 0, 0])   # input frames per class
    dropped: int = 0
    vowels: int = 0    # vowel nuclei seen (VOWEL_MIN_FRAMES, VOWEL_DIP_DB)
    nucleus_db: float | None = None     # peak level of the last nucleus
    gap_voiced: bool = True             # every frame since it voiced
    gap_min_db: float = math.inf        # the lowest level since it


@dataclass
class TimedFrames:
    """Output frames and, for each, the input frame it starts at and how many it covers."""

    frames: Frames
    source: np.ndarray   # int64, first input frame of each output frame
    covers: np.ndarray   # int64, input frames averaged into each output frame
    kinds: np.ndarray    # int8, TRANSIENT / STEADY / PAUSE of the first covered frame


class SpeechTiming:
    """Stateful, streaming time-scale modifier (module docstring). Feed it frames in order."""

    def __init__(self, config: SpeechTimingConfig, frame_s: float, sample_rate: int, fft_size: int) -> None:
        self.config = config
        self.frame_s = frame_s
        self.span = max(1, round(config.span_ms / 1000.0 / frame_s)) if config.span_ms > 0 else 0
        self.keep_vowel = round(config.vowel_keep_ms / 1000.0 / frame_s)
        self.ease_vowel = round(config.vowel_ease_ms / 1000.0 / frame_s)
        self.keep_pause = math.inf if math.isinf(config.pause_keep_ms) else round(config.pause_keep_ms / 1000.0 / frame_s)
        top = int(5000.0 * fft_size / sample_rate) + 1
        self._band = slice(1, top)
        n = top - 1
        # DCT-II basis without its constant term: the overall level (a crescendo, the tremolo of a
        # vibrato) is not a change of vowel.
        k = np.arange(1, config.envelope_order + 1)[:, None]
        basis = np.cos(np.pi * (np.arange(n)[None, :] + 0.5) * k / n) * math.sqrt(2.0 / n)
        self._basis = basis.T           # (bins, order): orthonormal columns
        self._scale = 1.0 / math.sqrt(n)  # coefficient distance -> RMS dB over the band
        self._decay = 2.0 * frame_s      # running peak falls 2 dB per second

    @property
    def lookahead_frames(self) -> int:
        return self.span

    def init_state(self) -> TimingState:
        return TimingState()

    def envelope_coefficients(self, sp: np.ndarray) -> np.ndarray:
        """DCT coefficients 1.. of the 0-5 kHz log envelope in dB, ``(frames, envelope_order)``."""
        return (10.0 * np.log10(np.maximum(sp[:, self._band], 1e-30))) @ self._basis

    def push(self, frames: Frames, first_index: int, state: TimingState, *, end_index: int | None = None) -> TimedFrames:
        """Take the input frames ``first_index..``; return the output frames now decided.

        ``end_index``, once known, is the first frame past the input. Frames from there on
        (the analysis of the zeros a streamer pads with) are never output, but they are the
        future of the last real frames, exactly as they would be if the end had been known
        sooner: a frame is decided when the frame ``span`` after it is in, whatever it is.
        """
        z = self.envelope_coefficients(frames.sp) if len(frames) else np.zeros((0, self.config.envelope_order))
        pending = state.pending
        if end_index is not None:
            state.end_index = end_index
        for i in range(len(frames)):
            if state.next_index is None:
                state.next_index = state.base_index = first_index + i
            pending.append((frames.slice(i, i + 1), z[i], bool(frames.f0_hz[i] > 0), float(frames.level_db[i])))
        out: list[tuple[Frames, int, int, int]] = []
        self._decide_ready(state, out, final=False)
        return self._collect(out, frames.sp.shape[1])

    def flush(self, state: TimingState, bins: int) -> TimedFrames:
        """What is still owed once the input has ended: frames without ``span`` frames of future
        (none when the padding reached far enough), and the output frame still being averaged."""
        out: list[tuple[Frames, int, int, int]] = []
        self._decide_ready(state, out, final=True)
        self._emit_bin(state, out)
        return self._collect(out, bins)

    def _decide_ready(self, state: TimingState, out: list, *, final: bool) -> None:
        pending = state.pending
        while state.next_index is not None:
            if state.end_index is not None and state.next_index >= state.end_index:
                break
            pos = state.next_index - state.base_index
            if pos >= len(pending) or (not final and pos + self.span >= len(pending)):
                break
            self._decide(state, pos, out)
            state.next_index += 1
            while state.next_index - state.base_index > self.span:
                pending.popleft()
                state.base_index += 1

    # -- internals ----------------------------------------------------------------------------------
    def _decide(self, state: TimingState, pos: int, out: list) -> None:
        frame, _, _, level = state.pending[pos]
        index = state.base_index + pos
        state.peak_db = max(state.peak_db - self._decay, level)
        kind = self._classify(state, pos)
        state.counts[kind] += 1
        state.frames_in += 1
        self._count_vowels(state, kind, state.pending[pos][2], level)
        cfg = self.config
        if kind == TRANSIENT:
            state.steady_run = state.pause_run = 0
            self._emit_bin(state, out)
            out.append((frame, index, 1, TRANSIENT))
        elif kind == STEADY:
            state.pause_run = 0
            state.steady_run += 1
            if state.steady_run <= self.keep_vowel or cfg.vowel_rate >= 1.0:
                self._emit_bin(state, out)
                out.append((frame, index, 1, STEADY))
            else:
                state.bin.add(frame, 0, index)
                state.credit += self.vowel_rate(state.steady_run)
                if state.credit >= 1.0 - 1e-9:
                    state.credit -= 1.0
                    self._emit_bin(state, out, keep_credit=True)
        else:
            state.steady_run = 0
            state.pause_run += 1
            if state.pause_run <= self.keep_pause:
                self._emit_bin(state, out)
                out.append((frame, index, 1, PAUSE))
            else:
                state.dropped += 1

    def vowel_rate(self, run: int) -> float:
        """Output frames per input frame for the ``run``-th frame (from 1) of a steady stretch."""
        past = run - self.keep_vowel
        if past <= 0:
            return 1.0
        if past >= self.ease_vowel:
            return self.config.vowel_rate
        return 1.0 - (1.0 - self.config.vowel_rate) * past / self.ease_vowel

    @staticmethod
    def _count_vowels(state: TimingState, kind: int, voiced: bool, level: float) -> None:
        """Statistics only: a steady stretch of VOWEL_MIN_FRAMES is a vowel nucleus; one the voice reached
        from the last without a break (an unvoiced frame, a dip of VOWEL_DIP_DB) is the same vowel on a new
        note or after a glide, not a new syllable."""
        run = state.steady_run + (kind == STEADY)   # _decide counts this frame into the run after us
        if kind == STEADY and run == VOWEL_MIN_FRAMES:
            joined = (state.nucleus_db is not None and state.gap_voiced
                      and state.gap_min_db >= min(state.nucleus_db, level) - VOWEL_DIP_DB)
            state.vowels += not joined
            state.nucleus_db = level
        elif kind == STEADY and run > VOWEL_MIN_FRAMES and state.nucleus_db is not None:
            state.nucleus_db = max(state.nucleus_db, level)
        else:
            state.gap_voiced = state.gap_voiced and voiced
            state.gap_min_db = min(state.gap_min_db, level)
            return
        state.gap_voiced, state.gap_min_db = True, math.inf

    def _classify(self, state: TimingState, pos: int) -> int:
        pending = state.pending
        _, _, voiced, level = pending[pos]
        if not voiced:
            return PAUSE if level < state.peak_db - self.config.pause_db else TRANSIENT
        lo, hi = pos - self.span, pos + self.span
        if lo < 0 or hi >= len(pending):
            return TRANSIENT   # at the start or the end of the input: too close to judge
        if not all(pending[j][2] for j in range(lo, hi + 1)):
            return TRANSIENT
        change = float(np.sqrt(np.sum((pending[lo][1] - pending[hi][1]) ** 2))) * self._scale
        return STEADY if change < self.config.steady_db else TRANSIENT

    def _emit_bin(self, state: TimingState, out: list, *, keep_credit: bool = False) -> None:
        b = state.bin
        if not keep_credit:
            state.credit = 0.0
        if b.count == 0:
            return
        assert b.log_sp is not None and b.ap is not None
        if b.count == 1 and b.first is not None:   # where the rate eases down, a bin may hold one frame
            frame = b.first
        else:
            voiced = b.voiced * 2 > b.count
            f0 = b.f0_sum / b.voiced if voiced else 0.0
            frame = Frames(np.array([f0]), np.array([b.periodicity / b.count]), np.array([b.level_db / b.count]),
                           np.exp(b.log_sp / b.count)[None, :], (b.ap / b.count)[None, :])
        out.append((frame, b.first_index, b.count, STEADY))
        state.bin = _Bin()

    def _collect(self, out: list, bins: int) -> TimedFrames:
        if not out:
            return TimedFrames(Frames.empty(bins), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8))
        frames = Frames.concat([o[0] for o in out], out[0][0].sp.shape[1])
        return TimedFrames(frames, np.array([o[1] for o in out], np.int64), np.array([o[2] for o in out], np.int64),
                           np.array([o[3] for o in out], np.int8))

"""Streaming TD-PSOLA: the input waveform itself, re-timed and re-pitched grain by grain.

Pitch-synchronous overlap-add (Moulines and Charpentier, 1990) cuts the voiced input into
two-period grains centred on *analysis marks* one period apart, and adds them back at
*synthesis marks* spaced by the new period. The grains keep the spectral envelope of the
input (its formants, its breath and the detail a vocoder model smooths away); only the
spacing, and so the pitch, changes. Unvoiced input is overlap-added with a fixed hop and a
Hann window, which reproduces it exactly wherever the time map runs at rate 1.

The time map comes as *output frames*: output frame ``j`` (centred on output sample
``j * hop``) stands for input frames ``source[j] .. source[j] + covers[j] - 1``, and carries
the output F0 (0: unvoiced). Output time inside a frame maps linearly onto the input frames
it covers, so a frame that covers four input frames plays them four times faster.

Streaming: :meth:`PsolaSynth.add_input`, :meth:`add_analysis` and :meth:`add_output_frames`
feed what each chunk brings; :meth:`render` returns the output samples no later grain can
touch. Everything depends only on the order of those calls, so a converter that makes them
on a fixed chunk grid gets the same output whatever the caller's block size.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..features import _spectral
from ..features.levels import block_dc, check_dc_block_hz, limit_output
from .shaping import Shaper, ShapingConfig

#: the cut-off of ``below_f0`` before the output's first voiced frame
BELOW_F0_FLOOR_HZ = 50.0


@dataclass(frozen=True)
class PsolaConfig:
    """Settings of :class:`PsolaSynth`.

    Attributes:
        sample_rate, hop_samples: the frame grid of the analysis and of the output frames.
        min_f0_hz: the lowest F0 a grain is cut for; it bounds grain length (two periods) and so
            how far ahead of the output the input must reach.
        narrow_raised: where the output pitch is above the input's, cut grains two *output* periods
            long instead of two input periods (less of the input's own periodicity in each grain,
            slightly wider formants): for large upward shifts, as speech -> singing makes.
        wide_lowered: where the output pitch is below the input's, cut grains two *output* periods
            long (at most ``max_period`` each side) instead of two input periods: their windows sum to
            a constant, as at the input's pitch, instead of dipping between the marks (to 0.13 of
            the peak for a fall of 0.6), at the price of more of the neighbouring input periods in
            each grain. Measured on dev-data, not kept (docs/results.md).
        peak_marks: place each analysis mark on the peak of the short-term energy (about a
            quarter period long) within a quarter period of where one period after the last mark
            would put it, the first of a voiced stretch within a period of its start: the marks sit
            on the glottal pulses instead of one measured period apart from wherever voicing began.
            A two-period grain centred between pulses holds two of them at equal weight; spaced
            further apart to lower the pitch, such grains give each output period two pulses.
            Measured on dev-data, not kept: real voices read and sounded worse (docs/results.md).
        formant_scale: each voiced grain stretched in time by this factor before it is added (its
            window too), which moves the formants it carries down by the same factor (above 1) or up;
            1 keeps them (the default). Measured on dev-data, not kept (docs/results.md).
        blend: a voiced grain is the mix of the two input grains around its input time, weighted
            by how near each is, instead of the nearest alone: a vowel stretched many times over
            changes from period to period instead of repeating one grain and jumping to the next.
        below_f0: high-pass the output at this fraction of its F0 (0: off). Grains that change
            from one output period to the next (a vowel stretched and raised, each input grain
            placed twice or more) leave energy below the new F0, where a sung voice has none; a
            fourth-order Butterworth whose cut-off follows the output frames' F0 (held through
            unvoiced frames, :data:`BELOW_F0_FLOOR_HZ` before the first voiced one) removes it
            and leaves the fundamental (at 0.75: -0.05 dB at F0, -14 dB at F0 / 2).
        dc_block_hz: high-pass the output at this fixed cut-off (0: off; else 5..60 Hz), a
            fourth-order Butterworth, causal. Raising the pitch overlaps more grains than the input
            had periods, and each windowed grain of an asymmetric glottal wave has a mean of its own:
            their sum is an offset (up to a fifth of the output's RMS on dev-data's songs) that
            wanders with the grain rate. At 20 Hz it takes that away and leaves every voice
            (-0.003 dB at 70 Hz).
        shaping: a singer's-formant peak and a brightness shelf on the output (:mod:`.shaping`;
            0 dB each: untouched), after the high-pass, causal, state carried.
    """

    sample_rate: int = 24_000
    hop_samples: int = 120
    min_f0_hz: float = 70.0
    narrow_raised: bool = False
    wide_lowered: bool = False
    peak_marks: bool = False
    formant_scale: float = 1.0
    blend: bool = False
    below_f0: float = 0.0
    dc_block_hz: float = 0.0
    shaping: ShapingConfig = ShapingConfig()

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.hop_samples <= 0:
            raise ConfigError("psola.sample_rate and psola.hop_samples must be > 0")
        if not (self.below_f0 == 0.0 or 0.1 <= self.below_f0 <= 0.95):
            raise ConfigError(f"psola.below_f0={self.below_f0!r} must be 0 (off) or within 0.1..0.95 of the F0")
        check_dc_block_hz(type(self).__name__, self.dc_block_hz)
        if not 0.8 <= self.formant_scale <= 1.25:
            raise ConfigError(f"psola.formant_scale={self.formant_scale!r} must be within 0.8..1.25")
        if not 20.0 <= self.min_f0_hz <= 400.0:
            raise ConfigError(f"psola.min_f0_hz={self.min_f0_hz!r} must be within 20..400 Hz")

    @property
    def max_period(self) -> int:
        """The longest grain half-width, in samples."""
        return int(math.ceil(self.sample_rate / self.min_f0_hz))


@dataclass
class PsolaState:
    buffer: np.ndarray = field(default_factory=lambda: np.zeros(0))   # input held: buffer[offset:offset + held]
    offset: int = 0
    held: int = 0
    history_start: int = 0                  # input sample index of the first sample held
    marks: list[int] = field(default_factory=list)       # analysis marks (input samples), ascending
    periods: list[float] = field(default_factory=list)   # the period at each mark, samples
    next_mark: float = -math.inf            # where the next analysis mark falls
    frames_analysed: int = 0
    source: list[float] = field(default_factory=list)    # output frames from frames_base on (< 0: silence)
    covers: list[float] = field(default_factory=list)
    f0: list[float] = field(default_factory=list)
    gain: list[float] = field(default_factory=list)
    keep_from: int | None = None            # input samples from here on are kept whatever the frames say
    last_source: float = -1.0               # the latest input frame an output frame has started at
    frames_base: int = 0
    tau: float = 0.0                        # the next synthesis mark (output samples)
    acc: np.ndarray = field(default_factory=lambda: np.zeros(0))
    acc_start: int = 0                      # output sample index of acc[0]; everything before is emitted
    grains: int = 0
    # below_f0: the high-pass cut-off of each output frame from cutoff_base on, the cut-off held through
    # unvoiced frames, and the filter's integrators
    cutoffs: list[float] = field(default_factory=list)
    cutoff_base: int = 0
    cutoff_held: float = 0.0
    highpass: np.ndarray = field(default_factory=lambda: np.zeros(5))
    dc_block: np.ndarray = field(default_factory=lambda: np.zeros(5))   # dc_block_hz: the filter's integrators
    shaping: np.ndarray | None = None       # the shaping sections' state, from the first sample shaped


class PsolaSynth:
    """Streaming TD-PSOLA (module docstring). One instance serves any number of states."""

    def __init__(self, config: PsolaConfig | None = None) -> None:
        self.config = config or PsolaConfig()
        self.shaper = Shaper(self.config.shaping, self.config.sample_rate)
        hop = self.config.hop_samples
        self._unvoiced_window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(2 * hop) / (2 * hop))
        self._windows: dict[int, np.ndarray] = {}

    def init_state(self) -> PsolaState:
        return PsolaState()

    # -- feeding ------------------------------------------------------------------------------------
    def add_input(self, samples: np.ndarray, start: int, state: PsolaState) -> None:
        """Input samples from index ``start`` on (overlap with what is already held is ignored)."""
        end = start + samples.shape[0]
        if state.held == 0 and state.offset == 0 and state.buffer.shape[0] == 0:
            state.history_start = start
        have_end = state.history_start + state.held
        if end <= have_end:
            return
        if start > have_end:
            raise ValueError(f"input samples {have_end}..{start} were never given")
        new = np.asarray(samples[have_end - start:], np.float64)
        need = state.held + new.shape[0]
        if state.offset + need > state.buffer.shape[0]:
            # Out of room at the end: move what is held to the front, into a buffer twice what is
            # needed (amortised constant cost per sample). The buffer follows what is held, not what
            # has passed: the input the grains can no longer use was dropped from the front (_forget).
            size = max(2 * need, 4096)
            if size <= state.buffer.shape[0]:
                state.buffer[:state.held] = state.buffer[state.offset:state.offset + state.held]
            else:
                grown = np.zeros(size)
                grown[:state.held] = state.buffer[state.offset:state.offset + state.held]
                state.buffer = grown
            state.offset = 0
        state.buffer[state.offset + state.held:state.offset + need] = new
        state.held = need

    def add_analysis(self, f0_hz: np.ndarray, first_frame: int, state: PsolaState) -> None:
        """The input F0 of frames ``first_frame..`` (0: unvoiced): places the analysis marks."""
        hop = self.config.hop_samples
        if first_frame != state.frames_analysed:
            raise ValueError(f"analysis frame {first_frame} given, {state.frames_analysed} expected")
        for i, f0 in enumerate(np.asarray(f0_hz, np.float64)):
            frame = first_frame + i
            if f0 > 0:
                lo, hi = (frame - 0.5) * hop, (frame + 0.5) * hop
                period = self.config.sample_rate / max(f0, self.config.min_f0_hz)
                start = state.next_mark < lo
                if start:
                    state.next_mark = lo   # voicing starts (or restarts) here
                while state.next_mark < hi:
                    mark = round(state.next_mark)
                    if self.config.peak_marks:
                        mark = self._energy_peak(state, mark, period, first=start)
                        start = False
                    state.marks.append(mark)
                    state.periods.append(period)
                    state.next_mark = (mark if self.config.peak_marks else state.next_mark) + period
        state.frames_analysed = first_frame + len(f0_hz)

    def add_output_frames(self, source: np.ndarray, covers: np.ndarray, f0_hz: np.ndarray, state: PsolaState,
                          gain: np.ndarray | None = None) -> None:
        """Output frames: the input frame each starts at (a fraction is fine; negative: a frame of
        silence), how many input frames it spans (0: it holds its input time), its F0 (0: unvoiced)
        and, optionally, a gain for its grains. Without ``keep_from``, an output frame must not start
        before the earliest one still to be rendered (or, when all are, before the latest given): the
        input before that is dropped."""
        sounding = np.asarray(source, np.float64)
        sounding = sounding[sounding >= 0]
        if sounding.shape[0]:
            state.last_source = float(sounding[-1])
        state.source.extend(float(s) for s in source)
        state.covers.extend(float(c) for c in covers)
        state.f0.extend(float(f) for f in f0_hz)
        state.gain.extend(np.ones(len(source)) if gain is None else (float(g) for g in gain))
        ratio = self.config.below_f0
        if ratio > 0.0:
            for f in f0_hz:
                if f > 0:
                    state.cutoff_held = ratio * float(f)
                state.cutoffs.append(state.cutoff_held or BELOW_F0_FLOOR_HZ)

    # -- output -------------------------------------------------------------------------------------
    @property
    def reach(self) -> int:
        """How far (samples) a grain reaches either side of its mark, at most."""
        return math.ceil(self.config.max_period * max(1.0, self.config.formant_scale)) + 1

    def frames_out(self, state: PsolaState) -> int:
        return state.frames_base + len(state.source)

    def render(self, state: PsolaState, *, until: int | None = None, final: bool = False) -> np.ndarray:
        """Place every grain the output frames allow; return the samples now complete.

        ``until`` caps what is returned (a time-preserving caller asks for exactly its chunk);
        ``final`` (the input has ended, every analysis frame is in) returns everything up to the
        end of the last output frame. Otherwise grains wait until the analysis has reached a
        period past their input time, so the output does not depend on how the calls are spaced.
        """
        hop = self.config.hop_samples
        end_out = self.frames_out(state) * hop
        # A grain is placed once no analysis mark still to come could be nearer to it than those known:
        # marks to come lie past the last analysed frame, so its input time must be a period short of it.
        known = (state.frames_analysed - 0.5) * hop - self.config.max_period
        while state.tau < end_out:
            if not final and self._input_time(state) > known:
                break
            self._grain(state)
        ready = end_out if final else max(state.acc_start, math.floor(state.tau) - self.reach)
        if until is not None:
            ready = min(ready, until)
        n = max(0, ready - state.acc_start)
        self._grow(state, state.acc_start + n)
        out = state.acc[:n]
        if self.config.below_f0 > 0.0 and n:
            out = self._below_f0(out, state)
        if self.config.dc_block_hz > 0.0 and n:
            out = block_dc(out, self.config.dc_block_hz, self.config.sample_rate, state.dc_block)
        out, state.shaping = self.shaper.run(out, state.shaping)
        out = limit_output(out)
        state.acc = state.acc[n:]
        state.acc_start += n
        self._forget(state)
        return out

    # -- internals ----------------------------------------------------------------------------------
    def _below_f0(self, samples: np.ndarray, state: PsolaState) -> np.ndarray:
        """``below_f0``: high-pass output samples ``acc_start..`` at the cut-off of the frame each lies
        in (frame ``j``: samples within half a hop of ``j * hop``; past the last frame given, the last)."""
        hop = self.config.hop_samples
        frames = (np.arange(state.acc_start, state.acc_start + samples.shape[0]) + hop // 2) // hop
        index = np.clip(frames - state.cutoff_base, 0, len(state.cutoffs) - 1)
        out = _spectral.tracking_highpass(samples, np.asarray(state.cutoffs)[index], float(self.config.sample_rate),
                                          state.highpass)
        # frames before the last one touched are passed; the last one given stays (the cut-off held on)
        done = min(int(frames[-1]) - state.cutoff_base, len(state.cutoffs) - 1)
        if done > 0:
            del state.cutoffs[:done]
            state.cutoff_base += done
        return out

    def _input_time(self, state: PsolaState) -> float:
        """The input time (samples) the next synthesis mark maps to (-inf in a frame of silence)."""
        hop = self.config.hop_samples
        j = int(state.tau // hop)
        k = j - state.frames_base
        if state.source[k] < 0:
            return -math.inf
        return (state.source[k] + (state.tau / hop - j) * state.covers[k]) * hop

    def _grain(self, state: PsolaState) -> None:
        cfg = self.config
        hop = cfg.hop_samples
        k = int(state.tau // hop) - state.frames_base
        if state.source[k] < 0:   # a frame of silence: no grain, the clock moves on to the next frame
            state.tau = (int(state.tau // hop) + 1) * hop
            return
        t = self._input_time(state)
        f0_out = state.f0[k]
        gain = state.gain[k]
        if f0_out > 0:
            m = self._nearest_mark(state, t)
            if m is not None:
                mark, period = state.marks[m], state.periods[m]
                half = min(int(round(period)), cfg.max_period)
                if cfg.narrow_raised:
                    half = max(2, min(half, int(round(cfg.sample_rate / f0_out))))
                if cfg.wide_lowered:
                    half = min(max(half, int(round(cfg.sample_rate / f0_out))), cfg.max_period)
                if abs(mark - t) < period:
                    grain = self._input(state, mark, half) * self._window(half)
                    if cfg.blend:
                        grain = self._blended(state, m, t, half, grain)
                    if cfg.formant_scale != 1.0:
                        grain, half = self._rescaled(grain, half)
                    self._add(state, round(state.tau), grain * gain if gain != 1.0 else grain, half)
                    state.tau += cfg.sample_rate / f0_out
                    state.grains += 1
                    return
        centre = round(t)
        grain = self._input(state, centre, hop) * self._unvoiced_window
        self._add(state, round(state.tau), grain * gain if gain != 1.0 else grain, hop)
        state.tau += hop
        state.grains += 1

    def _blended(self, state: PsolaState, m: int, t: float, half: int, grain: np.ndarray) -> np.ndarray:
        """``blend``: the grain at mark ``m`` mixed with the one at the mark on the other side of ``t``
        (when that lies within 1.5 periods), each weighted by its nearness to ``t``."""
        marks = state.marks
        other = m + 1 if t >= marks[m] else m - 1
        if not 0 <= other < len(marks):
            return grain
        gap = abs(marks[other] - marks[m])
        if gap <= 0 or gap > 1.5 * state.periods[m]:
            return grain
        far = min(abs(t - marks[m]) / gap, 1.0)   # 0 at mark m, 1 at the other
        if far <= 0.0:
            return grain
        return (1.0 - far) * grain + far * (self._input(state, marks[other], half) * self._window(half))

    def _nearest_mark(self, state: PsolaState, t: float) -> int | None:
        marks = state.marks
        if not marks:
            return None
        i = bisect.bisect_left(marks, t)
        best = None
        for c in (i - 1, i):
            if 0 <= c < len(marks) and (best is None or abs(marks[c] - t) < abs(marks[best] - t)):
                best = c
        return best

    def _energy_peak(self, state: PsolaState, mark: int, period: float, *, first: bool) -> int:
        """``peak_marks``: the peak of the short-term energy near ``mark`` (within a period after it for
        the first mark of a voiced stretch, else a quarter period either side)."""
        quarter = max(1, int(period / 4))
        lo, hi = (mark, mark + int(period)) if first else (mark - quarter, mark + quarter + 1)
        half = quarter // 2
        h = state.buffer[state.offset:state.offset + state.held]
        a, b = lo - half - state.history_start, hi + half - state.history_start
        if a < 0 or b > h.shape[0]:
            return mark   # the input around it is not held (the analysis reaches further than this)
        energy = np.convolve(h[a:b] ** 2, np.ones(2 * half + 1), "valid")
        return lo + int(np.argmax(energy))

    def _rescaled(self, grain: np.ndarray, half: int) -> tuple[np.ndarray, int]:
        """``formant_scale``: the grain stretched in time by the factor (linear interpolation), its
        level kept (the stretched grains overlap the more)."""
        scale = self.config.formant_scale
        new_half = max(1, round(half * scale))
        position = (np.arange(2 * new_half) + 0.5) * (half / new_half) - 0.5
        return np.interp(position, np.arange(2 * half), grain) * (half / new_half), new_half

    def _window(self, half: int) -> np.ndarray:
        w = self._windows.get(half)
        if w is None:
            w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(2 * half) / (2 * half))
            self._windows[half] = w
        return w

    def _input(self, state: PsolaState, centre: int, half: int) -> np.ndarray:
        """``input[centre - half : centre + half]``, zeros where the history has none."""
        a = centre - half - state.history_start
        b = a + 2 * half
        h = state.buffer[state.offset:state.offset + state.held]
        if a >= 0 and b <= h.shape[0]:
            return h[a:b]
        out = np.zeros(2 * half)
        lo, hi = max(a, 0), min(b, h.shape[0])
        if hi > lo:
            out[lo - a:hi - a] = h[lo:hi]
        return out

    def _grow(self, state: PsolaState, end: int) -> None:
        need = end - state.acc_start
        if need > state.acc.shape[0]:
            grown = np.zeros(max(need, 2 * state.acc.shape[0], 4096))
            grown[:state.acc.shape[0]] = state.acc
            state.acc = grown

    def _add(self, state: PsolaState, centre: int, grain: np.ndarray, half: int) -> None:
        a = centre - half
        if a < state.acc_start:   # the very start of the output: cut what falls before it
            grain = grain[state.acc_start - a:]
            a = state.acc_start
        if grain.shape[0] == 0:
            return
        self._grow(state, a + grain.shape[0])
        i = a - state.acc_start
        state.acc[i:i + grain.shape[0]] += grain

    def _forget(self, state: PsolaState) -> None:
        """Drop output frames, marks and input the grains still to come can no longer use."""
        hop = self.config.hop_samples
        done = min(int(state.tau // hop) - state.frames_base, len(state.source))
        if done > 0:
            del state.source[:done], state.covers[:done], state.f0[:done], state.gain[:done]
            state.frames_base += done
        sources = [s for s in state.source if s >= 0]
        if not sources:   # every frame given is rendered: the next ones start at the latest source or later
            if state.last_source < 0:
                return
            sources = [state.last_source]
        oldest_input = int(min(sources) * hop) - 2 * self.reach
        if state.keep_from is not None:
            oldest_input = min(oldest_input, state.keep_from - 2 * self.reach)
        m = bisect.bisect_left(state.marks, oldest_input)
        if m > 0:
            del state.marks[:m], state.periods[:m]
        cut = min(oldest_input - state.history_start, state.held)
        if cut > 0:
            state.offset += cut
            state.held -= cut
            state.history_start += cut

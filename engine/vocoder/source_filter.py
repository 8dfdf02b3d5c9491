"""A streaming source-filter synthesiser over WORLD-style frame parameters.

Each frame carries an F0 (0 = unvoiced), a smooth power spectral envelope and
a band aperiodicity (amplitude ratio of noise to the whole, 0..1, as D4C gives
it). The synthesiser places excitation pulses one pitch period apart in voiced
regions (at a fixed rate in unvoiced ones), and at each pulse adds

* a periodic response: the minimum-phase impulse response of the envelope's
  periodic part, ``sqrt(sp * (1 - ap**2))``, delayed by the pulse's fractional
  position and scaled by ``sqrt(period)`` so that its power matches the
  envelope, and
* an aperiodic response: one period of white noise filtered to the amplitude
  ``sqrt(sp * ap**2)`` (minimum-phase ``sqrt(sp)`` in unvoiced frames).

The minimum-phase responses are computed once per *frame*, not once per pulse
(one real cepstrum a frame: a voiced frame's noise filter takes the periodic
response's phase with its own amplitude), and a pulse between two frames takes
the two frames' responses mixed by its position (a crossfade of two causal
responses, itself causal). The fractional delay is a phase ramp from a table of 1/256-sample
steps. Per pulse that leaves one FFT of its noise and one inverse FFT of the sum.

Here in Python: the pulses' noise (numpy's generator) and how the work is grouped. Where the
pulses fall and the arithmetic per frame and per pulse (the minimum-phase transforms, each pulse's
response and the overlap-add) are compiled (``engine/vocoder/_pulses.cpp``) and run without the
interpreter lock, so the groups shared with a thread (:meth:`SourceFilterSynth.share_with`) really
run side by side.

Responses are causal (they start at their pulse), so the output of a frame
interval is final as soon as the next frame is known: the synthesiser streams
with one frame of lookahead and no other delay. Its state is explicit
(:class:`SynthState`): the pulse phase, the overlap-add tail, the last frame's
responses and the noise generator. Output does not depend on how frames are
grouped into calls.

This follows the structure of WORLD's synthesis (Morise et al., IEICE 2016),
reimplemented here for block-wise streaming.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..features.levels import block_dc, check_dc_block_hz, limit_output
from . import _pulses
from .shaping import Shaper, ShapingConfig

#: pulses whose responses are computed together: a fixed grouping, so that the output does not depend
#: on how the groups are shared between threads (:meth:`SourceFilterSynth.share_with`)
RESPONSE_GROUP = 64
#: the fractional delay of a pulse, in steps of 1 / DELAY_STEPS sample
DELAY_STEPS = 256


@dataclass(frozen=True)
class SynthConfig:
    """Frame grid and FFT size of the synthesiser.

    Attributes:
        sample_rate: output sample rate in Hz.
        hop_samples: samples between frames.
        fft_size: length of each pulse response; envelopes have ``fft_size // 2 + 1`` bins.
        unvoiced_pulse_hz: rate of noise segments in unvoiced regions.
        seed: seed of the noise generator (a reset restarts the same noise).
        dc_block_hz: high-pass the output at this fixed cut-off (0: off, the default; else 5..60 Hz),
            a fourth-order Butterworth, causal, state carried. Minimum-phase responses of an envelope
            that stays high down to 0 Hz, placed at a varying rate and level, add energy under 20 Hz
            that the analysed voice did not have (WORLD copy synthesis of dev-data's singing: a median
            +25 dB there); the WORLD converters take it away at 20 Hz (docs/results.md).
        shaping: a singer's-formant peak and a brightness shelf on the output (:mod:`.shaping`;
            0 dB each, the default: untouched), after the high-pass, causal, state carried.
    """

    sample_rate: int = 24_000
    hop_samples: int = 120
    fft_size: int = 1024
    unvoiced_pulse_hz: float = 200.0
    seed: int = 0
    dc_block_hz: float = 0.0
    shaping: ShapingConfig = ShapingConfig()

    def __post_init__(self) -> None:
        check_dc_block_hz(type(self).__name__, self.dc_block_hz)
        if self.fft_size < 64 or self.fft_size & (self.fft_size - 1):
            raise ConfigError(f"synth.fft_size={self.fft_size!r} must be a power of two >= 64")
        if self.hop_samples <= 0:
            raise ConfigError(f"synth.hop_samples={self.hop_samples!r} must be > 0")

    @property
    def bins(self) -> int:
        return self.fft_size // 2 + 1


@dataclass
class SynthState:
    """Everything the synthesiser carries from one call to the next."""

    phase: float
    ola: np.ndarray
    rng: np.random.Generator
    prev_f0: float | None = None
    prev_periodic: np.ndarray | None = None   # the last frame's periodic response (complex spectrum)
    prev_noise: np.ndarray | None = None      # and its noise filter
    samples_out: int = 0
    pulses: int = field(default=0)
    dc_block: np.ndarray = field(default_factory=lambda: np.zeros(5))   # dc_block_hz: the filter's integrators
    shaping: np.ndarray | None = None       # the shaping sections' state, from the first sample shaped


class SourceFilterSynth:
    """Streaming pulse-by-pulse synthesiser. See the module docstring."""

    def __init__(self, config: SynthConfig) -> None:
        self.config = config
        self.shaper = Shaper(config.shaping, config.sample_rate)
        n = config.fft_size
        # advance[q]: the phase ramp that moves a response q / DELAY_STEPS samples earlier
        self._advance = np.exp(2j * np.pi * np.outer(np.arange(DELAY_STEPS + 1) / DELAY_STEPS,
                                                     np.arange(config.bins) / n))
        self._pool: Any = None

    def share_with(self, pool: Any) -> None:
        """Offline, with a spare core: share the groups of frame and pulse responses with a thread of
        ``pool`` (an executor; None: all here). The groups are the same either way, so is the output."""
        self._pool = pool

    def init_state(self) -> SynthState:
        return SynthState(phase=0.0, ola=np.zeros(self.config.fft_size), rng=np.random.default_rng(self.config.seed))

    def step(
        self, f0_hz: np.ndarray, sp: np.ndarray, ap: np.ndarray, state: SynthState
    ) -> tuple[np.ndarray, SynthState]:
        """Synthesise the intervals that the new frames complete.

        Args:
            f0_hz: ``(n,)`` F0 of the new frames, 0 where unvoiced.
            sp: ``(n, bins)`` power spectral envelope.
            ap: ``(n, bins)`` aperiodicity, 0..1.
            state: from :meth:`init_state` or the previous call; updated in place.

        Returns:
            ``(audio, state)``: ``n * hop_samples`` float32 samples, or
            ``(n - 1) * hop_samples`` on the very first call (the interval after
            a frame needs the next frame).
        """
        cfg = self.config
        f0_hz = np.asarray(f0_hz, dtype=np.float64)
        if f0_hz.shape[0] == 0:
            return np.zeros(0, np.float32), state
        periodic_new, noise_new = self._frame_responses(f0_hz, np.asarray(sp, np.float64), np.asarray(ap, np.float64))
        if state.prev_f0 is not None:
            f0_all = np.concatenate([[state.prev_f0], f0_hz])
            periodic_all = np.concatenate([state.prev_periodic[None], periodic_new], axis=0)
            noise_all = np.concatenate([state.prev_noise[None], noise_new], axis=0)
        else:
            f0_all, periodic_all, noise_all = f0_hz, periodic_new, noise_new
        state.prev_f0 = float(f0_all[-1])
        state.prev_periodic = periodic_all[-1].copy()
        state.prev_noise = noise_all[-1].copy()
        intervals = f0_all.shape[0] - 1
        if intervals <= 0:
            return np.zeros(0, np.float32), state

        hop = cfg.hop_samples
        total = intervals * hop
        # Where the pulses fall: the phase advances by the instantaneous F0 (or the unvoiced rate)
        # each sample and a pulse starts where it passes an integer. It is wrapped to [0, 1) at every
        # frame boundary, so each interval's arithmetic is the same however frames are grouped.
        start, delay, rate, voiced, state.phase = _pulses.place_pulses(
            f0_all, hop, float(cfg.sample_rate), float(cfg.unvoiced_pulse_hz), float(state.phase))

        buf = np.zeros(total + cfg.fft_size)
        buf[: cfg.fft_size] += state.ola
        if start.size:
            # Responses mixed inside the interval of sample `start` (never the previous one, which an
            # earlier call may already have closed).
            j = start // hop
            w = np.maximum((start - delay) / hop - j, 0.0)
            period = 1.0 / rate
            # One period of noise per pulse, drawn for every pulse first, in pulse order: the
            # generator's stream is the same whatever the grouping below.
            lengths = np.clip(np.round(period).astype(int), 1, cfg.fft_size)
            noise = np.zeros((start.size, int(lengths.max())))
            within_period = np.arange(noise.shape[1])[None, :] < lengths[:, None]
            noise[within_period] = state.rng.standard_normal(int(lengths.sum()))
            pulses = _Pulses(j, w, np.sqrt(np.maximum(period, 1.0)) * voiced,
                             np.rint(delay * DELAY_STEPS).astype(np.int64), noise)
            responses = np.empty((start.size, cfg.fft_size))

            def fill(g: slice) -> None:
                _pulses.pulse_responses(pulses.frame[g], pulses.weight[g], pulses.gain[g], pulses.advance[g],
                                        pulses.noise[g], periodic_all, noise_all, self._advance, responses[g])

            self._in_groups(start.size, fill)
            # Overlap-add: the response of the pulse at sample k lands on buf[k : k + fft_size].
            _pulses.overlap_add(buf, start, responses)
            state.pulses += int(start.size)
        out = buf[:total]
        state.ola = buf[total : total + cfg.fft_size].copy()
        state.samples_out += total
        if cfg.dc_block_hz > 0.0:
            out = block_dc(out, cfg.dc_block_hz, cfg.sample_rate, state.dc_block)
        out, state.shaping = self.shaper.run(out, state.shaping)
        return limit_output(out), state

    def _in_groups(self, count: int, fill) -> None:
        """``fill(group)`` over ``RESPONSE_GROUP``-sized slices of ``range(count)``. With the pool of
        :meth:`share_with`, its thread and this one take the next group from one queue until none is
        left, so neither waits for a share fixed in advance (a busy pool takes fewer); the groups are
        the same either way, and each fills its own rows."""
        groups = [slice(lo, min(lo + RESPONSE_GROUP, count)) for lo in range(0, count, RESPONSE_GROUP)]
        if self._pool is None or len(groups) < 2:
            for g in groups:
                fill(g)
            return
        queue = iter(groups)
        lock = threading.Lock()

        def drain() -> None:
            while True:
                with lock:
                    g = next(queue, None)
                if g is None:
                    return
                fill(g)

        helper = self._pool.submit(drain)
        drain()
        helper.result()

    def _frame_responses(self, f0: np.ndarray, sp: np.ndarray, ap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per frame: the periodic part's minimum-phase response and the noise filter (complex spectra)."""
        bins = self.config.bins
        periodic = np.empty((f0.shape[0], bins), np.complex128)
        noise = np.empty((f0.shape[0], bins), np.complex128)

        def fill(g: slice) -> None:
            _pulses.frame_responses(f0[g], sp[g], ap[g], periodic[g], noise[g])

        self._in_groups(f0.shape[0], fill)
        return periodic, noise


@dataclass(frozen=True)
class _Pulses:
    """The pulses of one call: the frame each follows and its weight toward the next, the periodic
    response's gain (0 for an unvoiced pulse), the fractional advance (table row) and the noise."""

    frame: np.ndarray
    weight: np.ndarray
    gain: np.ndarray
    advance: np.ndarray
    noise: np.ndarray

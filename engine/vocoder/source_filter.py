"""A streaming source-filter synthesiser over WORLD-style frame parameters.

Each frame carries an F0 (0 = unvoiced), a smooth power spectral envelope and
a band aperiodicity (amplitude ratio of noise to the whole, 0..1, as D4C gives
it). The synthesiser places excitation pulses one pitch period apart in voiced
regions (at a fixed rate in unvoiced ones), and at each pulse adds

* a periodic response: the minimum-phase impulse response of the envelope's
  periodic part, ``sqrt(sp * (1 - ap**2))``, delayed by the pulse's fractional
  position and scaled by ``sqrt(period)`` so that its power matches the
  envelope, and
* an aperiodic response: one period of white noise filtered by the minimum-phase
  response of ``sqrt(sp * ap**2)``.

Responses are causal (they start at their pulse), so the output of a frame
interval is final as soon as the next frame is known: the synthesiser streams
with one frame of lookahead and no other delay. Its state is explicit
(:class:`SynthState`): the pulse phase, the overlap-add tail and the noise
generator. Output does not depend on how frames are grouped into calls.

This follows the structure of WORLD's synthesis (Morise et al., IEICE 2016),
reimplemented here for block-wise streaming.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..features.levels import limit_output

_EPS = 1e-12

#: pulses whose responses are computed together: a fixed grouping, so that the output does not depend
#: on how the groups are shared between threads (:meth:`SourceFilterSynth.share_with`)
RESPONSE_GROUP = 64


@dataclass(frozen=True)
class SynthConfig:
    """Frame grid and FFT size of the synthesiser.

    Attributes:
        sample_rate: output sample rate in Hz.
        hop_samples: samples between frames.
        fft_size: length of each pulse response; envelopes have ``fft_size // 2 + 1`` bins.
        unvoiced_pulse_hz: rate of noise segments in unvoiced regions.
        seed: seed of the noise generator (a reset restarts the same noise).
    """

    sample_rate: int = 24_000
    hop_samples: int = 120
    fft_size: int = 1024
    unvoiced_pulse_hz: float = 200.0
    seed: int = 0

    def __post_init__(self) -> None:
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
    prev_sp: np.ndarray | None = None
    prev_ap: np.ndarray | None = None
    samples_out: int = 0
    pulses: int = field(default=0)


class SourceFilterSynth:
    """Streaming pulse-by-pulse synthesiser. See the module docstring."""

    def __init__(self, config: SynthConfig) -> None:
        self.config = config
        n = config.fft_size
        fold = np.zeros(n)
        fold[0] = 1.0
        fold[1 : n // 2] = 2.0
        fold[n // 2] = 1.0
        self._fold = fold
        self._ramp = -2j * np.pi * np.arange(config.bins) / n
        self._pool: Any = None

    def share_with(self, pool: Any) -> None:
        """Offline, with a spare core: compute every other group of pulse responses on ``pool`` (an
        executor; None: all here). The groups are the same either way, so is the output."""
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
        if state.prev_f0 is not None:
            f0_all = np.concatenate([[state.prev_f0], f0_hz])
            sp_all = np.concatenate([state.prev_sp[None], sp], axis=0)
            ap_all = np.concatenate([state.prev_ap[None], ap], axis=0)
        else:
            f0_all, sp_all, ap_all = f0_hz, np.asarray(sp), np.asarray(ap)
        state.prev_f0 = float(f0_all[-1])
        state.prev_sp = np.array(sp_all[-1], dtype=np.float64)
        state.prev_ap = np.array(ap_all[-1], dtype=np.float64)
        intervals = f0_all.shape[0] - 1
        if intervals <= 0:
            return np.zeros(0, np.float32), state

        hop = cfg.hop_samples
        total = intervals * hop
        frac = (np.arange(total) % hop) / hop
        left = np.arange(total) // hop
        f_left = f0_all[left]
        f_right = f0_all[left + 1]
        voiced = np.where(frac < 0.5, f_left > 0, f_right > 0)
        f_inst = np.where(
            (f_left > 0) & (f_right > 0),
            f_left + (f_right - f_left) * frac,
            np.maximum(f_left, f_right),
        )
        rate = np.where(voiced, f_inst, cfg.unvoiced_pulse_hz) / cfg.sample_rate
        # The phase is wrapped to [0, 1) at every frame boundary, so each interval's
        # arithmetic is the same however frames are grouped into calls.
        within = np.cumsum(rate.reshape(intervals, hop), axis=1)
        starts = np.empty(intervals)
        p = state.phase
        for i, total_i in enumerate(within[:, -1]):
            starts[i] = p
            p += total_i
            p -= np.floor(p)
        state.phase = float(p)
        phase = (starts[:, None] + within).ravel()
        before = np.concatenate([starts[:, None], starts[:, None] + within[:, :-1]], axis=1).ravel()
        crossings = np.nonzero(np.floor(phase) > np.floor(before))[0]

        buf = np.zeros(total + cfg.fft_size)
        buf[: cfg.fft_size] += state.ola
        if crossings.size:
            # Fractional position of each pulse: how far before sample `k` the phase crossed.
            over = phase[crossings] - np.floor(phase[crossings])
            delay = np.minimum(over / rate[crossings], 1.0)
            start = crossings
            # Envelope at the pulse, interpolated inside the interval of sample `start`
            # (never the previous one, which an earlier call may already have closed).
            j = start // hop
            w = np.maximum((start - delay) / hop - j, 0.0)[:, None]
            env = sp_all[j] * (1.0 - w) + sp_all[j + 1] * w
            aper = np.minimum(ap_all[j] * (1.0 - w) + ap_all[j + 1] * w, 1.0)
            period = 1.0 / rate[crossings]
            pulse_voiced = voiced[crossings]
            # The pulse lies `delay` samples before `start`: advance its response by that much.
            # The noise of every pulse first, in pulse order: the generator's stream is the same
            # whatever the grouping below.
            noise = state.rng.standard_normal((crossings.size, cfg.fft_size))
            responses = self._grouped_responses(env, aper, period, pulse_voiced, -delay, noise)
            # Overlap-add: response r of the pulse at sample k lands on buf[k : k + fft_size].
            idx = start[:, None] + np.arange(cfg.fft_size)[None, :]
            np.add.at(buf, idx.ravel(), responses.ravel())
            state.pulses += int(crossings.size)
        out = buf[:total]
        state.ola = buf[total : total + cfg.fft_size].copy()
        state.samples_out += total
        return limit_output(out), state

    def _grouped_responses(self, env: np.ndarray, aper: np.ndarray, period: np.ndarray, voiced: np.ndarray,
                           frac_shift: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """:meth:`_responses` of every pulse, ``RESPONSE_GROUP`` pulses at a time (every other group on
        the pool of :meth:`share_with`, when there is one)."""
        count = env.shape[0]
        if count <= RESPONSE_GROUP:
            return self._responses(env, aper, period, voiced, frac_shift, noise)
        groups = [slice(lo, min(lo + RESPONSE_GROUP, count)) for lo in range(0, count, RESPONSE_GROUP)]
        out = np.empty((count, self.config.fft_size))

        def fill(g: slice) -> None:
            out[g] = self._responses(env[g], aper[g], period[g], voiced[g], frac_shift[g], noise[g])

        futures = [self._pool.submit(fill, g) for g in groups[1::2]] if self._pool is not None else []
        for g in groups[0::2] if futures else groups:
            fill(g)
        for f in futures:
            f.result()
        return out

    def _responses(
        self,
        env: np.ndarray,
        aper: np.ndarray,
        period: np.ndarray,
        voiced: np.ndarray,
        frac_shift: np.ndarray,
        noise: np.ndarray,
    ) -> np.ndarray:
        n = self.config.fft_size
        ratio = aper * aper
        periodic_amp = np.sqrt(np.maximum(env * (1.0 - ratio), 0.0)) * voiced[:, None]
        noise_amp = np.sqrt(np.maximum(env * np.where(voiced[:, None], ratio, 1.0), 0.0))
        # the minimum-phase spectrum advanced by the pulse's fractional delay: one exponential of the
        # sum of the two log spectra
        h_per = np.exp(self._minimum_phase_log(periodic_amp) + self._ramp[None, :] * frac_shift[:, None])
        h_per[:, 0] = 0.0  # no DC from the pulse train
        periodic = np.fft.irfft(h_per, n, axis=1) * np.sqrt(np.maximum(period, 1.0))[:, None]

        lengths = np.minimum(np.round(period).astype(int), n)
        noise = np.where(np.arange(n)[None, :] >= lengths[:, None], 0.0, noise)
        aperiodic = np.fft.irfft(np.fft.rfft(noise, axis=1) * self._minimum_phase(noise_amp), n, axis=1)
        return periodic + aperiodic

    def _minimum_phase(self, amplitude: np.ndarray) -> np.ndarray:
        """Minimum-phase spectra with the given amplitudes, via the folded real cepstrum."""
        return np.exp(self._minimum_phase_log(amplitude))

    def _minimum_phase_log(self, amplitude: np.ndarray) -> np.ndarray:
        """The (complex) logarithm of :meth:`_minimum_phase`."""
        n = self.config.fft_size
        cepstrum = np.fft.irfft(np.log(amplitude + _EPS), n, axis=1)
        return np.fft.rfft(cepstrum * self._fold[None, :], axis=1)

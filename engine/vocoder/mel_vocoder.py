"""A DSP vocoder for log-mel spectrograms: no training, streams frame by frame.

Models (the flow S2S model) predict log-mel frames; this turns them into audio
with the same pulse-and-noise synthesiser the WORLD converters use
(:class:`~.source_filter.SourceFilterSynth`):

1. **envelope**: the mel magnitudes are mapped back to linear frequency with the
   filterbank's pseudo-inverse (non-negative), squared to power, and smoothed
   over about 200 Hz so that harmonics of the *original* pitch, which narrow
   low mel bands still resolve, do not ring at the new pitch;
2. **excitation**: the F0 contour given by the caller (a speech intonation, a
   melody); frames with F0 0 are unvoiced;
3. **aperiodicity**: voiced frames get a speech-like profile, mostly periodic
   below ``periodic_below_hz`` and rising to ``max_aperiodicity`` at Nyquist;
   unvoiced frames are noise.

The level is calibrated so that a frame's mel power and the synthesised frame's
mel power agree (a test checks the round trip on real speech). Everything is
frame-local, so the vocoder streams with the synthesiser's one frame of lookahead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import convolve1d

from ..errors import ConfigError
from ..features.mel import MelConfig, mel_filterbank
from .source_filter import SourceFilterSynth, SynthConfig, SynthState


@dataclass(frozen=True)
class MelVocoderConfig:
    mel: MelConfig = MelConfig.for_to_speech()
    smoothing_hz: float = 200.0
    periodic_below_hz: float = 2000.0
    max_aperiodicity: float = 0.6
    voiced_aperiodicity: float = 0.05

    def __post_init__(self) -> None:
        if self.mel.n_fft != self.mel.win_samples and self.mel.n_fft < self.mel.win_samples:
            raise ConfigError("mel vocoder needs n_fft >= win_samples")
        if not 0.0 <= self.voiced_aperiodicity <= self.max_aperiodicity <= 1.0:
            raise ConfigError("mel vocoder needs 0 <= voiced_aperiodicity <= max_aperiodicity <= 1")


def smoothing_kernel(mel: MelConfig, smoothing_hz: float) -> np.ndarray:
    """The Hann kernel, ``smoothing_hz`` to each side on the mel FFT's bins (summing to 1), that
    smooths a power envelope across frequency (:meth:`MelVocoder.envelope`)."""
    width = max(1, int(round(smoothing_hz / (mel.sample_rate / mel.n_fft))))
    kernel = np.hanning(2 * width + 1)
    return kernel / kernel.sum()


def smoothing_matrix(mel: MelConfig, smoothing_hz: float) -> np.ndarray:
    """``(bins, bins)``: :func:`smoothing_kernel` as a matrix, the edge bins repeated past the ends
    (``matrix @ power`` equals the DSP vocoder's smoothing of ``power`` along its bins)."""
    kernel = smoothing_kernel(mel, smoothing_hz)
    bins, width = mel.n_fft // 2 + 1, kernel.size // 2
    matrix = np.zeros((bins, bins))
    rows = np.arange(bins)
    for offset, weight in zip(range(-width, width + 1), kernel, strict=True):
        np.add.at(matrix, (rows, np.clip(rows + offset, 0, bins - 1)), weight)
    return matrix


class MelVocoder:
    """Log-mel frames + F0 -> audio, streaming (state from :meth:`init_state`)."""

    #: level correction found by the round-trip measurement (see __init__)
    calibration = 1.0
    #: frames the output lags the input (the synthesiser interpolates towards the next frame)
    lookahead_frames = 1

    def __init__(self, config: MelVocoderConfig | None = None) -> None:
        self.config = config = config or MelVocoderConfig()
        mel = config.mel
        self.synth = SourceFilterSynth(SynthConfig(sample_rate=mel.sample_rate, hop_samples=mel.hop_samples,
                                                   fft_size=mel.n_fft))
        fb = mel_filterbank(mel)                      # (n_mels, bins)
        # Singular values under 1e-3 of the largest are cut: at 24 kHz with a 512-point FFT two low
        # bands cover the same bins and the plain pseudo-inverse is 1e11 (the 16 kHz bank cuts none).
        self._pinv = np.maximum(np.linalg.pinv(fb, rcond=1e-3), 0.0)  # (bins, n_mels)
        bins = fb.shape[1]
        hz_per_bin = mel.sample_rate / mel.n_fft
        self._kernel = smoothing_kernel(mel, config.smoothing_hz)
        freqs = np.arange(bins) * hz_per_bin
        ramp = np.clip((freqs - config.periodic_below_hz) / max(mel.sample_rate / 2 - config.periodic_below_hz, 1.0),
                       0.0, 1.0)
        self._voiced_ap = config.voiced_aperiodicity + (config.max_aperiodicity - config.voiced_aperiodicity) * ramp
        # The synthesiser's envelope is on CheapTrick's scale. CheapTrick / (mel pseudo-inverse
        # power) measured -34 dB (median over voiced bins of the bundled ARCTIC sentence), i.e.
        # 1 / (2 * sum(w^2)) for the 640-point Hann window. Round trip (mel -> audio -> mel) on
        # real speech: loud frames +2.5 dB, overall RMS -1 dB, mean absolute mel error 4.8 dB.
        window = np.hanning(mel.win_samples + 1)[:-1]
        self._power_scale = 1.0 / (2.0 * float(np.sum(window**2))) * self.calibration

    def init_state(self) -> SynthState:
        return self.synth.init_state()

    def envelope(self, log_mel: np.ndarray) -> np.ndarray:
        """``(frames, n_mels)`` log-mel -> ``(frames, bins)`` smoothed power envelope."""
        magnitude = np.exp(np.asarray(log_mel, dtype=np.float64)) @ self._pinv.T
        power = magnitude**2 * self._power_scale
        # across bins, the edge bins repeated past the ends (the kernel is symmetric: no flip to mind)
        smooth = convolve1d(power, self._kernel, axis=1, mode="nearest")
        return np.maximum(smooth, 1e-12)

    def aperiodicity(self, f0_hz: np.ndarray) -> np.ndarray:
        voiced = np.asarray(f0_hz) > 0
        return np.where(voiced[:, None], self._voiced_ap[None, :], 1.0)

    def step(self, log_mel: np.ndarray, f0_hz: np.ndarray, state: SynthState) -> tuple[np.ndarray, SynthState]:
        """Synthesise new frames (one frame behind, like the synthesiser)."""
        sp = self.envelope(log_mel)
        return self.synth.step(np.asarray(f0_hz, dtype=np.float64), sp, self.aperiodicity(f0_hz), state)

    def __call__(self, log_mel: np.ndarray, f0_hz: np.ndarray) -> np.ndarray:
        """Whole utterance: every frame's interval (the last frame is repeated to close it)."""
        log_mel = np.asarray(log_mel)
        f0_hz = np.asarray(f0_hz, dtype=np.float64)
        audio, _ = self.step(np.concatenate([log_mel, log_mel[-1:]]), np.concatenate([f0_hz, f0_hz[-1:]]),
                             self.init_state())
        return audio

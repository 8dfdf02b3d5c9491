"""Frame-local F0 estimation (YIN with a cumulative-mean-normalised difference).

Each frame's estimate depends only on the samples of its own window, so the
same code runs on a whole file (training, evaluation) and on a live stream
chunk by chunk with identical results. The window is centred on the frame
(see :mod:`voxflip.engine.features.frames`), which costs ``window_samples // 2``
samples of lookahead.

Reference: de Cheveigné and Kawahara, "YIN, a fundamental frequency estimator
for speech and music", JASA 2002 (steps 2-5: difference function, cumulative
mean normalisation, absolute threshold, parabolic interpolation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .frames import frame_matrix, pad_for_frames


@dataclass(frozen=True)
class PitchConfig:
    """Settings of the F0 estimator.

    Attributes:
        f0_min_hz: lowest F0 searched; sets the window length (two periods).
        f0_max_hz: highest F0 searched.
        threshold: YIN absolute threshold on the normalised difference.
        voicing_threshold: a frame is voiced when its normalised difference at
            the chosen lag is below this value ...
        silence_db: ... and its RMS level is above this, in dB full scale.
    """

    f0_min_hz: float = 60.0
    f0_max_hz: float = 1100.0
    threshold: float = 0.15
    voicing_threshold: float = 0.3
    silence_db: float = -55.0

    def __post_init__(self) -> None:
        if not (20.0 <= self.f0_min_hz < self.f0_max_hz <= 4000.0):
            raise ConfigError(
                f"pitch.f0_min_hz={self.f0_min_hz!r} and pitch.f0_max_hz={self.f0_max_hz!r} must satisfy "
                "20 <= f0_min_hz < f0_max_hz <= 4000 Hz"
            )
        if not (0.0 < self.threshold <= self.voicing_threshold <= 1.0):
            raise ConfigError(
                f"pitch.threshold={self.threshold!r} and pitch.voicing_threshold={self.voicing_threshold!r} "
                "must satisfy 0 < threshold <= voicing_threshold <= 1"
            )

    def max_lag(self, sample_rate: int) -> int:
        return int(math.ceil(sample_rate / self.f0_min_hz))

    def min_lag(self, sample_rate: int) -> int:
        return max(2, int(math.floor(sample_rate / self.f0_max_hz)))

    def window_samples(self, sample_rate: int) -> int:
        """Samples each frame sees: an integration window plus the longest lag."""
        return 2 * self.max_lag(sample_rate)


def yin_frames(frames: np.ndarray, sample_rate: int, config: PitchConfig) -> tuple[np.ndarray, np.ndarray]:
    """Estimate F0 for a batch of analysis windows.

    Args:
        frames: ``(num_frames, config.window_samples(sample_rate))`` float array.
        sample_rate: in Hz.
        config: estimator settings.

    Returns:
        ``(f0_hz, periodicity)``: ``f0_hz`` is 0 for unvoiced frames;
        ``periodicity`` is ``1 - d'`` at the chosen lag (1 = perfectly periodic).
    """
    num_frames, length = frames.shape
    max_lag = config.max_lag(sample_rate)
    min_lag = config.min_lag(sample_rate)
    if num_frames == 0:
        return np.zeros(0), np.zeros(0)
    x = frames.astype(np.float64, copy=False)
    # Difference function over every pair (i, i + lag) inside the window, divided
    # by the number of pairs: its centre of mass is the window centre for every
    # lag, so a gliding F0 is estimated at the frame's own time (plain YIN, with
    # a fixed integration window at the start, lags behind by up to half a period).
    nfft = 1 << int(math.ceil(math.log2(2 * length)))
    spec = np.fft.rfft(x, nfft, axis=1)
    auto = np.fft.irfft(spec * np.conj(spec), nfft, axis=1)[:, : max_lag + 1]
    power = np.concatenate([np.zeros((num_frames, 1)), np.cumsum(x * x, axis=1)], axis=1)
    lags = np.arange(max_lag + 1)
    head = power[:, length - lags]
    tail = power[:, -1:] - power[:, lags]
    pairs = (length - lags).astype(np.float64)
    diff = np.maximum(head + tail - 2.0 * auto, 0.0) / pairs
    diff[:, 0] = 0.0
    running = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmnd[:, 1:] = np.where(running > 0, diff[:, 1:] * lags[1:] / running, 1.0)

    search = cmnd[:, min_lag : max_lag + 1]
    idx = np.arange(search.shape[1])
    below = search < config.threshold
    has_dip = below.any(axis=1)
    first = np.argmax(below, axis=1)
    after_first = idx[None, :] >= first[:, None]
    broken = np.cumsum(after_first & ~below, axis=1) > 0
    region = after_first & below & ~broken
    masked = np.where(region, search, np.inf)
    best = np.where(has_dip, np.argmin(masked, axis=1), np.argmin(search, axis=1))

    # A strong upper harmonic (a singer's formant, pharyngeal voice) can dip
    # below the threshold at a fraction of the period. If a multiple of the
    # chosen lag is much more periodic, the chosen lag was a harmonic.
    rows = np.arange(num_frames)
    padded = np.concatenate([cmnd, np.ones((num_frames, 1))], axis=1)  # index max_lag + 1 is "aperiodic"
    lag = best + min_lag
    at_lag = padded[rows, lag]
    multiples = lag[:, None] * np.array([2, 3, 4])[None, :]
    inside = multiples <= max_lag - 1
    near = np.minimum(multiples, max_lag - 1)[:, :, None] + np.array([-1, 0, 1])[None, None, :]
    values = padded[rows[:, None, None], near]
    refined = near[rows[:, None], np.arange(3)[None, :], np.argmin(values, axis=2)]
    refined_value = np.where(inside, values.min(axis=2), np.inf)
    better = (at_lag[:, None] > 0.05) & (refined_value < 0.5 * at_lag[:, None])
    pick = np.argmin(np.where(better, refined_value, np.inf), axis=1)
    lag = np.where(better.any(axis=1), refined[rows, pick], lag)

    # Parabolic interpolation around the chosen lag.
    left = padded[rows, lag - 1]
    mid = padded[rows, lag]
    right = padded[rows, lag + 1]
    denom = left - 2.0 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / denom, 0.0)
    shift = np.minimum(np.maximum(shift, -0.5), 0.5)
    shift = np.where((lag > min_lag) & (lag < max_lag), shift, 0.0)
    period = lag + shift

    rms = np.sqrt(np.mean(x * x, axis=1))
    level_db = 20.0 * np.log10(rms + 1e-12)
    # A minimum at the longest lag is the edge of the search, not a period: the voice is below f0_min_hz.
    voiced = (mid < config.voicing_threshold) & (level_db > config.silence_db) & (lag < max_lag)
    f0 = np.where(voiced, sample_rate / period, 0.0)
    return f0, 1.0 - np.minimum(np.maximum(mid, 0.0), 1.0)


def estimate_f0(
    audio: np.ndarray, sample_rate: int, hop_samples: int, config: PitchConfig | None = None
) -> np.ndarray:
    """F0 of a whole signal on a centred frame grid (0 where unvoiced).

    Args:
        audio: mono float samples.
        sample_rate: in Hz.
        hop_samples: frame hop.
        config: estimator settings; defaults to :class:`PitchConfig`.

    Returns:
        ``(frame_count(len(audio), hop_samples),)`` float64 F0 in Hz.
    """
    config = config or PitchConfig()
    win = config.window_samples(sample_rate)
    padded, start, n = pad_for_frames(np.asarray(audio, dtype=np.float64), hop_samples, win)
    out = np.zeros(n)
    block = 512
    for first in range(0, n, block):
        count = min(block, n - first)
        frames = frame_matrix(padded, start, first, count, hop_samples, win)
        out[first : first + count] = yin_frames(frames, sample_rate, config)[0]
    return out

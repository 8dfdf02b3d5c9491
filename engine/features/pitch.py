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
from . import _spectral
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
    if num_frames == 0:
        return np.zeros(0), np.zeros(0)
    # Compiled (engine/features/_spectral.cpp, without the GIL); the steps, per frame:
    # - the difference function over every pair (i, i + lag) inside the window, divided by the
    #   number of pairs: its centre of mass is the window centre for every lag, so a gliding F0 is
    #   estimated at the frame's own time (plain YIN, with a fixed integration window at the start,
    #   lags behind by up to half a period); autocorrelation through an FFT;
    # - the cumulative mean normalised difference; the lowest value of the first run of lags
    #   under ``threshold``, else the lowest of all lags;
    # - a strong upper harmonic (a singer's formant, pharyngeal voice) can dip below the threshold
    #   at a fraction of the period: if a multiple of the chosen lag (2-4 times, within +-m/2) is
    #   under half its value (the lag's above 0.05), the lag was a harmonic and the *lowest* such
    #   multiple is taken, then checked in turn. Not the most periodic multiple: a voice with a faint
    #   subharmonic repeats better over two periods than over one, and that choice sang a pressed
    #   tenor an octave low for 12% of a song. A lag already under 0.05 moves only where its double
    #   is no better (over 0.7 of it) and its third or fourth multiple is under a quarter of it: a
    #   dominant third harmonic (pharyngeal voice) repeats as well over two of its periods as one;
    # - parabolic interpolation around the lag (not at the ends of the range);
    # - voiced where the normalised difference is under ``voicing_threshold``, the RMS level above
    #   ``silence_db``, and the minimum not at the longest lag (the edge of the search: the voice
    #   is below ``f0_min_hz``).
    f0, periodicity = _spectral.yin(frames, sample_rate, config.min_lag(sample_rate), config.max_lag(sample_rate),
                                    config.threshold, config.voicing_threshold, config.silence_db)
    return f0, periodicity


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

"""Frame-local F0 estimation (YIN with a cumulative-mean-normalised difference).

Each frame's estimate depends only on the samples of its own window, so the
same code runs on a whole file (training, evaluation) and on a live stream
chunk by chunk with identical results. The window is centred on the frame
(see :mod:`voxflip.engine.features.frames`), which costs ``window_samples // 2``
samples of lookahead.

Reference: de Cheveigné and Kawahara, "YIN, a fundamental frequency estimator
for speech and music", JASA 2002 (steps 2-5: difference function, cumulative
mean normalisation, absolute threshold, parabolic interpolation). With
``PitchConfig.refine`` (the WORLD analysis's setting), each voiced frame's value is then
refined from its harmonics' instantaneous frequency inside the same window (:func:`refine_f0`).
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
        refine: refine each voiced frame's F0 from the instantaneous frequency of its first
            harmonics (:func:`refine_f0`), inside the same window (no more lookahead).
    """

    f0_min_hz: float = 60.0
    f0_max_hz: float = 1100.0
    threshold: float = 0.15
    voicing_threshold: float = 0.3
    silence_db: float = -55.0
    refine: bool = False

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
    if config.refine:
        f0 = refine_f0(frames, f0, sample_rate)
    return f0, periodicity


#: :func:`refine_f0` reads at most this many harmonics, all below ``REFINE_MAX_HZ``
REFINE_HARMONICS = 6
REFINE_MAX_HZ = 4000.0
#: a harmonic whose reading lies further than this fraction from ``k F0`` is left out
REFINE_HARMONIC_TOLERANCE = 0.1
#: a pass's reading is kept where it lies within this fraction of the F0 it started from
REFINE_MAX_MOVE = 0.1
#: readings in all, each from the last one kept
REFINE_PASSES = 2


def refine_f0(frames: np.ndarray, f0_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    """Each voiced frame's F0 refined from the instantaneous frequency of its first harmonics.

    YIN's lag is the best single period over a window of two of the longest periods (33 ms at the
    60 Hz floor), interpolated between samples; a voice that glides, shakes or wavers within that
    window gets the window's average. The frequency each harmonic actually has at the frame's centre
    can be read off the phase of a short spectrum: with a window ``w`` and its derivative ``w'``,
    ``omega - Im(X_w' conj(X_w)) / |X_w|^2`` at ``omega`` near the harmonic (the reassigned
    frequency; Auger and Flandrin 1995). On a Blackman window three periods of the frame's F0 long,
    each of the first :data:`REFINE_HARMONICS` harmonics under :data:`REFINE_MAX_HZ` reads ``k F0``
    where its energy is; readings further than :data:`REFINE_HARMONIC_TOLERANCE` from ``k F0`` are
    left out, the rest averaged weighted by power, and the average taken where it lies within
    :data:`REFINE_MAX_MOVE` of the F0 it started from; then read again from there
    (:data:`REFINE_PASSES` in all). A frame whose three periods do not fit its window (F0 under 1.5
    times the search floor: 90 Hz by default) keeps YIN's F0; so does an octave error, near enough
    (a window sized for twice the pitch cannot resolve the fundamental, whose reading drags too far
    to be taken).

    Why it matters: WORLD's aperiodicity (D4C) and envelope (CheapTrick) are read at the F0 they are
    given, and a few cents off at the frame's own time reads harmonics as noise. Measured on
    dev-data's singing (docs/results.md, "The F0 track's fine values"): WORLD copy synthesis and
    ``world-nodur`` sound better to DNSMOS (+0.04-0.05) with the words unchanged; ``psola`` follows the notes a
    little better (raw chroma accuracy +0.004); ``psola-tsm`` moves inside its intervals.

    Args:
        frames: the ``(num_frames, window)`` rows YIN read, each centred on its frame.
        f0_hz: YIN's F0 per row (0: unvoiced, left so).
        sample_rate: in Hz.
    """
    return _spectral.refine_f0(frames, np.asarray(f0_hz, np.float64), sample_rate, REFINE_HARMONICS, REFINE_MAX_HZ,
                               REFINE_HARMONIC_TOLERANCE, REFINE_MAX_MOVE, REFINE_PASSES)


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

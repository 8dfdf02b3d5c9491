"""Frame-local WORLD-style analysis: F0, spectral envelope, aperiodicity, level.

F0 comes from the frame-local YIN estimator in :mod:`.pitch`; the envelope from
WORLD's CheapTrick and the aperiodicity from WORLD's D4C (through pyworld),
evaluated only at the requested frames of a segment. Every window these
analyses open lies inside ``margin_samples`` of its frame, so a caller that
hands over a segment with that margin on both sides gets the same envelope as
an analysis of the whole file (D4C differs by a small amount at some frames;
what matters for streaming is that it depends only on the fixed chunk grid).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .frames import frame_matrix
from .levels import frame_peaks, repair_aperiodicity, scale_exponents
from .pitch import PitchConfig, yin_frames

with warnings.catch_warnings():
    # pyworld imports pkg_resources, which warns on import under setuptools >= 67.
    warnings.simplefilter("ignore")
    import pyworld


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of :class:`WorldAnalyzer`.

    Attributes:
        sample_rate: model rate in Hz.
        hop_samples: frame hop.
        fft_size: CheapTrick/D4C FFT size; envelopes have ``fft_size // 2 + 1`` bins.
        envelope_f0_floor_hz: lowest F0 CheapTrick windows adapt to (below it a
            frame is analysed as unvoiced); bounded by ``fft_size``.
        d4c_min_f0_hz: F0 values below this are raised to it for D4C only, which
            caps D4C's window (two periods each side) and so the lookahead.
        pitch: F0 estimator settings.
    """

    sample_rate: int = 24_000
    hop_samples: int = 120
    fft_size: int = 1024
    envelope_f0_floor_hz: float = 71.0
    d4c_min_f0_hz: float = 100.0
    pitch: PitchConfig = PitchConfig()

    def __post_init__(self) -> None:
        needed = 3.0 * self.sample_rate / self.envelope_f0_floor_hz + 1.0
        if self.fft_size < needed:
            raise ConfigError(
                f"analysis.fft_size={self.fft_size} is too small for envelope_f0_floor_hz="
                f"{self.envelope_f0_floor_hz} at {self.sample_rate} Hz; use fft_size >= {2 ** math.ceil(math.log2(needed))}"
            )
        if self.hop_samples <= 0:
            raise ConfigError(f"analysis.hop_samples={self.hop_samples!r} must be > 0")

    @property
    def bins(self) -> int:
        return self.fft_size // 2 + 1

    @property
    def pitch_window_samples(self) -> int:
        return self.pitch.window_samples(self.sample_rate)

    @property
    def margin_samples(self) -> int:
        """Samples every frame's analysis needs on each side of its centre."""
        cheaptrick = 1.5 * self.sample_rate / self.envelope_f0_floor_hz
        d4c = 2.0 * self.sample_rate / self.d4c_min_f0_hz
        return int(math.ceil(max(cheaptrick, d4c, self.pitch_window_samples / 2))) + 2


@dataclass
class Frames:
    """Analysis results for consecutive frames; every array has the frame axis first."""

    f0_hz: np.ndarray        # (n,), 0 = unvoiced
    periodicity: np.ndarray  # (n,), 1 - YIN's normalised difference
    level_db: np.ndarray     # (n,), frame RMS in dB full scale
    sp: np.ndarray           # (n, bins), power spectral envelope
    ap: np.ndarray           # (n, bins), aperiodicity 0..1
    #: (n,) int: each frame was analysed at 2**-k of its level (.levels); None: all 0
    scale_exponent: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.f0_hz.shape[0])

    def exponents(self) -> np.ndarray:
        """``scale_exponent``, zeros where it was not kept."""
        return np.zeros(len(self), np.int64) if self.scale_exponent is None else self.scale_exponent

    def envelope_floor(self, floor: float) -> np.ndarray:
        """``(n, 1)``: a floor for ``sp`` that follows the level as the analysis did (``floor * 4**k``),
        so a decision on floored envelopes is the same for a loud frame as for its normal-level copy."""
        return np.ldexp(np.full(len(self), float(floor)), 2 * self.exponents())[:, None]

    def slice(self, start: int, stop: int) -> Frames:
        return Frames(
            self.f0_hz[start:stop], self.periodicity[start:stop], self.level_db[start:stop],
            self.sp[start:stop], self.ap[start:stop], self.exponents()[start:stop],
        )

    @staticmethod
    def concat(parts: list[Frames], bins: int) -> Frames:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Frames.empty(bins)
        return Frames(
            np.concatenate([p.f0_hz for p in parts]),
            np.concatenate([p.periodicity for p in parts]),
            np.concatenate([p.level_db for p in parts]),
            np.concatenate([p.sp for p in parts]),
            np.concatenate([p.ap for p in parts]),
            np.concatenate([p.exponents() for p in parts]),
        )

    @staticmethod
    def empty(bins: int) -> Frames:
        z = np.zeros(0)
        return Frames(z, z, z, np.zeros((0, bins)), np.zeros((0, bins)))


class WorldAnalyzer:
    """Analyse consecutive frames of a segment. Stateless."""

    def __init__(self, config: AnalysisConfig) -> None:
        self.config = config

    def analyze(self, segment: np.ndarray, segment_start: int, first_frame: int, num_frames: int) -> Frames:
        """Analyse frames ``first_frame .. first_frame + num_frames - 1``.

        Args:
            segment: float64 samples starting at absolute sample ``segment_start``;
                must cover ``margin_samples`` around every requested frame centre.
            segment_start: absolute index of ``segment[0]`` (negative when the
                caller prepended zeros for the start of the stream).
            first_frame, num_frames: which frames.

        Returns:
            :class:`Frames` for the requested frames.
        """
        cfg = self.config
        if num_frames <= 0:
            return Frames.empty(cfg.bins)
        hop = cfg.hop_samples
        centers = (first_frame + np.arange(num_frames)) * hop - segment_start
        margin = cfg.margin_samples
        if centers[0] - margin < 0 or centers[-1] + margin >= segment.shape[0]:
            raise ValueError(
                f"segment of {segment.shape[0]} samples at {segment_start} does not hold {margin} samples "
                f"around frames {first_frame}..{first_frame + num_frames - 1}"
            )
        windows = frame_matrix(segment, segment_start, first_frame, num_frames, hop, cfg.pitch_window_samples)
        f0, periodicity = yin_frames(windows, cfg.sample_rate, cfg.pitch)
        rms = np.sqrt(np.mean(windows * windows, axis=1))
        level_db = 20.0 * np.log10(rms + 1e-10)
        x = np.ascontiguousarray(segment, dtype=np.float64)
        times = centers / cfg.sample_rate
        f0_d4c = np.where(f0 > 0, np.maximum(f0, cfg.d4c_min_f0_hz), 0.0)
        # Level safety (.levels): a frame whose analysis reach peaks above full scale is analysed
        # scaled down by 2**-k, and its envelope scaled back up by 4**k (exact: powers of two).
        exponents = scale_exponents(frame_peaks(x, centers, margin))
        sp = np.empty((num_frames, cfg.bins))
        ap = np.empty((num_frames, cfg.bins))
        for k in np.unique(exponents):
            rows = np.nonzero(exponents == k)[0]
            xk = x if k == 0 else np.ldexp(x, -int(k))
            sp[rows] = np.ldexp(pyworld.cheaptrick(xk, f0[rows], times[rows], cfg.sample_rate, fft_size=cfg.fft_size),
                                2 * int(k))
            ap[rows] = pyworld.d4c(xk, f0_d4c[rows], times[rows], cfg.sample_rate, threshold=0.0,
                                   fft_size=cfg.fft_size)
        return Frames(f0, periodicity, level_db, sp, repair_aperiodicity(ap), exponents)

    def analyze_signal(self, audio: np.ndarray) -> Frames:
        """Analyse every centred frame of a whole signal (offline convenience)."""
        cfg = self.config
        audio = np.asarray(audio, dtype=np.float64)
        hop = cfg.hop_samples
        n = (audio.shape[0] - 1) // hop + 1 if audio.shape[0] else 0
        margin = cfg.margin_samples
        padded = np.concatenate([np.zeros(margin), audio, np.zeros(margin + hop)])
        parts = []
        block = 400
        for first in range(0, n, block):
            count = min(block, n - first)
            lo = first * hop  # padded index of (first*hop - margin)
            hi = (first + count - 1) * hop + 2 * margin + 1
            parts.append(self.analyze(padded[lo:hi], first * hop - margin, first, count))
        return Frames.concat(parts, cfg.bins)

"""Frame-local WORLD-style analysis: F0, spectral envelope, aperiodicity, level.

F0 comes from the frame-local YIN estimator in :mod:`.pitch`; the envelope from
CheapTrick and the aperiodicity from D4C (Morise's methods, as WORLD has them; compiled here in
``_spectral.cpp``, which agrees with pyworld's to rounding on real voices), evaluated only at the
requested frames of a segment. Every window these
analyses open lies inside ``margin_samples`` of its frame, so a caller that
hands over a segment with that margin on both sides gets exactly the same
frames as an analysis of the whole file, whatever the segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import ConfigError
from . import _spectral
from .frames import frame_matrix
from .levels import frame_peaks, repair_aperiodicity, scale_exponents
from .pitch import PitchConfig, yin_frames

#: the lowest F0 D4C is given by default (its window: two periods each side)
DEFAULT_D4C_MIN_F0_HZ = 100.0
#: what ``AnalysisConfig.for_voice_floor`` takes, in Hz (the low end: CheapTrick's 1024-point FFT at 24 kHz)
VOICE_FLOOR_RANGE_HZ = (71.0, 400.0)
#: ``for_voice_floor``'s F0 search starts at this fraction of the floor (never lower than the
#: default's): its window, two periods of that, is 24.4 ms at a 100 Hz floor instead of 20 ms, the
#: longest that keeps ``--voice-floor 100 --chunk-ms 5`` within 25 ms at 48 kHz. On dev-data's 25
#: singing clips it leaves the default analysis's voicing on 1.36% of the frames instead of 1.91%,
#: and live `world-nodur` read CER -0.023 +- 0.050 against the 20 ms window (docs/results.md)
PITCH_FLOOR_RATIO = 0.82


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
        pitch: F0 estimator settings; refined (``PitchConfig.refine``: each voiced frame's value read
            again from its harmonics' instantaneous frequency, inside the same window).
        envelope, aperiodicity: whether CheapTrick and D4C run. A converter that never reads a
            frame's ``sp`` (``ap``) turns it off; the frames then carry ones there. Nothing else
            changes (not the margins, so not the latency), and CheapTrick and D4C are two thirds of
            the analysis's time: the PSOLA converters, which sing or speak with the input's own
            samples, need neither (``psola``, ``psola-nodur``) or only the envelope (``psola-tsm``).
    """

    sample_rate: int = 24_000
    hop_samples: int = 120
    fft_size: int = 1024
    envelope_f0_floor_hz: float = 71.0
    d4c_min_f0_hz: float = DEFAULT_D4C_MIN_F0_HZ
    pitch: PitchConfig = PitchConfig(refine=True)
    envelope: bool = True
    aperiodicity: bool = True

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

    def for_voice_floor(self, floor_hz: float) -> AnalysisConfig:
        """These settings with every window sized for a voice whose F0 stays above ``floor_hz``.

        The lowest F0 followed, the envelope's floor and the aperiodicity's lowest F0 decide how
        far past a frame the analysis must read, and so the latency. The defaults serve any voice
        down to 60 Hz; at ``floor_hz`` CheapTrick adapts down to the floor (1.5 periods each side),
        D4C is given at least 4/3 of it (two of those periods are 1.5 of the floor's), and the F0
        search starts a little below it (:data:`PITCH_FLOOR_RATIO` of it, never below the default's
        60 Hz), so that its shorter window decides voicing nearly as the default's does. 100 Hz:
        17.3 ms past the last frame (the F0 window's 12.2 ms after one frame), against 21.8 ms by
        default. Frames of a voice below the F0 search are analysed as unvoiced.

        Raises:
            ConfigError: ``floor_hz`` outside ``VOICE_FLOOR_RANGE_HZ``.
        """
        lo, hi = VOICE_FLOOR_RANGE_HZ
        if isinstance(floor_hz, bool) or not isinstance(floor_hz, int | float) or not lo <= floor_hz <= hi:
            raise ConfigError(f"voice_floor_hz={floor_hz!r} must be within {lo:g}..{hi:g} Hz (the lowest F0 of the "
                              f"voice; {lo:g} Hz is as low as the {self.fft_size}-point envelope analysis goes)")
        floor = float(floor_hz)
        return replace(self, envelope_f0_floor_hz=floor, d4c_min_f0_hz=max(DEFAULT_D4C_MIN_F0_HZ, floor * 4.0 / 3.0),
                       pitch=replace(self.pitch, f0_min_hz=max(self.pitch.f0_min_hz, floor * PITCH_FLOOR_RATIO)))

    @property
    def pitch_window_samples(self) -> int:
        return self.pitch.window_samples(self.sample_rate)

    @property
    def envelope_margin_samples(self) -> int:
        """Samples CheapTrick and D4C need on each side of a frame's centre."""
        cheaptrick = 1.5 * self.sample_rate / self.envelope_f0_floor_hz
        d4c = 2.0 * self.sample_rate / self.d4c_min_f0_hz
        return int(math.ceil(max(cheaptrick, d4c))) + 2

    @property
    def pitch_margin_samples(self) -> int:
        """Samples the F0 estimator needs on each side of a frame's centre."""
        return int(math.ceil(self.pitch_window_samples / 2)) + 2

    @property
    def margin_samples(self) -> int:
        """Samples every frame's whole analysis needs on each side of its centre."""
        return max(self.envelope_margin_samples, self.pitch_margin_samples)


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


#: the fewest frames a thread is given when an analysis is shared between threads
MIN_FRAMES_PER_THREAD = 20
#: the part of the first queued chunk of a batch the workers take (:meth:`WorldAnalyzer.prefetch`)
FIRST_JOB_SHARE = 0.5


class WorldAnalyzer:
    """Analyse consecutive frames of a segment. Stateless.

    Every frame's analysis is a function of its own samples alone, so frames can be analysed in
    any grouping and on other threads with the same result. With ``threads > 1`` (offline renders
    of long files: :meth:`voxflip.engine.converters.base.Converter.use_cores`) each call hands all
    but the last share of its frames to a pool of ``threads - 1`` worker threads, started on first
    use and stopped with the analyser (:meth:`close`). Threads, not processes: the envelope and
    aperiodicity (``._spectral``, most of the work) run without the GIL, and nothing is copied
    between processes. The live path never does this.
    """

    def __init__(self, config: AnalysisConfig, *, threads: int = 1) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads={threads!r} must be a whole number >= 1")
        self.config = config
        self.threads = threads
        self._pool: Any = None
        # (segment start, first frame, count) -> (future of the first `frames` of them, frames)
        self._queued: dict[tuple[int, int, int], tuple[Any, int, bool]] = {}
        #: the part of a queued chunk the workers take; the caller analyses the rest while they do, and
        #: the part moves towards the balance (the caller also runs everything after the analysis,
        #: which can be as much as the analysis: then the workers take it all)
        self.share = 0.75

    def close(self) -> None:
        """Stop the worker threads, if any were started."""
        pool, self._pool = self._pool, None
        self._queued.clear()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def prefetch(self, jobs: list[tuple[np.ndarray, int, int, int]]) -> None:
        """Queue analyses ``(segment, segment_start, first_frame, num_frames)`` for the worker
        threads, ahead of the :meth:`analyze` calls that will ask for them (an offline render that
        has several chunks at hand): the workers take the first :attr:`share` of each chunk's frames,
        the caller the rest when it asks. The first job of a batch is asked for at once, so it is
        shared half and half (and does not move the share). A job not started by then is done in
        the caller. Without worker threads, nothing."""
        if self.threads <= 1:
            return
        pool = self._workers()
        for index, (segment, segment_start, first_frame, num_frames) in enumerate(jobs):
            key = (segment_start, first_frame, num_frames)
            if key not in self._queued:
                share = FIRST_JOB_SHARE if index == 0 else self.share
                frames = min(num_frames, max(1, round(share * num_frames)))
                self._queued[key] = (pool.submit(self._analyze_here, np.asarray(segment, np.float64),
                                                 segment_start, first_frame, frames), frames, index > 0)

    def _workers(self) -> Any:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="voxflip-analysis")
        return self._pool

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

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
        queued = self._queued.pop((segment_start, first_frame, num_frames), None)
        if queued is not None:
            future, frames, adapt = queued
            if future.cancel():   # still waiting for a worker: do it all here
                return self._analyze_here(segment, segment_start, first_frame, num_frames)
            rest = self._analyze_here(segment, segment_start, first_frame + frames, num_frames - frames)
            early = future.done()
            head = future.result()
            if adapt:   # the workers were done first: give them more; the caller waited: give them less
                self.share = min(1.0, self.share + 0.02) if early else max(0.3, self.share - 0.05)
            return Frames.concat([head, rest], cfg.bins)
        shares = min(self.threads, num_frames // MIN_FRAMES_PER_THREAD)
        if shares <= 1:
            return self._analyze_here(segment, segment_start, first_frame, num_frames)
        self._workers()
        bounds = np.linspace(0, num_frames, shares + 1).round().astype(int)
        futures = []
        for lo, hi in zip(bounds[:-2], bounds[1:-1], strict=True):
            first, count = first_frame + int(lo), int(hi - lo)
            start = first * hop - margin - segment_start
            piece = segment[start:start + (count - 1) * hop + 2 * margin + 1]
            futures.append(self._pool.submit(self._analyze_here, piece, segment_start + start, first, count))
        last = int(bounds[-2])
        here = self._analyze_here(segment, segment_start, first_frame + last, num_frames - last)
        return Frames.concat([f.result() for f in futures] + [here], cfg.bins)

    def _analyze_here(self, segment: np.ndarray, segment_start: int, first_frame: int, num_frames: int) -> Frames:
        cfg = self.config
        if num_frames <= 0:
            return Frames.empty(cfg.bins)
        hop = cfg.hop_samples
        centers = (first_frame + np.arange(num_frames)) * hop - segment_start
        margin = cfg.margin_samples
        windows = frame_matrix(segment, segment_start, first_frame, num_frames, hop, cfg.pitch_window_samples)
        f0, periodicity = yin_frames(windows, cfg.sample_rate, cfg.pitch)
        rms = np.sqrt(np.mean(windows * windows, axis=1))
        level_db = 20.0 * np.log10(rms + 1e-10)
        x = np.ascontiguousarray(segment, dtype=np.float64)
        f0_d4c = np.where(f0 > 0, np.maximum(f0, cfg.d4c_min_f0_hz), 0.0)
        # Level safety (.levels): a frame whose analysis reach peaks above full scale is analysed
        # scaled down by 2**-k, and its envelope scaled back up by 4**k (exact: powers of two).
        exponents = scale_exponents(frame_peaks(x, centers, margin))
        # Every frame on its own reach (`envelope_margin_samples` either side), a function of its own
        # samples alone, so the output of every chunk size is the same (._spectral). What the
        # configuration leaves out (the PSOLA converters read neither) is ones.
        reach = cfg.envelope_margin_samples
        centres = centers.astype(np.int64)
        sp = (_spectral.cheaptrick(x, centres, f0, exponents, reach, cfg.sample_rate, cfg.fft_size) if cfg.envelope
              else np.ones((num_frames, cfg.bins)))
        ap = (repair_aperiodicity(_spectral.d4c(x, centres, f0_d4c, exponents, reach, cfg.sample_rate, cfg.fft_size))
              if cfg.aperiodicity else np.ones((num_frames, cfg.bins)))
        return Frames(f0, periodicity, level_db, sp, ap, exponents)

    def __getstate__(self) -> dict:
        return {"config": self.config, "threads": self.threads, "_pool": None, "_queued": {}}

    def pitch(self, segment: np.ndarray, segment_start: int, first_frame: int,
              num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """F0 and periodicity alone of frames ``first_frame ..``, exactly as :meth:`analyze` finds
        them; the segment needs only ``pitch_margin_samples`` around each frame."""
        cfg = self.config
        windows = frame_matrix(np.asarray(segment, np.float64), segment_start, first_frame, num_frames,
                               cfg.hop_samples, cfg.pitch_window_samples)
        return yin_frames(windows, cfg.sample_rate, cfg.pitch)

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


"""The frame pipeline the WORLD converters share: analyse, tidy, transform, synthesise.

Per chunk of ``chunk_frames`` frames:

1. analyse the frames the window has just completed (:class:`WorldAnalyzer`);
2. tidy F0 with one frame of lookahead: fill one-frame voicing gaps, drop
   one-frame voiced blips, repair one-frame octave jumps;
3. ``transform`` the tidy frames into output frames (the converter's own
   business: a new F0 contour, dropped or repeated frames, ...);
4. synthesise the output frames (:class:`SourceFilterSynth`, one frame behind), high-passed at
   :data:`WORLD_DC_BLOCK_HZ` (the synthesiser's rumble under 20 Hz; causal, no latency).

Analysis runs ``LOOKAHEAD_FRAMES`` frame ahead of synthesis, because the
synthesiser interpolates towards the next frame. The tidy step needs only the
F0 of the frame after that, which the F0 estimator alone gives (its window is
shorter than the envelope's): so the window reaches
``max(envelope margin, hop + F0 margin)`` past the last analysed frame, not a
whole frame plus the envelope's margin (4.5 ms less at the default analysis).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..features.world import AnalysisConfig, Frames, WorldAnalyzer
from ..vocoder.shaping import ShapingConfig
from ..vocoder.source_filter import SourceFilterSynth, SynthConfig, SynthState
from .base import ChunkGrid, Converter

LOOKAHEAD_FRAMES = 1
#: the output high-pass of every WORLD converter (``SynthConfig.dc_block_hz``): the pulse synthesiser
#: adds energy under 20 Hz that the input did not have (median +24 dB over the singing on dev-data),
#: which a fourth-order Butterworth at 20 Hz takes away, leaving every voice (-0.003 dB at 70 Hz)
WORLD_DC_BLOCK_HZ = 20.0


#: the chunk of an offline render (ms): the output does not depend on it (tests), and a long chunk
#: means few calls and enough frames to share the analysis between threads (``use_cores``)
OFFLINE_CHUNK_MS = 1000


def world_chunk_grid(analysis: AnalysisConfig | None = None) -> ChunkGrid:
    """The chunks every WORLD converter streams: multiples of the analysis hop; 1 s offline, 10 ms live."""
    analysis = analysis or AnalysisConfig()
    frames_per_ms = analysis.sample_rate / analysis.hop_samples / 1000.0
    return ChunkGrid(analysis.hop_samples, analysis.sample_rate, default_frames=round(OFFLINE_CHUNK_MS * frames_per_ms),
                     live_frames=max(1, round(10 * frames_per_ms)))


@dataclass
class PipelineState:
    """State shared by every WORLD converter; subclasses keep theirs in ``custom``."""

    synth: SynthState
    custom: Any
    chunks: int = 0
    tidy_prev: Frames | None = None   # last raw frame already tidied (context for the next)
    frames_tidied: int = 0
    frames_out: int = 0
    finished: bool = False
    warnings: list[str] = field(default_factory=list)


class WorldPipelineConverter(Converter):
    """Base of the WORLD converters; subclasses implement :meth:`transform`."""

    def __init__(self, analysis: AnalysisConfig, chunk_frames: int | None = None, *,
                 shaping: ShapingConfig | None = None) -> None:
        """``shaping``: the singers' spectral shaping of the synthesiser's output (none by default)."""
        grid = world_chunk_grid(analysis)
        chunk_frames = grid.default_frames if chunk_frames is None else grid.check_frames(chunk_frames)
        self.analysis = analysis
        self.analyzer = WorldAnalyzer(analysis)
        self.synth = SourceFilterSynth(
            SynthConfig(sample_rate=analysis.sample_rate, hop_samples=analysis.hop_samples, fft_size=analysis.fft_size,
                        dc_block_hz=WORLD_DC_BLOCK_HZ, shaping=shaping or ShapingConfig())
        )
        self.sample_rate = analysis.sample_rate
        self.hop_samples = analysis.hop_samples
        self.chunk_frames = chunk_frames
        self.chunk_samples = chunk_frames * analysis.hop_samples
        self.context_samples = analysis.margin_samples
        self.lookahead_frames = LOOKAHEAD_FRAMES
        # past the last analysed frame: its envelope's reach, or the next frame's F0 (the tidy step's)
        reach = max(analysis.envelope_margin_samples, analysis.hop_samples + analysis.pitch_margin_samples,
                    analysis.margin_samples)
        self.lookahead_samples = (LOOKAHEAD_FRAMES - 1) * analysis.hop_samples + reach + 1

    def use_cores(self, cores: int) -> int:
        """Share each chunk's analysis (about half of the work) between ``cores`` threads; every
        frame's analysis depends on its own samples only, so the output is the same."""
        self.close()
        self.analyzer = WorldAnalyzer(self.analysis, threads=max(1, int(cores)))
        if self.analyzer.threads > 1:   # and a thread shares the groups of pulse responses too
            from concurrent.futures import ThreadPoolExecutor

            self._synth_pool = ThreadPoolExecutor(1, thread_name_prefix="voxflip-synth")
            self.synth.share_with(self._synth_pool)
        return self.analyzer.threads

    def close(self) -> None:
        self.analyzer.close()
        pool, self._synth_pool = getattr(self, "_synth_pool", None), None
        if pool is not None:
            self.synth.share_with(None)
            pool.shutdown(wait=True)

    def analyse_further(self, frames: int) -> None:
        """Analyse ``frames`` more frames ahead of the output (a subclass that needs to see further)."""
        self.lookahead_frames += frames
        self.lookahead_samples += frames * self.hop_samples

    # -- subclass hooks ---------------------------------------------------------------------------
    @abstractmethod
    def init_custom(self) -> Any:
        """Converter-specific state."""

    @abstractmethod
    def transform(self, frames: Frames, first_frame: int, state: PipelineState, input_end_frame: int | None) -> Frames:
        """Map tidy input frames (``first_frame`` onwards) to output frames."""

    def transform_finish(self, state: PipelineState) -> Frames:
        """Output frames owed at the end of the input (after the last transform)."""
        return Frames.empty(self.analysis.bins)

    # -- Converter interface ----------------------------------------------------------------------
    def init_state(self) -> PipelineState:
        return PipelineState(synth=self.synth.init_state(), custom=self.init_custom())

    def step(self, window: np.ndarray, state: PipelineState, *, input_end: int | None = None) -> np.ndarray:
        tidy, tidy_first, end_frame = self.analyse_chunk(window, state, input_end)
        out = self.transform(tidy, tidy_first, state, end_frame)
        audio, state.synth = self.synth.step(out.f0_hz, out.sp, out.ap, state.synth)
        state.frames_out += len(out)
        return audio

    def finish(self, state: PipelineState) -> np.ndarray:
        if state.finished:
            return np.zeros(0, np.float32)
        state.finished = True
        out = self.transform_finish(state)
        audio, state.synth = self.synth.step(out.f0_hz, out.sp, out.ap, state.synth)
        state.frames_out += len(out)
        return audio

    def prefetch(self, windows: list[tuple[int, np.ndarray]]) -> None:
        """Queue the analysis of chunks about to be stepped through for the worker threads of
        :meth:`use_cores` (nothing without them)."""
        if self.analyzer.threads <= 1:
            return
        jobs = []
        for k, window in windows:
            first, count = self._analysed_frames(k)
            jobs.append((window, k * self.chunk_samples - self.context_samples, first, count))
        self.analyzer.prefetch(jobs)

    def _analysed_frames(self, k: int) -> tuple[int, int]:
        """The first frame chunk ``k`` analyses fully, and how many."""
        n = self.chunk_frames
        return (0, n + self.lookahead_frames) if k == 0 else (k * n + self.lookahead_frames, n)

    def analyse_chunk(self, window: np.ndarray, state: PipelineState,
                      input_end: int | None) -> tuple[Frames, int, int | None]:
        """Steps 1-2 for one chunk: the tidy frames it completes, the index of the first, and the
        index of the first frame past the input (once known)."""
        k = state.chunks
        c0 = k * self.chunk_samples
        first, count = self._analysed_frames(k)
        segment = np.asarray(window, dtype=np.float64)
        raw = self.analyzer.analyze(segment, c0 - self.context_samples, first, count)
        next_f0, _ = self.analyzer.pitch(segment, c0 - self.context_samples, first + count, 1)
        state.chunks += 1
        tidy, tidy_first = self._tidy(raw, float(next_f0[0]), state)
        end_frame = None if input_end is None else -(-input_end // self.hop_samples)
        return tidy, tidy_first, end_frame

    # -- internals --------------------------------------------------------------------------------
    def _tidy(self, raw: Frames, next_f0: float, state: PipelineState) -> tuple[Frames, int]:
        """Tidy the raw frames, given the F0 of the frame after the last; returns (frames, index of the first)."""
        if not len(raw):
            return raw, state.frames_tidied
        prev = state.tidy_prev
        f0 = raw.f0_hz.copy()
        nxt = np.concatenate([raw.f0_hz[1:], [next_f0]])
        before = np.concatenate([[prev.f0_hz[0] if prev is not None else 0.0], raw.f0_hz[:-1]])
        voiced_before = before > 0
        voiced_next = nxt > 0
        st = 12.0 * np.log2(np.maximum(f0, 1e-3))
        st_before = 12.0 * np.log2(np.maximum(before, 1e-3))
        st_next = 12.0 * np.log2(np.maximum(nxt, 1e-3))
        neighbours_agree = voiced_before & voiced_next & (np.abs(st_before - st_next) < 2.0)
        mean_neighbour = 2.0 ** ((st_before + st_next) / 24.0)
        gap = (f0 <= 0) & neighbours_agree
        jump = (f0 > 0) & neighbours_agree & (np.abs(st - (st_before + st_next) / 2.0) > 9.0)
        blip = (f0 > 0) & ~voiced_before & ~voiced_next
        f0 = np.where(gap | jump, mean_neighbour, f0)
        f0 = np.where(blip, 0.0, f0)
        tidy = Frames(f0, raw.periodicity, raw.level_db, raw.sp, raw.ap, raw.scale_exponent)
        first = state.frames_tidied
        state.frames_tidied += len(tidy)
        # The context of the next call is this frame as analysed, not as tidied: within a call every
        # frame sees its neighbours as analysed, so the result does not depend on the chunk size.
        state.tidy_prev = raw.slice(len(raw) - 1, len(raw))
        return tidy, first

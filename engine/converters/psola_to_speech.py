"""Singing -> speech on the singer's own waveform: speech timing and intonation by TD-PSOLA.

The decisions are ``world-tsm``'s (:mod:`.world_speech_timing`): the same analysis, the
same speech timing (held vowels and long rests time-scaled, consonants kept) and the same
speech intonation. Only the synthesis differs: instead of a source-filter vocoder driven by
the analysed envelope, :class:`voxflip.engine.vocoder.psola.PsolaSynth` re-spaces two-period
grains of the input itself. Unvoiced sounds and everything the envelope analysis smooths
away (breath, the fine structure of consonants, the singer's timbre) pass through as
recorded; unvoiced frames at the sung pace come out sample for sample.

``psola-tsm`` shortens; ``psola-nodur`` keeps the sung timing (its output lines up with its
input, so its latency is constant: the live form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..features.world import Frames
from ..vocoder.psola import PsolaConfig, PsolaState, PsolaSynth
from .speech_timing import SpeechTimingConfig
from .world_pipeline import PipelineState, WorldPipelineConverter
from .world_speech_timing import WorldSpeechTimingConfig, WorldSpeechTimingConverter


def feed_chunk(converter: WorldPipelineConverter, synth: PsolaSynth, psola: PsolaState, window: np.ndarray,
               state: PipelineState, input_end: int | None) -> tuple[Frames, int, int | None]:
    """What every PSOLA converter does first with a chunk: hand its window to the synthesiser, analyse
    it, and place the analysis marks of the frames it completes; returns ``analyse_chunk``'s result."""
    start = state.chunks * converter.chunk_samples - converter.context_samples
    synth.add_input(np.asarray(window, np.float64), start, psola)
    tidy, first, end_frame = converter.analyse_chunk(window, state, input_end)
    synth.add_analysis(tidy.f0_hz, first, psola)
    return tidy, first, end_frame


@dataclass
class PsolaPipelineState(PipelineState):
    psola: PsolaState | None = None


class PsolaToSpeechConverter(WorldSpeechTimingConverter):
    """TD-PSOLA singing -> speech (module docstring); the registry's ``psola-tsm`` and ``psola-nodur``."""

    name = "psola-to-speech"

    def __init__(self, config: WorldSpeechTimingConfig | None = None, *, shorten: bool = True,
                 chunk_frames: int | None = None) -> None:
        config = config or WorldSpeechTimingConfig()
        if not shorten:
            config = replace(config, timing=SpeechTimingConfig.sung())
        # The sound is the input's own samples: the aperiodicity is never read, the envelope only by the
        # timing decisions that shorten (the same output, a third to two thirds less analysis).
        config = replace(config, analysis=replace(config.analysis, envelope=shorten, aperiodicity=False))
        super().__init__(config, chunk_frames=chunk_frames)
        analysis = config.analysis
        self.psola = PsolaSynth(PsolaConfig(analysis.sample_rate, analysis.hop_samples,
                                            min_f0_hz=analysis.envelope_f0_floor_hz))
        # A chunk's output is complete once no later grain can reach into it (a grain reaches a period
        # either side of its mark), and a grain is placed once the analysis is a period past it
        # (PsolaSynth.render): analyse that much further ahead. The analysis margin already holds
        # the input those grains read.
        # With A tidy frames analysed (each tidied with the next frame's F0 alone), grains are placed up to input
        # time (A - 0.5) hops - max_period, and output is complete a reach before the last grain: a chunk
        # ending at frame E is complete when (A - E - 0.5) hops >= reach + max_period.
        ahead = (self.psola.reach + self.psola.config.max_period) / self.hop_samples
        self.analyse_further(math.ceil(ahead - 0.5))

    def init_state(self) -> PsolaPipelineState:
        return PsolaPipelineState(synth=self.synth.init_state(), custom=self.init_custom(),
                                  psola=self.psola.init_state())

    def step(self, window: np.ndarray, state: PipelineState, *, input_end: int | None = None) -> np.ndarray:
        assert isinstance(state, PsolaPipelineState) and state.psola is not None
        k = state.chunks
        tidy, first, end_frame = feed_chunk(self, self.psola, state.psola, window, state, input_end)
        if self.time_preserving:
            # Frames past the end of the input still get output: the streamer trims it.
            end_frame = None
        out, source, covers = self.spoken(tidy, first, state, end_frame)
        self.psola.add_output_frames(source, covers, out.f0_hz, state.psola)
        if self.time_preserving:
            until = (k + 1) * self.chunk_samples
            audio = self.psola.render(state.psola, until=until)
            if audio.shape[0] != self.chunk_samples:   # the lookahead above makes this impossible
                raise AssertionError(f"psola produced {audio.shape[0]} samples for a {self.chunk_samples}-sample chunk")
        else:
            audio = self.psola.render(state.psola)
        state.frames_out += len(out)
        return audio

    def finish(self, state: PipelineState) -> np.ndarray:
        assert isinstance(state, PsolaPipelineState) and state.psola is not None
        if state.finished:
            return np.zeros(0, np.float32)
        state.finished = True
        if self.time_preserving:
            return np.zeros(0, np.float32)
        out, source, covers = self.spoken_finish(state)
        self.psola.add_output_frames(source, covers, out.f0_hz, state.psola)
        return self.psola.render(state.psola, final=True)

    def transform_finish(self, state: PipelineState) -> Frames:   # unused: finish() renders by PSOLA
        return Frames.empty(self.analysis.bins)

"""Speech -> singing on the speaker's own waveform: ``world``'s syllable-to-note plan, sung by TD-PSOLA.

Every decision is :class:`.world_to_singing.WorldToSingingConverter`'s: the syllable units,
which note takes which unit, where in a note the onset, nucleus and coda go, the pitch with
portamento and vibrato, the velocity. Only the sound differs: instead of resynthesising the
analysed envelope with the source-filter vocoder, :class:`voxflip.engine.vocoder.psola.PsolaSynth`
re-spaces grains of the speech itself: stretched vowels repeat their own periods at the note's
pitch, consonants are the recorded ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..melody import Melody
from ..vocoder.psola import PsolaConfig, PsolaState, PsolaSynth
from .world_pipeline import PipelineState
from .world_to_singing import ToSingingState, WorldToSingingConfig, WorldToSingingConverter


@dataclass
class PsolaSingingState(PipelineState):
    psola: PsolaState | None = None


class PsolaToSingingConverter(WorldToSingingConverter):
    """Melody-driven TD-PSOLA speech -> singing (module docstring); the registry's ``psola``."""

    name = "psola-to-singing"

    def __init__(self, melody: Melody, config: WorldToSingingConfig | None = None, *,
                 chunk_frames: int | None = None) -> None:
        super().__init__(melody, config, chunk_frames=chunk_frames)
        analysis = self.config.analysis
        self.psola = PsolaSynth(PsolaConfig(analysis.sample_rate, analysis.hop_samples,
                                            min_f0_hz=analysis.envelope_f0_floor_hz))

    def init_state(self) -> PsolaSingingState:
        custom: ToSingingState = self.init_custom()
        custom.sources, custom.gains = [], []
        return PsolaSingingState(synth=self.synth.init_state(), custom=custom, psola=self.psola.init_state())

    def step(self, window: np.ndarray, state: PipelineState, *, input_end: int | None = None) -> np.ndarray:
        assert isinstance(state, PsolaSingingState) and state.psola is not None
        k = state.chunks
        self.psola.add_input(np.asarray(window, np.float64), k * self.chunk_samples - self.context_samples, state.psola)
        tidy, first, end_frame = self.analyse_chunk(window, state, input_end)
        self.psola.add_analysis(tidy.f0_hz, first, state.psola)
        out = self.transform(tidy, first, state, end_frame)
        return self._render(out.f0_hz, state, final=False)

    def finish(self, state: PipelineState) -> np.ndarray:
        assert isinstance(state, PsolaSingingState) and state.psola is not None
        if state.finished:
            return np.zeros(0, np.float32)
        state.finished = True
        s: ToSingingState = state.custom
        s.input_ended = True
        s.units.close()
        out = self._generate(s)
        return self._render(out.f0_hz, state, final=True)

    def _render(self, f0_hz: np.ndarray, state: PsolaSingingState, *, final: bool) -> np.ndarray:
        assert state.psola is not None
        s: ToSingingState = state.custom
        assert s.sources is not None and s.gains is not None and len(s.sources) == len(f0_hz)
        sources = np.array(s.sources)
        self.psola.add_output_frames(sources, np.zeros(len(sources)), f0_hz, state.psola, np.array(s.gains))
        s.sources.clear()
        s.gains.clear()
        state.frames_out += len(f0_hz)
        # The units still queued may be sung later (and a melisma re-sings the last one): keep their input.
        state.psola.keep_from = s.units.store.base * self.hop_samples
        return self.psola.render(state.psola, final=final)

"""Singing -> speech with WORLD: speech intonation and speech timing (``world-tsm``).

The frames of the singing go through :class:`.speech_timing.SpeechTiming`, which
time-scales held vowels and long pauses toward spoken durations and leaves every
consonant and transition frame as it was; then the sung F0 is replaced by the
speech intonation of :mod:`.intonation`, laid out on the output's own clock (so a
shortened vowel gets the accent shape of a spoken one, not a squeezed sung one).

The syllable tracker that drives the intonation reads the input frames, as in
``world-nodur``; an output frame that stands for several input frames takes their
events together. The timing decision needs ``span_ms`` of future, which the
converter adds to its lookahead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..features.syllables import FrameEvent, SyllableConfig, SyllableTracker
from ..features.world import AnalysisConfig, Frames
from .base import ConverterReport, check_transpose
from .intonation import IntonationConfig, SpeechIntonation
from .speech_timing import PAUSE, STEADY, TRANSIENT, SpeechTiming, SpeechTimingConfig, TimingState
from .world_pipeline import PipelineState, WorldPipelineConverter


@dataclass(frozen=True)
class WorldSpeechTimingConfig:
    """Settings of ``world-tsm``: analysis, timing, syllable tracking, intonation, transposition."""

    transpose_semitones: float = 0.0
    analysis: AnalysisConfig = AnalysisConfig()
    timing: SpeechTimingConfig = SpeechTimingConfig()
    syllables: SyllableConfig = SyllableConfig(pitch_step_semitones=1.5)
    # Half of the sung melody's movement (smoothed, around the singer's median) rides on the speech
    # contour: on dev-data it lost fewer words than none (+0.009 against +0.029 paired CER, PSOLA;
    # docs/results.md), and the held notes are gone either way.
    intonation: IntonationConfig = IntonationConfig(melody_weight=0.5)
    #: "speech" (the intonation above); for ablations, "sung" (the sung F0 kept) or "sung-shifted"
    #: (the sung F0 moved by the intonation's speaking_shift_semitones)
    pitch: str = "speech"

    def __post_init__(self) -> None:
        check_transpose(self.transpose_semitones)
        if self.pitch not in PITCH_SOURCES:
            raise ConfigError(f"pitch={self.pitch!r} is not one of {', '.join(PITCH_SOURCES)}")


PITCH_SOURCES = ("speech", "sung", "sung-shifted")


@dataclass
class SpeechTimingState:
    timing: TimingState
    tracker: SyllableTracker
    intonation: SpeechIntonation
    transpose_semitones: float
    events: list[FrameEvent] = field(default_factory=list)   # tracker events of input frames not yet output
    events_base: int = 0                                     # input index of events[0]
    last_out: Frames | None = None
    frames_out: int = 0
    syllables: int = 0   # syllable onsets the tracker found


class WorldSpeechTimingConverter(WorldPipelineConverter):
    """WORLD singing -> speech with speech timing (module docstring); the registry's ``world-tsm``."""

    name = "world-speech-timing"
    time_preserving = False

    def __init__(self, config: WorldSpeechTimingConfig | None = None, *, chunk_frames: int | None = None) -> None:
        config = config or WorldSpeechTimingConfig()
        self.time_preserving = config.timing.keeps_time
        super().__init__(config.analysis, chunk_frames)
        self.config = config
        self._frame_s = config.analysis.hop_samples / config.analysis.sample_rate
        self.timing = SpeechTiming(config.timing, self._frame_s, config.analysis.sample_rate, config.analysis.fft_size)
        self.analyse_further(self.timing.lookahead_frames)

    def init_custom(self) -> SpeechTimingState:
        cfg = self.config
        return SpeechTimingState(
            timing=self.timing.init_state(),
            tracker=SyllableTracker(cfg.syllables, self._frame_s),
            intonation=SpeechIntonation(cfg.intonation, self._frame_s),
            transpose_semitones=cfg.transpose_semitones,
        )

    def set_param(self, state: PipelineState, name: str, value: float | str) -> None:
        if name == "transpose":
            state.custom.transpose_semitones = check_transpose(float(value))
        else:
            raise ConfigError(f"{self.name} has no parameter {name!r}; it has transpose")

    def transform(self, frames: Frames, first_frame: int, state: PipelineState, input_end_frame: int | None) -> Frames:
        return self.spoken(frames, first_frame, state, input_end_frame)[0]

    def spoken(self, frames: Frames, first_frame: int, state: PipelineState,
               input_end_frame: int | None) -> tuple[Frames, np.ndarray, np.ndarray]:
        """The output frames the input frames ``first_frame..`` complete, with the speech F0; and for each,
        the first input frame it stands for and how many (the time map)."""
        s: SpeechTimingState = state.custom
        n_real = len(frames) if input_end_frame is None else max(0, min(len(frames), input_end_frame - first_frame))
        for i in range(n_real):
            f0 = float(frames.f0_hz[i])
            event = s.tracker.update(f0 > 0, float(frames.level_db[i]), f0)
            s.syllables += event.syllable_start
            s.events.append(event)
        timed = self.timing.push(frames, first_frame, s.timing, end_index=input_end_frame)
        return self._speak(timed.frames, timed.source, timed.covers, s), timed.source, timed.covers

    def spoken_finish(self, state: PipelineState) -> tuple[Frames, np.ndarray, np.ndarray]:
        """What :meth:`spoken` still owes once the input has ended."""
        s: SpeechTimingState = state.custom
        timed = self.timing.flush(s.timing, self.analysis.bins)
        return self._speak(timed.frames, timed.source, timed.covers, s), timed.source, timed.covers

    def transform_finish(self, state: PipelineState) -> Frames:
        s: SpeechTimingState = state.custom
        out = self.spoken_finish(state)[0]
        # The synthesiser is one frame behind: close the last frame's interval with a copy of it.
        tail = s.last_out if s.last_out is not None else Frames.empty(self.analysis.bins)
        return Frames.concat([out, tail], self.analysis.bins) if len(out) or len(tail) else out

    def _speak(self, frames: Frames, source: np.ndarray, covers: np.ndarray, s: SpeechTimingState) -> Frames:
        """Replace the F0 of the timed frames with the speech contour, on the output clock."""
        f0_out = np.zeros(len(frames))
        for j in range(len(frames)):
            lo = int(source[j]) - s.events_base
            hi = lo + int(covers[j])
            events = s.events[lo:hi]
            event = FrameEvent(
                voiced=bool(frames.f0_hz[j] > 0) and any(e.voiced for e in events),
                silent=all(e.silent for e in events),
                syllable_start=any(e.syllable_start for e in events),
                phrase_start=any(e.phrase_start for e in events),
            )
            if event.voiced:
                f0_out[j] = s.intonation.next(event, float(frames.f0_hz[j]), float(frames.level_db[j]),
                                              s.transpose_semitones)
                if self.config.pitch != "speech":
                    shift = self.config.intonation.speaking_shift_semitones if self.config.pitch == "sung-shifted" else 0.0
                    f0_out[j] = float(frames.f0_hz[j]) * 2.0 ** ((shift + s.transpose_semitones) / 12.0)
            else:
                s.intonation.next(event, 0.0, float(frames.level_db[j]), s.transpose_semitones)
        # Events of input frames that can no longer be output (decided and passed) are forgotten.
        t = s.timing
        done = t.bin.first_index if t.bin.count else (t.next_index if t.next_index is not None else s.events_base)
        if done > s.events_base:
            del s.events[: done - s.events_base]
            s.events_base = done
        out = Frames(f0_out, frames.periodicity, frames.level_db, frames.sp, frames.ap)
        if len(out):
            s.last_out = out.slice(len(out) - 1, len(out))
            s.frames_out += len(out)
        return out

    def report(self, state: PipelineState) -> ConverterReport:
        s: SpeechTimingState = state.custom
        t = s.timing
        hop = self._frame_s
        stats = {
            "frames_in": float(t.frames_in),
            "frames_out": float(s.frames_out),
            "steady_vowel_s": t.counts[STEADY] * hop,
            "transient_s": t.counts[TRANSIENT] * hop,
            "pause_s": t.counts[PAUSE] * hop,
            "pause_dropped_s": t.dropped * hop,
            "vowels": float(t.vowels),
            "syllables": float(s.syllables),
        }
        return ConverterReport(warnings=list(state.warnings), stats=stats)

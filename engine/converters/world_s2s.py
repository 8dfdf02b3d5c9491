"""Singing -> speech with WORLD analysis/synthesis: the S2S paper's WORLD baselines.

``world-nodur`` keeps the singer's timing and spectral envelope and replaces
the sung F0 with a speech-like intonation contour
(:mod:`.intonation`). ``world-dur`` also shortens sustained vowels toward
spoken durations: once a syllable has lasted ``keep_ms``, voiced frames whose
envelope is steady (within ``steady_db`` of the last frame kept) are dropped so
that only ``1 - 0.9 * duration`` of them remain. Transitions (consonants,
vowel onsets and offsets) are never dropped, so the words keep their shape.
Both decisions look only at the past: the converter streams.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..features.syllables import SyllableConfig, SyllableTracker
from ..features.world import AnalysisConfig, Frames
from .base import check_chunk_ms, check_transpose
from .intonation import IntonationConfig, SpeechIntonation
from .world_pipeline import PipelineState, WorldPipelineConverter

METHODS = ("world-nodur", "world-dur")


@dataclass(frozen=True)
class WorldS2SConfig:
    """Settings of the WORLD singing-to-speech converter.

    Attributes:
        chunk_ms: processing chunk; a multiple of the 5 ms hop.
        duration: how far ``world-dur`` shortens steady vowels, 0 (not at all) .. 1.
        keep_ms: how much of each syllable is always kept.
        steady_db: RMS log-spectral distance (0-5 kHz) under which a frame counts as steady.
        transpose_semitones: offset added to the speech contour.
    """

    chunk_ms: float = 20.0
    duration: float = 1.0
    keep_ms: float = 120.0
    steady_db: float = 3.0
    transpose_semitones: float = 0.0
    analysis: AnalysisConfig = AnalysisConfig()
    syllables: SyllableConfig = SyllableConfig(pitch_step_semitones=1.5)
    intonation: IntonationConfig = IntonationConfig()

    def __post_init__(self) -> None:
        check_chunk_ms(self.chunk_ms, self.analysis.hop_samples, self.analysis.sample_rate, "s2s.chunk_ms")
        _check_duration(self.duration)
        check_transpose(self.transpose_semitones)


def _check_duration(value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"duration={value!r} is outside 0..1 (0 keeps sung durations, 1 shortens the most)")
    return value




@dataclass
class S2SState:
    tracker: SyllableTracker
    intonation: SpeechIntonation
    duration: float
    transpose_semitones: float
    last_kept_logsp: np.ndarray | None = None
    keep_credit: float = 0.0
    frames_in: int = 0
    frames_kept: int = 0
    frames_dropped: int = 0
    last_out: Frames | None = None
    extra: dict[str, float] = field(default_factory=dict)


class WorldS2SConverter(WorldPipelineConverter):
    """``world-nodur`` / ``world-dur`` (see the module docstring)."""

    def __init__(self, method: str = "world-nodur", config: WorldS2SConfig | None = None) -> None:
        if method not in METHODS:
            raise ConfigError(f"S2S WORLD method {method!r} is not one of {', '.join(METHODS)}")
        config = config or WorldS2SConfig()
        super().__init__(config.analysis, check_chunk_ms(config.chunk_ms, config.analysis.hop_samples,
                                                         config.analysis.sample_rate, "s2s.chunk_ms"))
        self.config = config
        self.name = method
        self.time_preserving = method == "world-nodur"
        self._frame_s = config.analysis.hop_samples / config.analysis.sample_rate
        self._keep_frames = round(config.keep_ms / 1000.0 / self._frame_s)
        hz_per_bin = config.analysis.sample_rate / config.analysis.fft_size
        self._steady_bins = slice(1, int(5000.0 / hz_per_bin))

    def init_custom(self) -> S2SState:
        cfg = self.config
        return S2SState(
            tracker=SyllableTracker(cfg.syllables, self._frame_s),
            intonation=SpeechIntonation(cfg.intonation, self._frame_s),
            duration=cfg.duration if self.name == "world-dur" else 0.0,
            transpose_semitones=cfg.transpose_semitones,
        )

    def set_param(self, state: PipelineState, name: str, value: float | str) -> None:
        custom: S2SState = state.custom
        if name == "duration":
            if self.name != "world-dur":
                raise ConfigError("duration applies to world-dur only; world-nodur keeps the sung timing")
            custom.duration = _check_duration(float(value))
        elif name == "transpose":
            custom.transpose_semitones = check_transpose(float(value))
        else:
            raise ConfigError(f"{self.name} has no parameter {name!r}; it has duration, transpose")

    def transform(self, frames: Frames, first_frame: int, state: PipelineState, input_end_frame: int | None) -> Frames:
        s: S2SState = state.custom
        n = len(frames)
        keep = np.ones(n, dtype=bool)
        f0_out = np.zeros(n)
        shortening = self.name == "world-dur"
        keep_ratio = 1.0 - 0.9 * s.duration
        for i in range(n):
            index = first_frame + i
            if shortening and input_end_frame is not None and index >= input_end_frame:
                keep[i] = False
                continue
            f0 = float(frames.f0_hz[i])
            level = float(frames.level_db[i])
            event = s.tracker.update(f0 > 0, level, f0)
            s.frames_in += 1
            if shortening and s.duration > 0.0:
                logsp = 10.0 * np.log10(frames.sp[i, self._steady_bins] + 1e-12)
                steady = (
                    event.voiced
                    and not event.syllable_start
                    and s.tracker.age >= self._keep_frames
                    and s.last_kept_logsp is not None
                    and float(np.sqrt(np.mean((logsp - s.last_kept_logsp) ** 2))) < self.config.steady_db
                )
                if steady:
                    s.keep_credit += keep_ratio
                    if s.keep_credit < 1.0:
                        keep[i] = False
                        s.frames_dropped += 1
                        continue
                    s.keep_credit -= 1.0
                else:
                    s.keep_credit = 0.0
                s.last_kept_logsp = logsp
            f0_out[i] = s.intonation.next(event, f0, level, s.transpose_semitones)
            s.frames_kept += 1
        out = Frames(f0_out[keep], frames.periodicity[keep], frames.level_db[keep], frames.sp[keep], frames.ap[keep])
        if len(out):
            s.last_out = out.slice(len(out) - 1, len(out))
        return out

    def transform_finish(self, state: PipelineState) -> Frames:
        # The synthesiser is one frame behind; a time-changing converter flushes the last
        # kept frame's interval with a copy of it (a time-preserving one never needs to:
        # the streamer already fed frames past the end of the input).
        s: S2SState = state.custom
        if self.time_preserving or s.last_out is None:
            return Frames.empty(self.analysis.bins)
        return s.last_out

    def report(self, state: PipelineState):  # type: ignore[override]
        from .base import ConverterReport

        s: S2SState = state.custom
        stats = {"frames_in": float(s.frames_in), "frames_dropped": float(s.frames_dropped)}
        return ConverterReport(warnings=list(state.warnings), stats=stats)

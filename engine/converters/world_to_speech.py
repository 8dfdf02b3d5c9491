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

from ..errors import ConfigError, OptionError
from ..features.syllables import SyllableConfig, SyllableTracker
from ..features.world import AnalysisConfig, Frames
from .base import check_transpose
from .intonation import IntonationConfig, SpeechIntonation
from .world_pipeline import PipelineState, WorldPipelineConverter


@dataclass(frozen=True)
class WorldToSpeechConfig:
    """Settings of the WORLD singing-to-speech converter.

    Attributes:
        duration: how far ``world-dur`` shortens steady vowels, 0 (not at all) .. 1.
        keep_ms: how much of each syllable is always kept.
        steady_db: RMS log-spectral distance (0-5 kHz) under which a frame counts as steady.
        transpose_semitones: offset added to the speech contour.
    """

    duration: float = 1.0
    keep_ms: float = 120.0
    steady_db: float = 3.0
    transpose_semitones: float = 0.0
    analysis: AnalysisConfig = AnalysisConfig()
    syllables: SyllableConfig = SyllableConfig(pitch_step_semitones=1.5)
    intonation: IntonationConfig = IntonationConfig()

    def __post_init__(self) -> None:
        _check_duration(self.duration)
        check_transpose(self.transpose_semitones)


def _check_duration(value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise OptionError("duration", value, "is outside 0..1 (0 keeps sung durations, 1 shortens the most)")
    return value




@dataclass
class ToSpeechState:
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


class WorldToSpeechConverter(WorldPipelineConverter):
    """WORLD singing -> speech, with or without vowel shortening (see the module docstring).

    The registry builds it as ``world-nodur`` and ``world-dur`` (:mod:`voxflip.engine.registry`).
    """

    name = "world-to-speech"

    def __init__(self, config: WorldToSpeechConfig | None = None, *, shorten: bool = False,
                 chunk_frames: int | None = None) -> None:
        """Args:
            config: the settings (default: :class:`WorldToSpeechConfig`).
            shorten: shorten steady vowels (``world-dur``); False keeps the sung timing (``world-nodur``).
            chunk_frames: hops per chunk (default: the WORLD grid's 20 ms).
        """
        config = config or WorldToSpeechConfig()
        super().__init__(config.analysis, chunk_frames)
        self.config = config
        self.shorten = bool(shorten)
        self.time_preserving = not self.shorten
        self._frame_s = config.analysis.hop_samples / config.analysis.sample_rate
        self._keep_frames = round(config.keep_ms / 1000.0 / self._frame_s)
        hz_per_bin = config.analysis.sample_rate / config.analysis.fft_size
        self._steady_bins = slice(1, int(5000.0 / hz_per_bin))

    def init_custom(self) -> ToSpeechState:
        cfg = self.config
        return ToSpeechState(
            tracker=SyllableTracker(cfg.syllables, self._frame_s),
            intonation=SpeechIntonation(cfg.intonation, self._frame_s),
            duration=cfg.duration if self.shorten else 0.0,
            transpose_semitones=cfg.transpose_semitones,
        )

    def set_param(self, state: PipelineState, name: str, value: float | str) -> None:
        custom: ToSpeechState = state.custom
        if name == "duration":
            if not self.shorten:
                raise ConfigError(f"duration applies to the vowel-shortening converter only; {self.name} keeps "
                                  "the sung timing")
            custom.duration = _check_duration(float(value))
        elif name == "transpose":
            custom.transpose_semitones = check_transpose(float(value))
        else:
            has = "duration, transpose" if self.shorten else "transpose"
            raise ConfigError(f"{self.name} has no parameter {name!r}; it has {has}")

    def transform(self, frames: Frames, first_frame: int, state: PipelineState, input_end_frame: int | None) -> Frames:
        s: ToSpeechState = state.custom
        n = len(frames)
        keep = np.ones(n, dtype=bool)
        f0_out = np.zeros(n)
        shortening = self.shorten
        keep_ratio = 1.0 - 0.9 * s.duration
        floors = frames.envelope_floor(1e-12)   # level safety: the floor follows a loud frame's level
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
                logsp = 10.0 * np.log10(frames.sp[i, self._steady_bins] + floors[i]) - 10.0 * np.log10(floors[i, 0] / 1e-12)
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
        out = Frames(f0_out[keep], frames.periodicity[keep], frames.level_db[keep], frames.sp[keep], frames.ap[keep],
                     frames.exponents()[keep])
        if len(out):
            s.last_out = out.slice(len(out) - 1, len(out))
        return out

    def transform_finish(self, state: PipelineState) -> Frames:
        # The synthesiser is one frame behind; a time-changing converter flushes the last
        # kept frame's interval with a copy of it (a time-preserving one never needs to:
        # the streamer already fed frames past the end of the input).
        s: ToSpeechState = state.custom
        if self.time_preserving or s.last_out is None:
            return Frames.empty(self.analysis.bins)
        return s.last_out

    def report(self, state: PipelineState):  # type: ignore[override]
        from .base import ConverterReport

        s: ToSpeechState = state.custom
        stats = {"frames_in": float(s.frames_in), "frames_dropped": float(s.frames_dropped)}
        return ConverterReport(warnings=list(state.warnings), stats=stats)

"""Causal syllable and phrase tracking from frame level, voicing and pitch.

A :class:`SyllableTracker` sees one frame at a time and says whether that frame
starts a syllable, starts a phrase, or is silence. It needs no lookahead, so
the live path and offline rendering segment a voice identically.

Rules (after the syllable-nucleus heuristics of de Jong and Wempe, 2009, made causal):

* a phrase starts at the first voiced frame after ``pause_ms`` of silence or
  unvoiced frames (and at the start of the stream);
* a syllable starts at every voiced onset after at least ``min_gap_ms`` of
  unvoiced frames, and inside a voiced run when the level comes back up by
  ``dip_db`` from a dip that lies ``dip_db`` below the syllable's peak so far;
* optionally (singing input), inside a voiced run when the smoothed pitch
  moves ``pitch_step_semitones`` away from the note the syllable started on;
* no syllable is shorter than ``min_syllable_ms``;
* a frame is silence when its level is ``silence_below_peak_db`` under the
  running peak level, or under ``silence_floor_db`` absolute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class SyllableConfig:
    dip_db: float = 4.0
    pitch_step_semitones: float | None = None
    min_syllable_ms: float = 70.0
    min_gap_ms: float = 15.0
    pause_ms: float = 200.0
    silence_below_peak_db: float = 40.0
    silence_floor_db: float = -60.0
    pitch_smoothing_ms: float = 60.0

    def __post_init__(self) -> None:
        if self.dip_db <= 0:
            raise ConfigError(f"syllables.dip_db={self.dip_db!r} must be > 0 dB")
        if self.pitch_step_semitones is not None and self.pitch_step_semitones <= 0:
            raise ConfigError(
                f"syllables.pitch_step_semitones={self.pitch_step_semitones!r} must be > 0 or unset"
            )


@dataclass(frozen=True)
class FrameEvent:
    """What the tracker concluded about one frame."""

    voiced: bool
    silent: bool
    syllable_start: bool
    phrase_start: bool


class SyllableTracker:
    """Frame-by-frame causal tracker; all its memory is in plain attributes (cheap to copy)."""

    def __init__(self, config: SyllableConfig, frame_s: float) -> None:
        self.config = config
        self.frame_s = frame_s
        self._min_syll = max(1, round(config.min_syllable_ms / 1000.0 / frame_s))
        self._min_gap = max(1, round(config.min_gap_ms / 1000.0 / frame_s))
        self._pause = max(1, round(config.pause_ms / 1000.0 / frame_s))
        self._alpha = 1.0 - math.exp(-frame_s / (config.pitch_smoothing_ms / 1000.0))
        self.peak_db = -120.0
        self.unvoiced_run = 10**9  # the stream starts "after a pause"
        self.quiet_run = 10**9
        self.age = 0  # frames since the current syllable started
        self.syll_peak_db = -120.0
        self.dip_db = 0.0
        self.smooth_st: float | None = None
        self.note_st: float | None = None
        self.in_voiced_run = False

    def update(self, voiced: bool, level_db: float, f0_hz: float) -> FrameEvent:
        cfg = self.config
        self.peak_db = max(self.peak_db - 0.01, level_db)  # very slow decay: about 2 dB per second at 5 ms frames
        silent = level_db < max(self.peak_db - cfg.silence_below_peak_db, cfg.silence_floor_db)
        syllable_start = False
        phrase_start = False
        if voiced and not silent:
            st = 12.0 * math.log2(max(f0_hz, 1.0))
            if not self.in_voiced_run:
                if self.quiet_run >= self._pause:
                    phrase_start = True
                if self.unvoiced_run >= self._min_gap or phrase_start:
                    syllable_start = True
                self.smooth_st = st
            else:
                self.smooth_st = (self.smooth_st or st) + self._alpha * (st - (self.smooth_st or st))
                if self.age >= self._min_syll:
                    if self.syll_peak_db - self.dip_db >= cfg.dip_db and level_db - self.dip_db >= cfg.dip_db:
                        syllable_start = True
                    elif (
                        cfg.pitch_step_semitones is not None
                        and self.note_st is not None
                        and abs(self.smooth_st - self.note_st) >= cfg.pitch_step_semitones
                    ):
                        syllable_start = True
            self.in_voiced_run = True
            self.unvoiced_run = 0
            self.quiet_run = 0
            if syllable_start:
                self.age = 0
                self.syll_peak_db = level_db
                self.dip_db = level_db
                self.note_st = None
            else:
                self.age += 1
                if level_db > self.syll_peak_db:
                    self.syll_peak_db = level_db
                    self.dip_db = level_db
                else:
                    self.dip_db = min(self.dip_db, level_db)
            if self.note_st is None and self.age >= 4:
                self.note_st = self.smooth_st
        else:
            self.in_voiced_run = False
            self.unvoiced_run += 1
            self.quiet_run = self.quiet_run + 1 if (silent or not voiced) else 0
            self.age += 1
        return FrameEvent(voiced=voiced and not silent, silent=silent, syllable_start=syllable_start, phrase_start=phrase_start)

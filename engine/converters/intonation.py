"""A causal, rule-based speech intonation contour for singing-to-speech.

The sung F0 is thrown away; in its place the converter speaks on a contour
built from what a listener expects of read speech:

* **speaking range** -- the singer's own, estimated as their running median
  sung pitch moved down by ``speaking_shift_semitones`` (-7.5 by default: the
  median shift between sung and spoken median F0 over the 25 real sung/spoken
  pairs in the development set; per pair it ranged from -0.4 to -13.9), kept
  inside ``[min_speaking_hz, max_speaking_hz]``;
* **declination** -- each phrase starts ``phrase_start_semitones`` above that
  level and falls by ``declination_semitones_per_s`` down to
  ``phrase_floor_semitones``;
* **accents** -- each syllable rises to an accent over ``accent_rise_ms`` and
  then falls at ``accent_fall_semitones_per_s`` to ``accent_floor_semitones``;
  louder syllables get bigger accents;
* **no held notes** -- a syllable that outlasts its fall (a long sung vowel)
  gets a weaker re-accent, so the pitch keeps moving however long the vowel
  is; the result glides through a one-pole smoother of ``glide_ms``;
* **the melody's shape, scaled** -- optionally, ``melody_weight`` times the sung pitch
  (smoothed over ``melody_smoothing_ms``, which takes out vibrato) minus the singer's median
  sung pitch is added, so the speech rises and falls where the tune did, over a fraction of
  its range (0, the default here, ignores the tune; ``world-tsm`` and the PSOLA converters use
  0.5).

Every rule looks only at the past, so the contour streams with no lookahead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..features.syllables import FrameEvent


@dataclass(frozen=True)
class IntonationConfig:
    speaking_shift_semitones: float = -7.5
    min_speaking_hz: float = 80.0
    max_speaking_hz: float = 260.0
    default_speaking_hz: float = 150.0
    phrase_start_semitones: float = 2.0
    declination_semitones_per_s: float = 2.0
    phrase_floor_semitones: float = -3.0
    accent_semitones: float = 2.0
    accent_rise_ms: float = 60.0
    accent_fall_semitones_per_s: float = 10.0
    accent_floor_semitones: float = -2.0
    reaccent_fraction: float = 0.7
    glide_ms: float = 20.0
    melody_weight: float = 0.0
    melody_smoothing_ms: float = 100.0

    def __post_init__(self) -> None:
        if not (40.0 <= self.min_speaking_hz <= self.default_speaking_hz <= self.max_speaking_hz <= 600.0):
            raise ConfigError(
                "intonation needs 40 <= min_speaking_hz <= default_speaking_hz <= max_speaking_hz <= 600 Hz, got "
                f"{self.min_speaking_hz!r}, {self.default_speaking_hz!r}, {self.max_speaking_hz!r}"
            )
        if self.glide_ms <= 0 or self.accent_rise_ms <= 0 or self.accent_fall_semitones_per_s <= 0:
            raise ConfigError("intonation.glide_ms, accent_rise_ms and accent_fall_semitones_per_s must be > 0")


_HIST_LO = 24.0   # MIDI note of the lowest histogram bin (about 33 Hz)
_HIST_BINS = 400  # quarter-semitone bins up to MIDI 124


def _midi(f0_hz: float) -> float:
    return 69.0 + 12.0 * math.log2(f0_hz / 440.0)


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


class SpeechIntonation:
    """Stateful contour generator: call :meth:`next` once per output frame."""

    def __init__(self, config: IntonationConfig, frame_s: float) -> None:
        self.config = config
        self.frame_s = frame_s
        self._glide = 1.0 - math.exp(-frame_s / (config.glide_ms / 1000.0))
        self._hist = np.zeros(_HIST_BINS)
        self._hist_count = 0
        self.median_midi: float | None = None
        self.sung_midi: float | None = None
        self._melody_alpha = 1.0 - math.exp(-frame_s / (config.melody_smoothing_ms / 1000.0))
        self.base_midi = _midi(config.default_speaking_hz)
        self.phrase_t = 0.0
        self.syllable_t = 0.0
        self.cycle_t = 0.0
        self.accent = config.accent_semitones
        self.syllable_peak_db = -120.0
        self.level_mean_db: float | None = None
        self.out_midi: float | None = None

    def _update_range(self, sung_f0_hz: float) -> None:
        b = int((_midi(sung_f0_hz) - _HIST_LO) * 4.0)
        if 0 <= b < _HIST_BINS:
            self._hist[b] += 1.0
            self._hist_count += 1
        # Re-estimate every voiced frame for the first 0.2 s of voice, then every 20 frames.
        if self._hist_count and (self._hist_count <= 40 or self._hist_count % 20 == 1):
            cum = np.cumsum(self._hist)
            median_midi = _HIST_LO + (np.searchsorted(cum, cum[-1] / 2.0) + 0.5) / 4.0
            self.median_midi = float(median_midi)
            cfg = self.config
            target = median_midi + cfg.speaking_shift_semitones
            self.base_midi = min(max(target, _midi(cfg.min_speaking_hz)), _midi(cfg.max_speaking_hz))

    def next(self, event: FrameEvent, sung_f0_hz: float, level_db: float, transpose_semitones: float = 0.0) -> float:
        """Advance one frame; returns the speech F0 in Hz (0 for unvoiced frames)."""
        cfg = self.config
        dt = self.frame_s
        if event.phrase_start:
            self.phrase_t = 0.0
            self.out_midi = None
        if event.syllable_start:
            self.syllable_t = 0.0
            self.cycle_t = 0.0
            self.syllable_peak_db = level_db
        if not event.voiced:
            self.phrase_t += dt
            self.syllable_t += dt
            self.cycle_t += dt
            return 0.0
        self._update_range(sung_f0_hz)
        sung = _midi(sung_f0_hz)
        if self.sung_midi is None or event.phrase_start:
            self.sung_midi = sung
        else:
            self.sung_midi += self._melody_alpha * (sung - self.sung_midi)
        self.syllable_peak_db = max(self.syllable_peak_db, level_db)
        if self.level_mean_db is None:
            self.level_mean_db = level_db
        self.level_mean_db += 0.002 * (level_db - self.level_mean_db)
        if self.syllable_t * 1000.0 < cfg.accent_rise_ms and self.cycle_t == self.syllable_t:
            # Louder syllables than the running mean get larger accents (decided while rising).
            loudness = (self.syllable_peak_db - self.level_mean_db) / 6.0
            self.accent = cfg.accent_semitones * min(max(1.0 + 0.5 * loudness, 0.4), 1.6)

        phrase = max(
            cfg.phrase_start_semitones - cfg.declination_semitones_per_s * self.phrase_t, cfg.phrase_floor_semitones
        )
        rise_s = cfg.accent_rise_ms / 1000.0
        fall_s = (self.accent - cfg.accent_floor_semitones) / cfg.accent_fall_semitones_per_s
        if self.cycle_t >= rise_s + fall_s:
            # The accent has fallen to the floor and the vowel goes on: accent it again, more weakly.
            self.cycle_t = 0.0
            self.accent = max(cfg.reaccent_fraction * self.accent, 0.5 * cfg.accent_semitones)
            fall_s = (self.accent - cfg.accent_floor_semitones) / cfg.accent_fall_semitones_per_s
        if self.cycle_t < rise_s:
            start = cfg.accent_floor_semitones if self.syllable_t > self.cycle_t else 0.3 * self.accent
            accent = start + (self.accent - start) * self.cycle_t / rise_s
        else:
            accent = self.accent - cfg.accent_fall_semitones_per_s * (self.cycle_t - rise_s)
        target = self.base_midi + phrase + accent + transpose_semitones
        if cfg.melody_weight and self.median_midi is not None and self.sung_midi is not None:
            target += cfg.melody_weight * (self.sung_midi - self.median_midi)
        if self.out_midi is None:
            self.out_midi = target
        else:
            self.out_midi += self._glide * (target - self.out_midi)
        self.phrase_t += dt
        self.syllable_t += dt
        self.cycle_t += dt
        return _hz(self.out_midi)

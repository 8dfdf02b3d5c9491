"""Speech -> singing on live notes: the melody is played while the speaker speaks.

The output runs on the input's clock (one output frame per input frame, so the
converter is time-preserving and its latency is the pipeline's). Notes arrive
as run-time parameters (``set_param(state, "note", (midi, velocity))``, from
OSC or MIDI), take effect at the next chunk, and drive a small state machine:

* **note on** (after silence): the note sings the oldest syllable of the
  speech that has not been sung yet and is at most ``max_wait_ms`` old
  (older ones are skipped, so singing never lags far behind the speaker) --
  its onset consonants first, then its vowel at the note's pitch. If the
  speaker has not started a new syllable yet, the note waits for one, silent,
  for up to ``wait_ms``; after that it sings the previous syllable's vowel again.
* **held note**: the vowel runs at speaking speed while the speaker is still
  saying it, then is sustained (held on its latest frame) as long as the note is.
* **legato** (a note on while another is held): the pitch glides to the new note
  over ``portamento_ms``; if the speaker has started a new syllable meanwhile,
  singing moves on to it, else the current vowel continues (a melisma).
* **note off**: the syllable's coda (its final consonants, if the speaker had
  finished it) is played, then silence.

Velocity (0..1) sets the level (1 = the speech's own level, -20 dB at 0.1).
Note-to-sound latency: notes are applied between device blocks and act on the
next converter chunk, so a note sounds about one block plus one chunk after
it arrives, on top of nothing else (the output is aligned with the input).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..features.world import Frames
from .base import ConverterReport, check_transpose
from .syllable_units import Unit, UnitTracker
from .world_pipeline import PipelineState, WorldPipelineConverter, world_chunk_grid
from .world_to_singing import WorldToSingingConfig

_SILENCE_POWER = 1e-14


@dataclass
class LiveToSingingState:
    units: UnitTracker
    transpose_semitones: float
    events: deque = field(default_factory=deque)   # (midi, velocity) waiting for the next chunk
    held: list[tuple[int, float]] = field(default_factory=list)  # notes down, in order (last = sounding)
    midi: float | None = None        # sounding pitch target (None = gate off)
    prev_midi: float | None = None   # pitch to glide from
    velocity: float = 1.0
    note_t: int = 0                  # frames since the note started
    unit: Unit | None = None         # syllable being sung
    unit_growing: bool = False       # the unit is the tracker's current one (still being spoken)
    pos: float = 0.0                 # position in the unit (source frames from its onset)
    waiting: int = 0                 # frames a fresh note has waited for a syllable
    releasing: bool = False          # playing the coda after note off
    last_unit: Unit | None = None
    newest_started: int = -1         # nucleus index of the newest unit taken (never sing one twice)
    notes: int = 0
    skipped_units: int = 0
    frames_out: int = 0


class LiveNotesToSingingConverter(WorldPipelineConverter):
    """WORLD speech -> singing driven by live notes (see the module docstring); the registry's ``world``
    when it has no melody file."""

    name = "world-live-notes"
    time_preserving = True

    def __init__(self, config: WorldToSingingConfig | None = None, *, chunk_frames: int | None = None,
                 max_wait_ms: float = 1000.0, wait_ms: float = 150.0) -> None:
        config = config or WorldToSingingConfig()
        # Notes act at chunk boundaries: without a chunk, the live one (an offline-sized chunk would
        # move every note to the next second).
        if chunk_frames is None:
            chunk_frames = world_chunk_grid(config.analysis).live_frames
        super().__init__(config.analysis, chunk_frames, shaping=config.shaping)
        if not 0 < max_wait_ms <= 10_000 or not 0 <= wait_ms <= 2000:
            raise ConfigError(f"max_wait_ms={max_wait_ms!r} must be in (0, 10000] and wait_ms={wait_ms!r} in 0..2000")
        self.config = config
        self._frame_s = config.analysis.hop_samples / config.analysis.sample_rate
        self._max_wait = round(max_wait_ms / 1000.0 / self._frame_s)
        self._wait = round(wait_ms / 1000.0 / self._frame_s)
        self._glide = max(1, round(config.portamento_ms / 1000.0 / self._frame_s))
        self._silence = np.full(self.analysis.bins, _SILENCE_POWER)
        self._ones = np.ones(self.analysis.bins)

    def describe(self) -> str:
        return f"{self.name} on live notes @ {self.sample_rate} Hz"

    def init_custom(self) -> LiveToSingingState:
        return LiveToSingingState(units=UnitTracker(self.config.syllables, self._frame_s, self.analysis.bins),
                            transpose_semitones=self.config.transpose_semitones)

    def set_param(self, state: PipelineState, name: str, value) -> None:
        s: LiveToSingingState = state.custom
        if name == "note":
            midi, velocity = value
            if not (0 <= int(midi) <= 127) or not (0.0 <= float(velocity) <= 1.0):
                raise ConfigError(f"note={value!r}: the note must be 0..127 and the velocity 0..1 (0 = off)")
            s.events.append((int(midi), float(velocity)))
        elif name == "transpose":
            s.transpose_semitones = check_transpose(value)
        else:
            raise ConfigError(f"{self.name} (live notes) has no parameter {name!r}; it has note, transpose")

    # -- notes ---------------------------------------------------------------------------------------
    def _apply_events(self, s: LiveToSingingState) -> None:
        while s.events:
            midi, velocity = s.events.popleft()
            s.held = [(m, v) for m, v in s.held if m != midi]
            if velocity > 0:
                s.held.append((midi, velocity))
                self._note_on(s, midi, velocity)
            elif s.held:
                self._note_on(s, *s.held[-1], retrigger=False)  # back to a note still held (legato)
            else:
                self._note_off(s)

    def _note_on(self, s: LiveToSingingState, midi: int, velocity: float, retrigger: bool = True) -> None:
        legato = s.midi is not None
        s.prev_midi = s.midi if legato else None
        s.midi = float(midi)
        s.velocity = velocity
        s.note_t = 0
        s.releasing = False
        s.notes += 1
        if not retrigger:
            return
        fresh = self._next_unit(s)
        if fresh is not None:
            self._start_unit(s, fresh)
        elif not legato:
            s.unit = None  # wait for the speaker
            s.waiting = 0

    def _note_off(self, s: LiveToSingingState) -> None:
        s.midi = None
        s.prev_midi = None
        s.releasing = s.unit is not None

    def _next_unit(self, s: LiveToSingingState) -> tuple[Unit, bool] | None:
        """The oldest syllable not sung yet and not too old; (unit, still growing)."""
        tracker = s.units
        now = tracker.frames_in
        while tracker.units:
            unit = tracker.units[0]
            if unit.nucleus <= s.newest_started:
                tracker.take()
                continue
            if now - unit.nucleus > self._max_wait and (tracker.units[-1] is not unit or tracker.current is not None):
                tracker.take()
                s.skipped_units += 1
                continue
            return tracker.take(), False
        current = tracker.current
        if current is not None and current.nucleus > s.newest_started:
            return current, True
        return None

    def _start_unit(self, s: LiveToSingingState, fresh: tuple[Unit, bool]) -> None:
        s.unit, s.unit_growing = fresh
        s.newest_started = s.unit.nucleus
        s.last_unit = s.unit
        s.pos = 0.0
        s.waiting = 0
        s.units.store.drop_before(s.unit.onset)

    # -- one output frame ----------------------------------------------------------------------------
    def _frame(self, s: LiveToSingingState) -> tuple[float, np.ndarray, np.ndarray]:
        tracker = s.units
        if s.midi is None and not s.releasing:
            return 0.0, self._silence, self._ones
        if s.midi is not None and s.unit is None:
            fresh = self._next_unit(s)
            if fresh is not None:
                self._start_unit(s, fresh)
            elif s.waiting < self._wait or s.last_unit is None:
                s.waiting += 1
                return 0.0, self._silence, self._ones
            else:  # nothing new said: sing the last vowel again, from its middle
                last = s.last_unit
                s.unit, s.unit_growing = last, False
                s.pos = float(last.nucleus - last.onset + last.nucleus_frames // 2)
        elif s.midi is not None and s.unit is not None and s.note_t == 0 and s.prev_midi is not None:
            fresh = self._next_unit(s)  # legato: move on if the speaker has
            if fresh is not None:
                self._start_unit(s, fresh)
        unit = s.unit
        assert unit is not None
        if s.unit_growing and tracker.current is not unit:
            s.unit_growing = False  # the speaker finished it meanwhile
        onset_len = unit.nucleus - unit.onset
        if s.releasing:
            # note off: the coda at speaking speed, then silence
            coda_pos = (unit.coda - unit.onset) + max(0.0, s.pos - (unit.coda - unit.onset))
            if s.unit_growing or coda_pos >= unit.end - unit.onset:
                s.releasing = False
                s.unit = None
                return 0.0, self._silence, self._ones
            sp, ap = tracker.store.interpolate(unit.onset + coda_pos)
            s.pos = coda_pos + 1.0
            return 0.0, sp * s.velocity**2, ap
        if s.unit_growing:
            # the speaker is still saying it: follow, and wait on the newest frame
            position = min(s.pos, float(max(tracker.store.end - 1 - unit.onset, onset_len)))
        else:
            # a finished vowel is sustained on its steady part (60% in), not on its fading end
            hold = onset_len + int(0.6 * unit.nucleus_frames)
            position = min(s.pos, float(max(hold, onset_len)))
        s.pos += 1.0
        sp, ap = tracker.store.interpolate(unit.onset + position)
        gain = s.velocity**2
        if position < onset_len:
            return 0.0, sp * gain, ap
        return self._pitch(s), sp * gain, ap

    def _pitch(self, s: LiveToSingingState) -> float:
        cfg = self.config
        assert s.midi is not None
        midi = s.midi + s.transpose_semitones
        t = s.note_t
        if s.prev_midi is not None and cfg.portamento_ms > 0 and t < self._glide:
            w = 0.5 - 0.5 * math.cos(math.pi * t / self._glide)
            midi = s.prev_midi + s.transpose_semitones + (midi - s.prev_midi - s.transpose_semitones) * w
        seconds = t * self._frame_s
        delay = cfg.vibrato_delay_ms / 1000.0
        if cfg.vibrato_cents > 0 and seconds > delay:
            fade = min(1.0, (seconds - delay) / 0.1)
            midi += fade * (cfg.vibrato_cents / 100.0) * math.sin(2.0 * math.pi * cfg.vibrato_hz * (seconds - delay))
        return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)

    # -- pipeline hooks ------------------------------------------------------------------------------
    def transform(self, frames: Frames, first_frame: int, state: PipelineState, input_end_frame: int | None) -> Frames:
        s: LiveToSingingState = state.custom
        s.units.feed(frames, first_frame, input_end_frame)
        self._apply_events(s)
        n = len(frames)
        f0 = np.zeros(n)
        sp = np.empty((n, self.analysis.bins))
        ap = np.empty((n, self.analysis.bins))
        for i in range(n):
            f0[i], sp[i], ap[i] = self._frame(s)
            if s.midi is not None:
                s.note_t += 1
        s.frames_out += n
        if s.unit is None and s.last_unit is None:
            s.units.store.drop_before(s.units.store.end - 1)
        return Frames(f0, np.ones(n), np.zeros(n), sp, ap)

    def report(self, state: PipelineState) -> ConverterReport:
        s: LiveToSingingState = state.custom
        return ConverterReport(stats={"notes": float(s.notes), "syllables": float(s.units.total),
                                      "syllables_skipped": float(s.skipped_units)})

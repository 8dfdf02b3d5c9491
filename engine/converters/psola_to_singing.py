"""Speech -> singing on the speaker's own waveform: syllables placed on notes as a singer would,
sung by TD-PSOLA.

``psola`` waits for the whole speech, then aligns its syllable units with the melody's notes
(:func:`.note_alignment.align`: a long or phrase-final syllable spreads over several notes, quick
syllables share a note, the tune's rests fall on the speech's pauses), and sings each group the
way ``world`` sings a note: onset consonants at the group's start at their spoken speed, the
nucleus stretched over the rest, a coda at its end, the pitch following each note of a melisma
in turn with portamento and vibrato. The sound is the speech itself:
:class:`voxflip.engine.vocoder.psola.PsolaSynth` re-spaces its grains, so a stretched vowel
repeats its own periods at the note's pitch and a consonant is the recorded one.

Planning needs the end of the input, so ``psola`` is for files: its output comes when the
input has ended (the same whatever the block size), and it holds the whole speech meanwhile:
its samples and, per 5 ms frame, F0 and level (measured: 323 MB peak for a 300 s file, against
97 MB for ``world``; about 0.8 MB per second of speech). Live, ``voxflip live`` runs its live form,
``world``, which sings note by note as syllables arrive.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import OptionError
from ..features.world import Frames
from ..melody import Melody
from ..vocoder.psola import PsolaConfig, PsolaState, PsolaSynth
from .base import ConverterReport, joined
from .note_alignment import MAX_ALIGNMENT_CELLS, MAX_ALIGNMENT_STEPS, AlignmentConfig, align, alignment_work
from .psola_to_speech import feed_chunk
from .syllable_units import Unit, UnitTracker
from .syllable_valleys import DROPOUT_S, band_level_db, nucleus_map, resegment
from .world_pipeline import PipelineState
from .world_to_singing import ToSingingState, WorldToSingingConfig, WorldToSingingConverter, _Slot

#: the most syllables per note, on average, before a melody too short for the speech is repeated
SHARE_LIMIT = 2
#: the fixed high-pass under the PSOLA singers' output (Hz): the offset raised grains sum to, taken away
SINGING_DC_BLOCK_HZ = 20.0
#: frames kept clear of a syllable's ends when the speech's pauses are gathered for the rests
REST_MARGIN_FRAMES = 4
#: a pause frame is played in a rest only this far (dB) or more below the speech's median syllable level
REST_QUIET_DB = 20.0
#: pause runs shorter than this (frames) are not played in rests (a jump every few frames would buzz)
REST_MIN_RUN = 4
#: psola sings a melody whose median note lies more than this many semitones above the speaker's median F0
#: as many octaves lower as it takes to come within it: the real singers of dev-data sang at most 13.2
#: semitones above their own speech (median note against median speaking F0); on dev-data's cross pairs
#: (scripts/cross_range.py) the melodies moved sounded better an octave lower (DNSMOS +0.45 ± 0.29, CER
#: -0.10 ± 0.12, RCA unchanged; docs/results.md)
MAX_ABOVE_SPEECH_SEMITONES = 14.0
#: a unit is a syllable only if its nucleus peaks within this many dB of the speech's median nucleus peak, or lasts
#: at least ``BLIP_NUCLEUS_S`` (:func:`sung_units`)
BLIP_BELOW_DB = 20.0
BLIP_NUCLEUS_S = 0.08
#: a coda ends at its last frame within this many dB of its nucleus's peak (:func:`sung_units`)
CODA_BELOW_DB = 20.0
#: psola-stream looks for the speech's pauses this far (frames: 10 s) before the syllable a rest leads to
PAUSE_WINDOW_FRAMES = 2000


@dataclass
class PsolaSingingState(PipelineState):
    psola: PsolaState | None = None
    repeats: int = 0           # extra passes through a melody too short for the speech
    melisma_notes: int = 0     # notes beyond the first of a syllable's group
    octaves_down: int = 0      # the melody sung this many octaves lower, to the speaker's range
    shared_notes: int = 0      # notes that carry more than one syllable
    blips: int = 0             # units left out as too faint and short to be syllables
    syllables: int = 0         # the syllables sung: the units cut again at the formant band's valleys
    levels: list[np.ndarray] = field(default_factory=list)   # every input frame's level (dB), in order


def sung_units(units: list[Unit], levels: np.ndarray, pause: int, frame_s: float) -> list[Unit]:
    """The syllable units of the whole speech that get notes, with the codas a singer keeps.

    The causal syllable tracker (:class:`.syllable_units.UnitTracker`) cannot tell a syllable from a
    voiced blip of noise, breath or fricative before it has heard the speech's level, and it closes a
    phrase's last unit only after ``pause`` frames of unvoiced sound, all of which become its coda. On
    dev-data's speech 20 of 376 units peak 20-40 dB under the median with 10-75 ms nuclei, several of them
    before the first word, and each took a note of its own (the first 0.75 s of one song sang a blip's
    room tone); 51 of 98 codas ran the full 200 ms, mostly breath after the consonant, which psola sang
    unvoiced inside the note. Knowing the whole speech, the plan mends both:

    * a blip (a nucleus shorter than ``BLIP_NUCLEUS_S`` peaking more than ``BLIP_BELOW_DB`` under the
      median nucleus peak) is no syllable, but its onset may be a word's first consonant (a voiced flicker
      inside an /s/): a blip that the next unit follows within ``pause`` frames hands its onset on to it,
      one that follows a unit within ``pause`` frames becomes that unit's coda, and one alone between
      pauses (a breath, a click before the first word) is left out, its frames a pause;
    * a coda ends at its last frame within ``CODA_BELOW_DB`` of its nucleus's peak (what is quieter is
      breath, and belongs to the pause).

    On dev-data (docs/results.md) the notes were followed better (RCA +0.044 +- 0.017, better on 21 clips
    of 25, worse on none) for the same words (CER +0.003 +- 0.044).

    Args:
        units: the tracker's units, in order (source frame indices).
        levels: ``(frames,)`` every source frame's level in dB.
        pause: frames of unvoiced sound that make a pause.
        frame_s: seconds per frame.

    Returns:
        New units (the input's are not changed); all of them when every unit is a blip.
    """
    if not units or not len(levels):
        return list(units)
    peaks = np.array([float(np.max(levels[u.nucleus:max(u.coda, u.nucleus + 1)])) if u.nucleus < len(levels)
                      else -np.inf for u in units])
    floor = float(np.median(peaks)) - BLIP_BELOW_DB
    short = round(BLIP_NUCLEUS_S / frame_s)
    blip = [peak < floor and u.nucleus_frames < short for u, peak in zip(units, peaks, strict=True)]
    if all(blip):
        return list(units)
    kept: list[Unit] = []
    carry: int | None = None   # the onset a blip hands on to the next unit
    for k, unit in enumerate(units):
        if not blip[k]:
            kept.append(replace(unit, onset=carry) if carry is not None else replace(unit))
            carry = None
            continue
        start = unit.onset if carry is None else carry
        carry = None
        if k + 1 < len(units) and units[k + 1].onset - unit.end < pause:
            carry = start
        elif kept and start - kept[-1].end < pause:
            kept[-1].end = unit.end
    for unit in kept:
        if unit.end > unit.coda:
            peak = float(np.max(levels[unit.nucleus:unit.coda]))
            loud = np.flatnonzero(levels[unit.coda:unit.end] >= peak - CODA_BELOW_DB)
            unit.end = unit.coda + (int(loud[-1]) + 1 if len(loud) else 0)
    return kept


class _PsolaSinger(WorldToSingingConverter):
    """What the PSOLA singers share: an analysis of F0 and level only (the units read no more, and the
    sound is the input's own samples: no envelope or aperiodicity, the same output, two thirds less
    analysis), units that keep no envelope, and the synthesiser."""

    def __init__(self, melody: Melody, config: WorldToSingingConfig | None = None, *,
                 chunk_frames: int | None = None) -> None:
        config = config or WorldToSingingConfig()
        config = replace(config, analysis=replace(config.analysis, envelope=False, aperiodicity=False))
        super().__init__(melody, config, chunk_frames=chunk_frames)
        analysis = self.config.analysis
        # Grains two output periods long where the note is above the speech (nearly always): on dev-data
        # CER 0.462 against 0.481 with input-period grains, DNSMOS 2.46 against 2.38 (docs/results.md).
        # The offset that raised grains sum to, taken away (PsolaConfig.dc_block_hz; docs/results.md, "An
        # offset under the songs").
        self.psola = PsolaSynth(PsolaConfig(analysis.sample_rate, analysis.hop_samples,
                                            min_f0_hz=analysis.envelope_f0_floor_hz, narrow_raised=True,
                                            dc_block_hz=SINGING_DC_BLOCK_HZ, shaping=self.config.shaping))

    @property
    def blend(self) -> bool:
        """Voiced grains mixed from the two input grains around their input time
        (:class:`PsolaConfig` ``blend``); set before a stream starts. Off: over 100 dev-data songs
        DNSMOS +0.030 +- 0.027 but CER +0.041 +- 0.040 (docs/results.md, "Blended grains")."""
        return self.psola.config.blend

    @blend.setter
    def blend(self, on: bool) -> None:
        self.psola = PsolaSynth(replace(self.psola.config, blend=bool(on)))

    @property
    def below_f0(self) -> float:
        """The output high-passed at this fraction of its F0, 0 = off (:class:`PsolaConfig`
        ``below_f0``); set before a stream starts. Off: at 0.75 it takes away the 15 dB more
        energy under the note that ``psola``'s songs have than real singing, and Praat's F0 RMSE
        on dev-data falls from 173 to 94 cents, but over 100 songs CER +0.037 +- 0.028 and DNSMOS
        +0.048 +- 0.055 (docs/results.md, "Under the note")."""
        return self.psola.config.below_f0

    @below_f0.setter
    def below_f0(self, ratio: float) -> None:
        self.psola = PsolaSynth(replace(self.psola.config, below_f0=float(ratio)))

    @property
    def dc_block_hz(self) -> float:
        """The output's fixed high-pass cut-off, 0 = off (:class:`PsolaConfig` ``dc_block_hz``;
        :data:`SINGING_DC_BLOCK_HZ` by default); set before a stream starts."""
        return self.psola.config.dc_block_hz

    @dc_block_hz.setter
    def dc_block_hz(self, hz: float) -> None:
        self.psola = PsolaSynth(replace(self.psola.config, dc_block_hz=float(hz)))

    def init_state(self) -> PsolaSingingState:
        custom: ToSingingState = self.init_custom()
        # The units keep F0 and level, not the 513-bin envelope and aperiodicity (1.6 MB per second of
        # speech that psola would hold until the end).
        custom.units = UnitTracker(self.config.syllables, self._frame_s, 1)
        custom.sources, custom.gains = [], []
        return PsolaSingingState(synth=self.synth.init_state(), custom=custom, psola=self.psola.init_state())

    def _rest_frame(self, s: ToSingingState) -> None:
        """A rest plays the speech's own pauses (``rest_pool``), in order; silence without any."""
        pool = s.rest_pool
        if pool is None or not len(pool):
            self._trace(s, -1.0, 0.0)
            return
        self._trace(s, float(pool[s.rest_cursor % len(pool)]), 1.0)
        s.rest_cursor += 1

    def _input_has_ended(self, state: PipelineState) -> ToSingingState | None:
        """Once: mark the input ended and close the last unit; None if that was done before."""
        assert isinstance(state, PsolaSingingState) and state.psola is not None
        if state.finished:
            return None
        state.finished = True
        s: ToSingingState = state.custom
        s.input_ended = True
        s.units.close()
        return s

    def finish(self, state: PipelineState) -> np.ndarray:
        return joined(self.finish_chunks(state))


class PsolaToSingingConverter(_PsolaSinger):
    """Whole-input, aligned TD-PSOLA speech -> singing (module docstring); the registry's ``psola``."""

    name = "psola-to-singing"

    def __init__(self, melody: Melody, config: WorldToSingingConfig | None = None, *,
                 alignment: AlignmentConfig | None = None, early_consonants: bool = False,
                 fit_octave: bool = True, valleys: bool = False, chunk_frames: int | None = None) -> None:
        """Args:
            melody, config, chunk_frames: as :class:`WorldToSingingConverter`.
            alignment: the syllable-to-note costs (:class:`.note_alignment.AlignmentConfig`).
            fit_octave: sing a melody far above the speaker's voice octaves lower
                (:func:`octaves_down`); False sings it as written.
            valleys: cut the speech's syllables again where the level of its formant band dips
                (:mod:`.syllable_valleys`). Off: the units count the syllables better, but over 100
                dev-data songs the words read no better (CER -0.009 +- 0.050) and the songs sounded
                worse (DNSMOS -0.100 +- 0.051).
            early_consonants: start each syllable's onset consonants before its note, as singers do.
                Off: on dev-data it followed the notes a little better (RCA 0.743 against 0.728,
                DNSMOS 2.52 against 2.47) but lost more words (CER 0.512 against 0.470).
        """
        super().__init__(melody, config, chunk_frames=chunk_frames)
        self.early_consonants = bool(early_consonants)
        self.fit_octave = bool(fit_octave)
        self.valleys = bool(valleys)
        self.alignment = alignment or AlignmentConfig()

    # -- streaming: listen until the end, then sing ----------------------------------------------
    def step(self, window: np.ndarray, state: PipelineState, *, input_end: int | None = None) -> np.ndarray:
        assert isinstance(state, PsolaSingingState) and state.psola is not None
        tidy, first, end_frame = feed_chunk(self, self.psola, state.psola, window, state, input_end)
        self.transform(tidy, first, state, end_frame)
        return np.zeros(0, np.float32)

    def transform(self, frames: Frames, first_frame: int, state: PipelineState, input_end_frame: int | None) -> Frames:
        """Listen only: the syllable units grow; nothing is sung before the input has ended."""
        state.custom.units.feed(_thin(frames), first_frame, input_end_frame)
        assert isinstance(state, PsolaSingingState)
        count = len(frames) if input_end_frame is None else max(0, min(len(frames), input_end_frame - first_frame))
        state.levels.append(np.asarray(frames.level_db[:count], np.float32))
        return Frames.empty(self.analysis.bins)


    def finish_chunks(self, state: PipelineState) -> Iterator[np.ndarray]:
        """Plan the whole song, then sing it ``tail_piece_frames`` output frames at a time.

        Each piece's frames go to the synthesiser, which returns the samples no later grain can
        reach (a grain reaches at most ``reach`` samples back from its mark); the last call returns
        the rest. Grains are placed in the same order as by one call over every frame, and the
        whole input is kept until the end (``keep_from``), so the samples are the same."""
        s = self._input_has_ended(state)
        if s is None:
            return
        assert isinstance(state, PsolaSingingState) and state.psola is not None
        self._plan(state)
        psola = state.psola
        psola.keep_from = psola.history_start
        assert s.sources is not None and s.gains is not None
        while True:
            out = self._generate(s, budget=self.tail_piece_frames)
            if not len(out):
                break
            assert len(s.sources) == len(out)
            self.psola.add_output_frames(np.array(s.sources), np.zeros(len(out)), out.f0_hz, psola,
                                         np.array(s.gains))
            s.sources.clear()
            s.gains.clear()
            state.frames_out += len(out)
            until = self.psola.frames_out(psola) * self.hop_samples - self.psola.reach
            yield self.psola.render(psola, until=until, final=True)
        yield self.psola.render(psola, final=True)

    # -- the plan ----------------------------------------------------------------------------------
    def _plan(self, state: PsolaSingingState) -> None:
        s: ToSingingState = state.custom
        levels = np.concatenate(state.levels) if state.levels else np.zeros(0, np.float32)
        pause = s.units.syllables._pause
        heard = list(s.units.units)
        units = sung_units(heard, levels, pause, self._frame_s)
        state.blips = len(heard) - len(units)
        if self.valleys:
            units = resegment(units, self._band_levels(state, len(levels)), self._voiced(s, len(levels)),
                              self._frame_s)
        state.syllables = len(units)
        s.units.units.clear()
        if self.fit_octave:
            state.octaves_down = octaves_down(self.melody, s.units.store.f0_values())
            s.transpose_semitones -= 12.0 * state.octaves_down
        notes = self.melody.notes
        # A melody far too short for the speech is sung again, as often as it takes to leave at most
        # SHARE_LIMIT syllables per note on average; the alignment shares notes within that.
        passes = max(1, math.ceil(len(units) / (SHARE_LIMIT * len(notes))))
        if passes > 1:
            span = self.melody.span_s
            notes = tuple(replace(n, start_s=n.start_s + k * span, end_s=n.end_s + k * span)
                          for k in range(passes) for n in notes)
            state.repeats = passes - 1
        cells, steps = alignment_work(len(units), len(notes), self.alignment)
        if cells > MAX_ALIGNMENT_CELLS or steps > MAX_ALIGNMENT_STEPS:
            raise OptionError(
                "melody", self.melody.source,
                f"has {len(notes)} notes for the speech's {len(units)} syllables: psola's alignment of the two "
                f"would take {steps:,} steps ({cells:,} cells), more than its limit of {MAX_ALIGNMENT_STEPS:,} "
                f"({MAX_ALIGNMENT_CELLS:,}); sing it with method world (note by note), or use a melody nearer "
                "the speech's length",
            )
        s.rest_pool = self._rest_pool(levels, units)
        frame_s = self._frame_s
        durations = [(u.end - u.onset) * frame_s for u in units]
        pause_after = [units[i + 1].onset - units[i].end >= pause for i in range(len(units) - 1)] + [True]
        starts = [bool(n.lyric) for n in notes] if self.melody.has_lyrics else None   # the score's syllables
        groups = align(durations, pause_after, [(n.start_s, n.end_s) for n in notes], self.alignment,
                       starts) if units else []
        plan: list[_Slot] = []
        prev_end, prev_midi = -10, None
        for group in groups:
            group_notes = tuple(notes[j] for j in group.notes)
            start = self._frame_of(group_notes[0].start_s)
            end = max(self._frame_of(group_notes[-1].end_s), start + 1)
            if len(group.syllables) == 1:
                legato = prev_midi if start - prev_end <= 1 else None
                plan.append(_Slot(group_notes[0], start, end, units[group.syllables[0]], False, legato,
                                  group_notes if len(group_notes) > 1 else ()))
                state.melisma_notes += len(group_notes) - 1
            else:
                # Several syllables on one note: the note's frames shared in proportion to their spoken lengths.
                spans = np.array([durations[i] for i in group.syllables])
                cuts = start + np.round(np.cumsum(spans) / spans.sum() * (end - start)).astype(int)
                lo = start
                for i, hi in zip(group.syllables, cuts, strict=True):
                    hi = max(int(hi), lo + 1)
                    legato = prev_midi if lo - prev_end <= 1 else None
                    plan.append(_Slot(group_notes[0], lo, hi, units[i], False, legato))
                    prev_end, prev_midi = hi, group_notes[0].midi_note + s.transpose_semitones
                    lo = hi
                state.shared_notes += 1
            prev_end, prev_midi = end, group_notes[-1].midi_note + s.transpose_semitones
        if not units:   # nothing was said: the melody's length of silence
            plan = [_Slot(notes[0], 0, self._frame_of(notes[-1].end_s), None, True, None)]  # type: ignore[arg-type]
        elif self.early_consonants:
            self._consonants_before_the_beat(plan)
        s.plan = plan

    def _band_levels(self, state: PsolaSingingState, frames: int) -> np.ndarray:
        """The formant band's level of every input frame, from the input the synthesiser holds (all of it)."""
        psola = state.psola
        assert psola is not None
        held = psola.buffer[psola.offset:psola.offset + psola.held]
        analysis = self.config.analysis
        return band_level_db(held, psola.history_start, frames, analysis.hop_samples, analysis.sample_rate)

    @staticmethod
    def _voiced(s: ToSingingState, frames: int) -> np.ndarray:
        store = s.units.store
        voiced = np.zeros(frames, bool)
        f0 = store.f0_values()[:max(0, frames - store.base)]
        voiced[store.base:store.base + len(f0)] = f0 > 0
        return voiced

    @staticmethod
    def _rest_pool(levels: np.ndarray, units: list) -> np.ndarray:
        """The input frames the song's rests play: the speech's own pauses (room tone, breaths).

        A recording is never digitally silent between phrases, and a singer breathes there; rests of
        exact zeros sound gated. Frames at least ``REST_MARGIN_FRAMES`` from every syllable, at least
        ``REST_QUIET_DB`` below the median syllable level, in runs of ``REST_MIN_RUN`` or more, in
        input order (empty when the speech has no such pause: the rests stay silent)."""
        n = len(levels)
        if not units or n == 0:
            return np.zeros(0, np.int64)
        free = np.ones(n, bool)
        spoken = []
        for u in units:
            free[max(0, u.onset - REST_MARGIN_FRAMES):min(n, u.end + REST_MARGIN_FRAMES)] = False
            spoken.append(levels[u.onset:min(n, u.end)])
        voice = np.concatenate(spoken)
        if not len(voice):
            return np.zeros(0, np.int64)
        free &= levels <= float(np.median(voice)) - REST_QUIET_DB
        # keep runs of REST_MIN_RUN frames or more
        edges = np.diff(np.concatenate(([0], free.astype(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        keep = [np.arange(a, b) for a, b in zip(starts, ends, strict=True) if b - a >= REST_MIN_RUN]
        return np.concatenate(keep) if keep else np.zeros(0, np.int64)

    def _consonants_before_the_beat(self, plan: list[_Slot]) -> None:
        """Singers start a syllable's onset consonants before its note, so the vowel lands on the beat:
        move each slot's start back by its onset (taken from a rest before it, else from the end of
        the previous slot, which keeps at least two thirds of its length)."""
        prev_end = 0
        for k, slot in enumerate(plan):
            unit = slot.unit
            onset = round((unit.nucleus - unit.onset) * self.config.onset_stretch) if unit is not None else 0
            onset = min(onset, int(self.config.max_onset_fraction * (slot.end - slot.start)))
            if onset > 0:
                room = slot.start - prev_end
                if room < onset and k > 0:
                    previous = plan[k - 1]
                    take = min(onset - room, (previous.end - previous.start) // 3)
                    if take > 0:
                        previous.end -= take
                        room += take
                slot.start -= min(onset, max(0, room))
            prev_end = slot.end

    def _onset_voiced(self, unit: Unit, src: float, s: ToSingingState) -> bool:
        """With ``valleys``, an onset may be a voiced consonant (/m/, /l/: the frames around a valley):
        sung on the note (at the speaking pitch, RCA was 0.049 +- 0.009 lower over 100 songs). Without,
        as ``world`` (a blip's flicker handed on to a word's onset stays as recorded: sung on the note it
        read worse on 4 clips of 25, better on none)."""
        return self.valleys and s.units.store.f0(min(int(src), unit.nucleus - 1)) > 0

    def _nucleus_frame(self, unit: Unit, q: int, out_len: int, s: ToSingingState) -> tuple[float, bool]:
        """A lengthened nucleus sings its voiced frames stretched and its unvoiced runs as spoken
        (:func:`.syllable_valleys.nucleus_map`); without ``valleys``, as ``world`` does."""
        if not self.valleys:
            return super()._nucleus_frame(unit, q, out_len, s)
        key = (unit.nucleus, unit.coda, out_len)
        if s.nucleus_map is None or s.nucleus_map[0] != key:
            store = s.units.store
            voiced = store.f0_values()[unit.nucleus - store.base:unit.coda - store.base] > 0
            s.nucleus_map = (key, *nucleus_map(voiced, out_len, round(DROPOUT_S / self._frame_s)))
        _, sources, voiced = s.nucleus_map
        return unit.nucleus + float(sources[q]), bool(voiced[q])

    def _next_slot(self, s: ToSingingState) -> _Slot | None | str:
        if s.plan:
            return s.plan.pop(0)
        return "done"

    def _pitch(self, slot: _Slot, pos: int, s: ToSingingState) -> float:
        if len(slot.notes) <= 1:
            return super()._pitch(slot, pos, s)
        frame = slot.start + pos
        k = 0
        for index, note in enumerate(slot.notes):
            if self._frame_of(note.start_s) <= frame:
                k = index
        note = slot.notes[k]
        start = min(self._frame_of(note.start_s), frame) if k else slot.start
        previous = slot.notes[k - 1].midi_note + s.transpose_semitones if k else slot.prev_midi
        return super()._pitch(replace(slot, note=note, start=start, prev_midi=previous, notes=()), frame - start, s)

    def report(self, state: PipelineState) -> ConverterReport:
        assert isinstance(state, PsolaSingingState)
        s: ToSingingState = state.custom
        stats = {
            "syllables": float(s.units.total),
            "notes": float(len(self.melody.notes)),
            "melisma_notes": float(state.melisma_notes),
            "shared_notes": float(state.shared_notes),
            "melody_repeats": float(state.repeats),
            "blips": float(state.blips),
            "sung_syllables": float(state.syllables),
            "octaves_down": float(state.octaves_down),
        }
        warnings = list(state.warnings)
        if state.repeats:
            m = self.melody
            warnings.append(f"melody {m.source} is shorter than the speech: {len(m.notes)} notes ({m.span_s:.2f} s) "
                            f"for {s.units.total} syllables; the melody was repeated {state.repeats} more time(s) "
                            f"to sing them")
        if state.octaves_down:
            warnings.append(f"melody {self.melody.source} lies more than {MAX_ABOVE_SPEECH_SEMITONES:g} semitones above "
                            f"the speaker's voice: sung {state.octaves_down} octave(s) lower (--melody-octave keep "
                            f"sings it as written)")
        if s.input_ended and s.units.total == 0:
            warnings.append(f"no syllables were found in the speech (is it silent?); the output is "
                            f"{self.melody.span_s:.2f} s of silence")
        return ConverterReport(warnings=warnings, stats=stats)


def octaves_down(melody: Melody, f0_hz: np.ndarray) -> int:
    """How many octaves lower to sing ``melody`` for a speaker whose frames have F0 ``f0_hz`` (0:
    unvoiced): as few as bring its median note within ``MAX_ABOVE_SPEECH_SEMITONES`` of their median
    F0; 0 for a melody at or under that, or a speech with no voiced frame. Never higher: a melody
    below a voice, sung an octave up, measured far worse (DNSMOS -0.67)."""
    voiced = np.asarray(f0_hz, np.float64)
    voiced = voiced[voiced > 0]
    if not len(voiced):
        return 0
    speech = 69.0 + 12.0 * math.log2(float(np.median(voiced)) / 440.0)
    above = float(np.median([note.midi_note for note in melody.notes])) - speech
    return max(0, math.ceil((above - MAX_ABOVE_SPEECH_SEMITONES) / 12.0))


def _thin(frames: Frames) -> Frames:
    """F0 and level of analysed frames, with one-bin envelope and aperiodicity (the units keep no more)."""
    return Frames(frames.f0_hz, frames.periodicity, frames.level_db, frames.sp[:, :1], frames.ap[:, :1])


@dataclass(frozen=True)
class _Span:
    onset: int
    end: int


class _StreamPauses:
    """The speech's pauses heard so far, for ``psola-stream``'s rests: ``psola``'s rule
    (:meth:`PsolaToSingingConverter._rest_pool`) over the ``PAUSE_WINDOW_FRAMES`` before the syllable
    a rest leads to. Everything it reads lies before that syllable's end (every frame there is
    analysed, every unit there taken), so the pauses do not depend on the chunk size."""

    def __init__(self) -> None:
        self.levels = np.zeros(0, np.float32)   # input frames base.. (dB)
        self.base = 0
        self.spans: list[_Span] = []             # the units taken so far, in order
        self.onset: int | None = None            # the syllable the current pool leads to

    def add_levels(self, levels: np.ndarray) -> None:
        self.levels = np.concatenate([self.levels, np.asarray(levels, np.float32)])

    def pool_before(self, onset: int, end: int) -> np.ndarray:
        """The pause frames before the syllable ``onset..end`` (taken last: every frame to its end is in)."""
        lo = max(self.base, onset - PAUSE_WINDOW_FRAMES)
        levels = self.levels[lo - self.base:max(lo, end) - self.base]
        spans = [_Span(u.onset - lo, u.end - lo) for u in self.spans if u.end > lo and u.onset <= onset]
        return PsolaToSingingConverter._rest_pool(levels, spans) + lo

    def forget_before(self, index: int) -> None:
        drop = min(max(0, index - self.base), len(self.levels))
        if drop:
            self.levels = self.levels[drop:]
            self.base += drop
        self.spans = [u for u in self.spans if u.end > self.base]


class PsolaStreamToSingingConverter(_PsolaSinger):
    """``psola-stream``: ``world``'s note-by-note plan, sung by TD-PSOLA on the speaker's own waveform.

    It needs no future: each note takes the next syllable as soon as the syllable is complete, as
    ``world`` does (the last vowel held over notes the speech has no syllables left for; a melody too
    short is sung again), and the grains come from the speech itself instead of WORLD's pulses and
    noise, as in ``psola`` (grains two output periods long when raising). So it runs live. What it
    lacks against ``psola`` is what needs the whole speech: the alignment of syllables with notes
    (melismas, shared notes, rests on pauses). Its rests are silent; with ``rest_pauses`` they play
    the speech's pauses of the 10 s before the syllable they lead to, as ``psola``'s play those of the
    whole speech. On dev-data that sounded better (DNSMOS +0.13 ± 0.09, LSD 8 dB nearer the singing)
    but read worse (CER +0.05 ± 0.10, 12 clips worse, 5 better), so it is off: this converter is the
    live choice for the words. It holds the input from the syllable being sung on (``keep_from``; 10 s
    before it with ``rest_pauses``).
    """

    name = "psola-stream-to-singing"

    def __init__(self, melody: Melody, config: WorldToSingingConfig | None = None, *,
                 rest_pauses: bool = False, chunk_frames: int | None = None) -> None:
        super().__init__(melody, config, chunk_frames=chunk_frames)
        self.rest_pauses = bool(rest_pauses)
        # As psola-nodur: a grain is placed once the analysis is a period past it, so the output does
        # not depend on the chunk; analyse that much further ahead.
        ahead = (self.psola.reach + self.psola.config.max_period) / self.hop_samples
        self.analyse_further(math.ceil(ahead - 0.5))

    def init_state(self) -> PsolaSingingState:
        state = super().init_state()
        state.custom.pauses = _StreamPauses()
        return state

    def step(self, window: np.ndarray, state: PipelineState, *, input_end: int | None = None) -> np.ndarray:
        assert isinstance(state, PsolaSingingState) and state.psola is not None
        tidy, first, end_frame = feed_chunk(self, self.psola, state.psola, window, state, input_end)
        if self.rest_pauses:
            count = len(tidy) if end_frame is None else max(0, min(len(tidy), end_frame - first))
            state.custom.pauses.add_levels(tidy.level_db[:count])
        return self._sing(self.transform(_thin(tidy), first, state, end_frame), state)

    def _sing(self, out: Frames, state: PsolaSingingState, *, final: bool = False) -> np.ndarray:
        """Hand the output frames (and the input frames they sing, traced by ``_generate``) to the
        synthesiser; return the samples it has completed."""
        assert state.psola is not None
        s: ToSingingState = state.custom
        assert s.sources is not None and s.gains is not None
        if len(out):
            self.psola.add_output_frames(np.array(s.sources), np.zeros(len(out)), out.f0_hz, state.psola,
                                         np.array(s.gains))
            s.sources.clear()
            s.gains.clear()
            state.frames_out += len(out)
        # The frames still to sing come from the syllable being sung on (the store keeps them from there),
        # or, in a rest, from the pauses of the 10 s before it.
        keep = max(0, s.units.store.base - (PAUSE_WINDOW_FRAMES if self.rest_pauses else 0))
        s.pauses.forget_before(keep)
        state.psola.keep_from = keep * self.hop_samples
        return self.psola.render(state.psola, final=final)

    def _next_slot(self, s: ToSingingState) -> _Slot | None | str:
        slot = super()._next_slot(s)
        if isinstance(slot, _Slot) and slot.unit is not None and not slot.held:
            s.pauses.spans.append(_Span(slot.unit.onset, slot.unit.end))
        return slot

    def _rest_frame(self, s: ToSingingState) -> None:
        unit = s.slot.unit if s.slot is not None and self.rest_pauses else None
        if unit is not None and unit.onset != s.pauses.onset:
            s.pauses.onset = unit.onset
            s.rest_pool = s.pauses.pool_before(unit.onset, unit.end)
        super()._rest_frame(s)

    def finish_chunks(self, state: PipelineState) -> Iterator[np.ndarray]:
        """The singing still owed once the speech has ended, ``tail_piece_frames`` frames at a time."""
        s = self._input_has_ended(state)
        if s is None:
            return
        assert isinstance(state, PsolaSingingState)
        while True:
            out = self._generate(s, budget=self.tail_piece_frames)
            if not len(out):
                break
            yield self._sing(out, state)
        yield self._sing(Frames.empty(1), state, final=True)


"""Syllables to notes as a singer places them: melismas, shared notes, rests at phrase breaks."""

from __future__ import annotations

import pytest

from voxflip.engine.converters.note_alignment import AlignmentConfig, Group, align
from voxflip.engine.errors import ConfigError


def _notes(durations: list[float], rests_after: tuple[int, ...] = ()) -> list[tuple[float, float]]:
    out, t = [], 0.0
    for j, d in enumerate(durations):
        out.append((t, t + d))
        t += d + (0.5 if j in rests_after else 0.0)
    return out


def _pairs(groups: list[Group]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    return [(tuple(g.syllables), tuple(g.notes)) for g in groups]


def test_as_many_syllables_as_notes_of_matching_rhythm_go_one_to_one():
    groups = align([0.2, 0.2, 0.4, 0.2], [False, False, False, True], _notes([0.5, 0.5, 1.0, 0.5]))
    assert _pairs(groups) == [((0,), (0,)), ((1,), (1,)), ((2,), (2,)), ((3,), (3,))]


def test_a_long_syllable_takes_the_surplus_notes_as_a_melisma():
    # Five notes for three syllables; the middle syllable is spoken three times as long.
    groups = align([0.2, 0.6, 0.2], [False, False, True], _notes([0.4, 0.4, 0.4, 0.4, 0.4]))
    assert _pairs(groups) == [((0,), (0,)), ((1,), (1, 2, 3)), ((2,), (4,))]


def test_short_syllables_share_a_note_when_the_notes_run_short():
    # Four syllables, three notes: the two quick ones share the long note.
    groups = align([0.3, 0.1, 0.1, 0.3], [False, False, False, True], _notes([0.6, 0.4, 0.6]))
    assert _pairs(groups) == [((0,), (0,)), ((1, 2), (1,)), ((3,), (2,))]


def test_the_tunes_rest_falls_on_the_speech_pause():
    # Two phrases of three syllables; the tune has a rest after its fourth note (and one extra note
    # in the first phrase). The first phrase's syllables must end exactly at that rest.
    groups = align([0.2] * 6, [False, False, True, False, False, True],
                   _notes([0.4] * 7, rests_after=(3,)))
    first_phrase = [g for g in groups if g.syllables.start < 3]
    assert max(max(g.notes) for g in first_phrase) == 3


def test_every_syllable_and_note_is_used_once_in_order_even_when_the_counts_are_far_apart():
    for n, m in ((1, 12), (12, 1), (7, 30), (30, 7)):
        groups = align([0.2] * n, [False] * (n - 1) + [True], _notes([0.3] * m))
        assert [s for g in groups for s in g.syllables] == list(range(n))
        assert [j for g in groups for j in g.notes] == list(range(m))
        assert all(len(g.syllables) == 1 or len(g.notes) == 1 for g in groups)


def test_nothing_to_align_gives_nothing():
    assert align([], [], _notes([0.5])) == []
    assert align([0.2], [True], []) == []


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="max_notes_per_syllable"):
        AlignmentConfig(max_notes_per_syllable=0)


def test_early_consonants_start_before_the_note_and_take_from_the_previous_vowel():
    from voxflip.engine.converters.psola_to_singing import PsolaToSingingConverter
    from voxflip.engine.converters.syllable_units import Unit
    from voxflip.engine.converters.world_to_singing import _Slot
    from voxflip.engine.melody import Melody, Note

    notes = (Note(0.0, 1.0, 60), Note(1.0, 2.0, 62), Note(2.5, 3.0, 64))
    converter = PsolaToSingingConverter(Melody(notes, "t"), early_consonants=True)
    # Three syllables: no onset; a 60 ms onset after a legato note; a 100 ms onset after a 0.5 s rest.
    units = [Unit(onset=0, nucleus=0, coda=40, end=40), Unit(onset=50, nucleus=62, coda=90, end=90),
             Unit(onset=100, nucleus=120, coda=150, end=150)]
    plan = [_Slot(notes[0], 0, 200, units[0], False, None), _Slot(notes[1], 200, 400, units[1], False, 60.0),
            _Slot(notes[2], 500, 600, units[2], False, None)]
    converter._consonants_before_the_beat(plan)
    assert (plan[0].start, plan[0].end) == (0, 188)       # the legato vowel gives up the 12-frame onset
    assert (plan[1].start, plan[1].end) == (188, 400)
    assert (plan[2].start, plan[2].end) == (480, 600)     # the rest gives the 20-frame onset


def _onset_frames(onset_stretch: float, note_frames: int) -> list[float]:
    """The input frames the onset of one syllable (20 frames of consonant, then a 40-frame vowel) is read at,
    sung on a note of ``note_frames`` output frames."""
    from types import SimpleNamespace

    from voxflip.engine.converters.psola_to_singing import PsolaToSingingConverter
    from voxflip.engine.converters.syllable_units import Unit
    from voxflip.engine.converters.world_to_singing import WorldToSingingConfig, _Slot
    from voxflip.engine.melody import Melody, Note

    note = Note(0.0, 2.0, 60)
    converter = PsolaToSingingConverter(Melody((note,), "t"), WorldToSingingConfig(onset_stretch=onset_stretch))
    unit = Unit(onset=100, nucleus=120, coda=160, end=160)
    state = SimpleNamespace(sources=[], gains=[], transpose_semitones=0.0)
    slot = _Slot(note, 0, note_frames, unit, False, None)
    for pos in range(note_frames):
        converter._sing_frame(slot, pos, state)
    return [src for src in state.sources if src < unit.nucleus]


def test_onset_stretch_lengthens_the_onset_consonants_within_their_share_of_the_note():
    spoken = _onset_frames(1.0, 300)
    assert spoken == list(range(100, 120))                       # as spoken: one input frame per output frame
    slower = _onset_frames(1.5, 300)
    assert len(slower) == 30 and slower[0] == 100 and max(slower) < 120      # the same sounds, 1.5 times as long
    capped = _onset_frames(4.0, 100)                  # 80 frames wanted, half the 100-frame note allowed
    assert len(capped) == 50 and capped[0] == 100 and 118 <= max(capped) < 120   # the whole onset still read


def test_onset_stretch_out_of_range_is_refused_with_the_value():
    from voxflip.engine.converters.world_to_singing import WorldToSingingConfig
    from voxflip.engine.errors import OptionError

    with pytest.raises(OptionError, match=r"onset_stretch=0.5 is outside 1..4"):
        WorldToSingingConfig(onset_stretch=0.5)

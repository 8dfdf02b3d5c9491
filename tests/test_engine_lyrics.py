"""A score's lyrics: which notes start a syllable and which continue one (a melisma), read from
MusicXML and MIDI, and followed by the syllable-to-note alignment (``psola``) and note by note
(``world``, ``psola-stream``)."""

from __future__ import annotations

import mido
import numpy as np
import pytest
from helpers import stream_in_blocks
from test_engine_melody import note_off, note_on, write_midi, write_text, xml_note, xml_part, xml_score
from test_engine_note_alignment import _notes, _pairs

from voxflip.engine.converters.note_alignment import align
from voxflip.engine.melody import Melody, Note, load_melody, parse_midi, parse_musicxml
from voxflip.engine.registry import make_converter
from voxflip.streaming.streamer import Streamer


def _lyric(text: str | None, syllabic: str = "single", *, extend: bool = False, number: int = 1) -> str:
    text_xml = f"<syllabic>{syllabic}</syllabic><text>{text}</text>" if text is not None else ""
    return f'<lyric number="{number}">{text_xml}{"<extend/>" if extend else ""}</lyric>'


# -- reading ----------------------------------------------------------------------------------------
def test_musicxml_lyrics_mark_the_notes_that_start_a_syllable(tmp_path):
    score = xml_score(xml_part(
        xml_note("C", 4, 1, extra=_lyric("lo", "begin"))
        + xml_note("D", 4, 1, extra=_lyric(None, extend=True))          # the syllable held on: a melisma
        + xml_note("E", 4, 1, extra=_lyric("ve", "end") + _lyric("amo", number=2))
        + xml_note("F", 4, 1),                                            # no lyric: held on too
        xml_note("G", 4, 2, tie="start", extra=_lyric("you")) ,
        xml_note("G", 4, 2, tie="stop"),
    ))
    melody = parse_musicxml(write_text(tmp_path / "song.musicxml", score))
    assert [n.lyric for n in melody.notes] == ["lo", None, "ve", None, "you"]   # the tie merged, its lyric kept
    assert melody.has_lyrics


def test_a_chords_syllable_stays_with_the_note_the_line_keeps(tmp_path):
    chord = xml_note("C", 4, 2, extra=_lyric("la")) + xml_note("G", 4, 2, extra="<chord/>") + xml_note("F", 4, 2)
    melody = parse_musicxml(write_text(tmp_path / "chord.musicxml", xml_score(xml_part(chord))))
    assert [(n.midi_note, n.lyric) for n in melody.notes] == [(67.0, "la"), (65.0, None)]


def test_a_score_without_lyrics_has_none(tmp_path):
    melody = parse_musicxml(write_text(tmp_path / "plain.musicxml", xml_score(xml_part(xml_note("C", 4, 4)))))
    assert not melody.has_lyrics


def test_midi_lyric_events_go_to_the_notes_they_start_with(tmp_path):
    events = [note_on(0, 60), (0, mido.MetaMessage("lyrics", text="Hel-")), note_off(480, 60),
              note_on(480, 62), note_off(960, 62),                                  # melisma: no lyric
              (950, mido.MetaMessage("lyrics", text="/lo ")), note_on(960, 64), note_off(1440, 64)]
    melody = parse_midi(write_midi(tmp_path / "song.mid", events))
    assert [n.lyric for n in melody.notes] == ["Hel", None, "lo"]   # 10 ticks early (10 ms) still counts


def test_note_lists_take_an_optional_lyric_column(tmp_path):
    from voxflip.engine.errors import MelodyError

    csv = write_text(tmp_path / "song.csv", "start_s,end_s,midi_note,lyric\n0,0.5,60,twin\n0.5,1,62,\n1,1.5,64,kle\n")
    assert [n.lyric for n in load_melody(csv).notes] == ["twin", None, "kle"]
    json_list = write_text(tmp_path / "song.json", '[{"start_s": 0, "end_s": 1, "midi_note": 60, "lyric": "la"}]')
    assert load_melody(json_list).notes[0].lyric == "la"
    bad = write_text(tmp_path / "bad.json", '[{"start_s": 0, "end_s": 1, "midi_note": 60, "lyric": 3}]')
    with pytest.raises(MelodyError, match=r"note #1: lyric=3 is not text"):
        load_melody(bad)


def test_transpose_and_tempo_keep_the_lyrics(tmp_path):
    score = xml_score(xml_part(xml_note("C", 4, 1, extra=_lyric("a")) + xml_note("D", 4, 1)))
    melody = load_melody(write_text(tmp_path / "s.musicxml", score), transpose_semitones=2, tempo_factor=2)
    assert [n.lyric for n in melody.notes] == ["a", None]


# -- the alignment ----------------------------------------------------------------------------------
def test_the_lyrics_decide_the_melisma_that_the_rhythm_alone_would_place_elsewhere():
    # Three syllables, five equal notes; spoken, the first syllable is the long one, so by rhythm it
    # takes the melisma. The score puts the melisma on the second syllable instead.
    durations, pauses, notes = [0.6, 0.2, 0.2], [False, False, True], _notes([0.4] * 5)
    by_rhythm = _pairs(align(durations, pauses, notes))
    assert by_rhythm[0] == ((0,), (0, 1, 2))
    by_score = _pairs(align(durations, pauses, notes, syllable_starts=[True, True, False, False, True]))
    assert by_score == [((0,), (0,)), ((1,), (1, 2, 3)), ((2,), (4,))]


def test_lyrics_of_another_length_are_refused():
    with pytest.raises(ValueError, match="syllable_starts has 2 entries for 3 notes"):
        align([0.2], [True], _notes([0.2] * 3), syllable_starts=[True, False])


# -- the converters ---------------------------------------------------------------------------------
def _sung_melody(lyric_pattern: list[bool]) -> Melody:
    """Notes of 0.3 s, one after another, a lyric syllable where the pattern says."""
    return Melody(tuple(Note(round(0.2 + 0.3 * k, 6), round(0.5 + 0.3 * k, 6), 57.0 + (k % 5),
                             lyric="la" if starts else None)
                        for k, starts in enumerate(lyric_pattern)), "song")


@pytest.mark.parametrize("method", ["world", "psola-stream"])
def test_note_by_note_a_note_without_a_syllable_holds_the_last_one(example_speech, method):
    audio, rate = example_speech
    pattern = [True, False] * 20        # more syllables in the score than the sentence has: sung once
    converter = make_converter("singing", method, melody=_sung_melody(pattern))
    streamer = Streamer(converter, rate)
    stream_in_blocks(streamer, audio, 4096)
    stats = converter.report(streamer.state).stats
    assert stats["lyric_melisma_notes"] == pattern.count(False)
    # without lyrics the same notes each take the next syllable
    plain = make_converter("singing", method, melody=Melody(tuple(
        Note(n.start_s, n.end_s, n.midi_note) for n in _sung_melody(pattern).notes), "plain"))
    streamer = Streamer(plain, rate)
    stream_in_blocks(streamer, audio, 4096)
    assert plain.report(streamer.state).stats["lyric_melisma_notes"] == 0


def test_psola_sings_the_scores_melismas_when_it_hears_as_many_syllables(example_speech):
    audio, rate = example_speech
    plain = make_converter("singing", "psola", melody=_sung_melody([True] * 12))
    streamer = Streamer(plain, rate)
    stream_in_blocks(streamer, audio, 4096)
    syllables = int(plain.report(streamer.state).stats["sung_syllables"])
    pattern = [True, False] * syllables            # each syllable over two notes, by the score
    scored = make_converter("singing", "psola", melody=_sung_melody(pattern))
    streamer = Streamer(scored, rate)
    out = stream_in_blocks(streamer, audio, 4096)
    stats = scored.report(streamer.state).stats
    assert stats["melisma_notes"] == syllables and stats["shared_notes"] == 0
    assert np.abs(out).max() > 0.01

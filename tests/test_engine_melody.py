"""Tests for voxflip.engine.melody: MIDI, MusicXML and note-list melodies, reduced to one line.

Every fixture is written into tmp_path by the test itself: MIDI with mido, MusicXML as small
hand-written strings, note lists as CSV/JSON text. The music21 cross-check uses its bundled corpus.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from pathlib import Path

import mido
import pytest

from voxflip.engine.errors import MelodyError
from voxflip.engine.melody import (
    Melody,
    Note,
    load_melody,
    parse_midi,
    parse_musicxml,
    parse_note_list,
    to_monophonic,
)

# ---------------------------------------------------------------- fixture writers


def note_on(tick: int, pitch: int, velocity: int = 100, channel: int = 0) -> tuple[int, mido.Message]:
    return tick, mido.Message("note_on", note=pitch, velocity=velocity, channel=channel)


def note_off(
    tick: int, pitch: int, channel: int = 0, *, as_zero_velocity: bool = False
) -> tuple[int, mido.Message]:
    if as_zero_velocity:
        return tick, mido.Message("note_on", note=pitch, velocity=0, channel=channel)
    return tick, mido.Message("note_off", note=pitch, channel=channel)


def set_tempo(tick: int, bpm: float) -> tuple[int, mido.MetaMessage]:
    return tick, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))


def write_midi(path: Path, *tracks: list, ticks_per_beat: int = 480, midi_type: int = 1) -> Path:
    """Write tracks given as (absolute tick, message) lists; same-tick events keep their order."""
    midi = mido.MidiFile(type=midi_type, ticks_per_beat=ticks_per_beat)
    for events in tracks:
        track = mido.MidiTrack()
        previous = 0
        for tick, msg in sorted(events, key=lambda event: event[0]):
            track.append(msg.copy(time=tick - previous))
            previous = tick
        midi.tracks.append(track)
    midi.save(path)
    return path


def xml_note(
    step: str,
    octave: int,
    duration: int,
    *,
    alter: str | None = None,
    extra: str = "",
    voice: int | None = None,
    tie: str | None = None,
) -> str:
    alter_xml = f"<alter>{alter}</alter>" if alter is not None else ""
    voice_xml = f"<voice>{voice}</voice>" if voice is not None else ""
    tie_xml = "".join(f'<tie type="{kind}"/>' for kind in (tie or "").split())
    return (
        f"<note>{extra}<pitch><step>{step}</step>{alter_xml}<octave>{octave}</octave></pitch>"
        f"<duration>{duration}</duration>{tie_xml}{voice_xml}</note>"
    )


def xml_rest(duration: int) -> str:
    return f"<note><rest/><duration>{duration}</duration></note>"


def xml_part(*measures: str, part_id: str = "P1", divisions: int | None = 1) -> str:
    attributes = f"<attributes><divisions>{divisions}</divisions></attributes>" if divisions else ""
    body = "".join(
        f'<measure number="{index + 1}">{attributes if index == 0 else ""}{content}</measure>'
        for index, content in enumerate(measures)
    )
    return f'<part id="{part_id}">{body}</part>'


def xml_score(*parts: str) -> str:
    part_list = "".join(
        f'<score-part id="P{index + 1}"><part-name>p</part-name></score-part>' for index in range(len(parts))
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><score-partwise version="4.0">'
        f"<part-list>{part_list}</part-list>{''.join(parts)}</score-partwise>"
    )


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_mxl(
    path: Path, score: str, *, container: str | None = None, inner: str = "score/tune.musicxml"
) -> Path:
    if container is None:
        container = (
            f'<?xml version="1.0"?><container><rootfiles><rootfile full-path="{inner}" '
            'media-type="application/vnd.recordare.musicxml+xml"/></rootfiles></container>'
        )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/vnd.recordare.musicxml")
        if container:
            archive.writestr("META-INF/container.xml", container)
        archive.writestr(inner, score)
    return path


def triples(melody: Melody) -> list[tuple[float, float, float]]:
    return [(round(n.start_s, 9), round(n.end_s, 9), n.midi_note) for n in melody.notes]


# ---------------------------------------------------------------- MIDI


def test_parse_midi_reads_notes_and_rests_in_seconds(tmp_path):
    path = write_midi(
        tmp_path / "tune.mid",
        [
            note_on(0, 60, 90),
            note_off(480, 60),
            note_on(960, 62),
            note_off(1440, 62, as_zero_velocity=True),  # note_on velocity 0 ends a note
        ],
    )
    melody = parse_midi(path)
    assert triples(melody) == [(0.0, 0.5, 60.0), (1.0, 1.5, 62.0)]
    assert [n.velocity for n in melody.notes] == [90, 100]
    assert melody.source == str(path)


def test_parse_midi_follows_tempo_changes_of_the_conductor_track(tmp_path):
    conductor = [set_tempo(0, 60), set_tempo(960, 240)]
    notes = [
        note_on(0, 60),
        note_off(480, 60),
        note_on(960, 64),
        note_off(1440, 64),
        note_on(1920, 67),
        note_off(2400, 67),
    ]
    melody = parse_midi(write_midi(tmp_path / "tempo.mid", conductor, notes))
    # 60 bpm: one beat = 1 s for the first 960 ticks (2 s); then 240 bpm: one beat = 0.25 s.
    assert triples(melody) == [(0.0, 1.0, 60.0), (2.0, 2.25, 64.0), (2.5, 2.75, 67.0)]


def test_parse_midi_merges_tracks_and_ignores_percussion_channel(tmp_path):
    melody_track = [note_on(0, 60), note_off(480, 60)]
    drums = [
        note_on(0, 36, channel=9),
        note_off(240, 36, channel=9),
        note_on(480, 38, channel=9),
        note_off(960, 38, channel=9),
    ]
    second = [note_on(960, 65, channel=1), note_off(1440, 65, channel=1)]
    melody = parse_midi(write_midi(tmp_path / "band.mid", melody_track, drums, second))
    assert triples(melody) == [(0.0, 0.5, 60.0), (1.0, 1.5, 65.0)]


def test_parse_midi_keeps_top_of_chord_and_cuts_overlaps(tmp_path):
    events = [
        note_on(0, 60),
        note_on(0, 67),
        note_on(0, 64),  # chord: keep 67
        note_on(480, 55),  # starts while the chord sounds: cuts it
        note_off(960, 60),
        note_off(960, 64),
        note_off(960, 67),
        note_off(1440, 55),
    ]
    melody = parse_midi(write_midi(tmp_path / "chord.mid", events))
    assert triples(melody) == [(0.0, 0.5, 67.0), (0.5, 1.5, 55.0)]


def test_parse_midi_ends_unterminated_note_at_end_of_file(tmp_path):
    events = [note_on(0, 60), note_on(480, 62), note_off(960, 62), (1920, mido.MetaMessage("end_of_track"))]
    melody = parse_midi(write_midi(tmp_path / "hang.mid", events))
    assert triples(melody) == [(0.0, 0.5, 60.0), (0.5, 1.0, 62.0)]


def test_parse_midi_type_0_file(tmp_path):
    events = [set_tempo(0, 96), note_on(0, 72), note_off(480, 72)]
    melody = parse_midi(write_midi(tmp_path / "single.midi", events, midi_type=0))
    assert triples(melody) == [(0.0, 0.625, 72.0)]  # one beat at 96 bpm


# ---------------------------------------------------------------- MusicXML


def test_parse_musicxml_reads_pitches_rests_and_default_tempo(tmp_path):
    score = xml_score(
        xml_part(
            xml_note("C", 4, 2)
            + xml_rest(2)
            + xml_note("D", 4, 1, alter="1")
            + xml_note("B", 3, 1, alter="-1"),
            xml_note("A", 4, 4, alter="-0.5"),
            divisions=2,
        )
    )
    melody = parse_musicxml(write_text(tmp_path / "tune.musicxml", score))
    # 120 quarter notes per minute: a quarter (2 divisions) lasts 0.5 s.
    assert triples(melody) == [(0.0, 0.5, 60.0), (1.0, 1.25, 63.0), (1.25, 1.5, 58.0), (1.5, 2.5, 68.5)]


def test_parse_musicxml_merges_tied_notes_across_barlines(tmp_path):
    score = xml_score(
        xml_part(
            xml_note("C", 4, 2) + xml_note("E", 4, 2, tie="start"),
            xml_note("E", 4, 4, tie="stop start"),
            xml_note("E", 4, 1, tie="stop") + xml_note("E", 4, 3),
        )
    )  # the last E is struck again
    melody = parse_musicxml(write_text(tmp_path / "tie.xml", score))
    assert triples(melody) == [(0.0, 1.0, 60.0), (1.0, 4.5, 64.0), (4.5, 6.0, 64.0)]


def test_parse_musicxml_chord_keeps_top_note(tmp_path):
    chord = (
        xml_note("C", 4, 2)
        + xml_note("G", 4, 2, extra="<chord/>")
        + xml_note("E", 4, 2, extra="<chord/>")
        + xml_note("F", 4, 2)
    )
    melody = parse_musicxml(write_text(tmp_path / "chord.musicxml", xml_score(xml_part(chord))))
    assert triples(melody) == [(0.0, 1.0, 67.0), (1.0, 2.0, 65.0)]


def test_parse_musicxml_voices_with_backup_and_forward_reduce_to_last_onset(tmp_path):
    measure = (
        xml_note("C", 5, 4, voice=1)
        + "<backup><duration>4</duration></backup>"
        + "<forward><duration>2</duration></forward>"
        + xml_note("G", 4, 2, voice=2)
    )
    melody = parse_musicxml(write_text(tmp_path / "voices.musicxml", xml_score(xml_part(measure))))
    # G4 starts at beat 3 while C5 sounds: C5 is cut there (last-onset priority).
    assert triples(melody) == [(0.0, 1.0, 72.0), (1.0, 2.0, 67.0)]


def test_parse_musicxml_tempo_changes_in_direction_and_sound(tmp_path):
    measure1 = (
        '<direction placement="above"><direction-type><words>Adagio</words></direction-type>'
        '<sound tempo="60"/></direction>'
        + xml_note("C", 4, 2)
        + '<direction><direction-type><words>piu mosso</words></direction-type><sound tempo="240"/>'
        "</direction>" + xml_note("D", 4, 2)
    )
    measure2 = '<sound tempo="120"/>' + xml_note("E", 4, 4)
    melody = parse_musicxml(write_text(tmp_path / "tempo.musicxml", xml_score(xml_part(measure1, measure2))))
    # two quarters at 60 bpm (2 s), two at 240 bpm (0.5 s), a whole at 120 bpm (2 s)
    assert triples(melody) == [(0.0, 2.0, 60.0), (2.0, 2.5, 62.0), (2.5, 4.5, 64.0)]


def test_parse_musicxml_skips_grace_notes_and_uses_first_pitched_part(tmp_path):
    rests_only = xml_part(xml_rest(4), part_id="P1")
    grace = "<note><grace/><pitch><step>B</step><octave>4</octave></pitch><type>eighth</type></note>"
    tune = xml_part(grace + xml_note("C", 5, 4), part_id="P2")
    bass = xml_part(xml_note("C", 3, 4), part_id="P3")
    melody = parse_musicxml(write_text(tmp_path / "parts.musicxml", xml_score(rests_only, tune, bass)))
    assert triples(melody) == [(0.0, 2.0, 72.0)]


def test_parse_musicxml_reads_timewise_scores_and_dynamics(tmp_path):
    score = (
        '<score-timewise><part-list><score-part id="P1"/></part-list>'
        '<measure number="1"><part id="P1"><attributes><divisions>1</divisions></attributes>'
        '<sound dynamics="50"/>' + xml_note("G", 4, 1) + "</part></measure>"
        '<measure number="2"><part id="P1">' + xml_note("A", 4, 1) + "</part></measure></score-timewise>"
    )
    melody = parse_musicxml(write_text(tmp_path / "timewise.xml", score))
    assert triples(melody) == [(0.0, 0.5, 67.0), (0.5, 1.0, 69.0)]
    assert [n.velocity for n in melody.notes] == [45, 45]  # 50 % of forte (90)


def test_parse_musicxml_reads_compressed_mxl(tmp_path):
    score = xml_score(xml_part(xml_rest(1) + xml_note("F", 4, 1, alter="1") + xml_note("A", 4, 2)))
    melody = load_melody(write_mxl(tmp_path / "tune.mxl", score))
    assert triples(melody) == [(0.5, 1.0, 66.0), (1.0, 2.0, 69.0)]
    assert melody.span_s == 2.0  # the leading rest counts


# ---------------------------------------------------------------- note lists


def test_parse_note_list_csv_any_column_order_and_unsorted_rows(tmp_path):
    text = "midi_note, velocity ,start_s,end_s\n62,80,1.0,1.5\n\n60,,0.0,0.5\n"
    melody = parse_note_list(write_text(tmp_path / "tune.csv", text))
    assert triples(melody) == [(0.0, 0.5, 60.0), (1.0, 1.5, 62.0)]
    assert [n.velocity for n in melody.notes] == [100, 80]


@pytest.mark.parametrize("wrap", [False, True], ids=["list", "notes-object"])
def test_parse_note_list_json(tmp_path, wrap):
    notes = [
        {"start_s": 0.25, "end_s": 0.75, "midi_note": 57.5, "velocity": 64},
        {"end_s": 2, "start_s": 1, "midi_note": 59},
    ]
    path = write_text(tmp_path / "tune.json", json.dumps({"notes": notes} if wrap else notes))
    melody = load_melody(path)
    assert triples(melody) == [(0.25, 0.75, 57.5), (1.0, 2.0, 59.0)]
    assert [n.velocity for n in melody.notes] == [64, 100]


# ---------------------------------------------------------------- Melody, Note, to_monophonic


@pytest.fixture
def melody() -> Melody:
    return Melody((Note(0.5, 1.0, 60.0), Note(1.0, 1.5, 62.0), Note(2.0, 3.0, 64.0, 70)), "fixture")


def test_note_properties():
    note = Note(1.0, 1.75, 69.0)
    assert note.duration_s == 0.75
    assert note.f0_hz == 440.0
    assert Note(0, 1, 81.0).f0_hz == pytest.approx(880.0)
    assert Note(0, 1, 69.5).f0_hz == pytest.approx(440.0 * 2 ** (0.5 / 12))


def test_transposed_and_with_tempo(melody):
    up = melody.transposed(-2.5)
    assert [n.midi_note for n in up.notes] == [57.5, 59.5, 61.5]
    assert [n.start_s for n in up.notes] == [0.5, 1.0, 2.0]
    fast = melody.with_tempo(2.0)
    assert triples(fast) == [(0.25, 0.5, 60.0), (0.5, 0.75, 62.0), (1.0, 1.5, 64.0)]
    assert fast.span_s == 1.5
    assert melody.with_tempo(0.5).span_s == 6.0
    assert melody.transposed(0) is melody


def test_load_melody_applies_transpose_and_tempo(tmp_path):
    path = write_text(tmp_path / "tune.csv", "start_s,end_s,midi_note\n0,1,60\n2,3,67\n")
    melody = load_melody(path, transpose_semitones=12, tempo_factor=4.0)
    assert triples(melody) == [(0.0, 0.25, 72.0), (0.5, 0.75, 79.0)]


@pytest.mark.parametrize(
    "time_s, expected",
    [
        (0.0, None),
        (0.49, None),
        (0.5, 60.0),
        (0.99, 60.0),
        (1.0, 62.0),
        (1.7, None),
        (2.5, 64.0),
        (3.0, None),
        (-1.0, None),
        (99.0, None),
    ],
)
def test_note_at_in_notes_and_rests(melody, time_s, expected):
    found = melody.note_at(time_s)
    assert (found.midi_note if found else None) == expected


def test_note_at_rejects_nan(melody):
    with pytest.raises(ValueError, match="time_s=nan"):
        melody.note_at(math.nan)


def test_to_monophonic_rules():
    notes = [
        Note(2.0, 3.0, 50.0),  # unsorted input is fine
        Note(0.0, 1.0, 60.0),
        Note(0.0, 1.5, 64.0),
        Note(0.0, 0.5, 64.0),  # chord: highest, then longest
        Note(1.2, 1.205, 90.0),  # 5 ms long: dropped before it can cut the 64
        Note(1.4, 2.5, 55.0),  # cuts the 64 at 1.4, is cut at 2.0 by the 50
        Note(2.995, 4.0, 52.0),  # cuts the 50 at 2.995
        Note(3.5, 3.505, 40.0),  # 5 ms long: dropped, so the 52 sounds on
        Note(3.505, 4.5, 41.0),  # cuts the 52 at 3.505
    ]
    assert triples(Melody(to_monophonic(notes), "t")) == [
        (0.0, 1.4, 64.0),
        (1.4, 2.0, 55.0),
        (2.0, 2.995, 50.0),
        (2.995, 3.505, 52.0),
        (3.505, 4.5, 41.0),
    ]


def test_to_monophonic_drops_notes_cut_below_10_ms():
    notes = [Note(0.0, 1.0, 60.0), Note(1.0, 2.0, 62.0), Note(1.005, 2.0, 61.0)]
    # the 62 starts at 1.0 and is cut at 1.005 by the 61: 5 ms left, so it is dropped
    assert triples(Melody(to_monophonic(notes), "t")) == [(0.0, 1.0, 60.0), (1.005, 2.0, 61.0)]
    assert to_monophonic([]) == ()


def test_melody_rejects_overlapping_or_empty_notes():
    with pytest.raises(MelodyError, match="before note 0 ends"):
        Melody((Note(0.0, 1.0, 60.0), Note(0.5, 2.0, 62.0)), "tune.csv")
    with pytest.raises(MelodyError, match="no notes"):
        Melody((), "tune.csv")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"start_s": -1.0}, "start_s=-1.0 is negative"),
        ({"end_s": 0.0}, "end_s=0.0 is not after start_s=0.0"),
        ({"midi_note": 128.0}, "midi_note=128.0 is outside the MIDI range 0..127"),
        ({"midi_note": math.inf}, "midi_note=inf is not a finite number"),
        ({"velocity": 0}, "velocity=0 is not a whole number in 1..127"),
        ({"velocity": 64.0}, "velocity=64.0 is not a whole number"),
    ],
)
def test_note_rejects_bad_values(kwargs, match):
    values = {"start_s": 0.0, "end_s": 1.0, "midi_note": 60.0, "velocity": 100} | kwargs
    with pytest.raises(MelodyError, match=re.escape(match)):
        Note(**values)


# ---------------------------------------------------------------- bad input, one table

NOTE_HEADER = "start_s,end_s,midi_note\n"


def type2_midi(path: Path) -> None:
    write_midi(path, [note_on(0, 60), note_off(480, 60)], midi_type=2)


def drums_only_midi(path: Path) -> None:
    write_midi(path, [note_on(0, 36, channel=9), note_off(480, 36, channel=9)])


def high_csv(path: Path) -> None:
    write_text(path, NOTE_HEADER + "0,1,60\n1,2,120\n")


ONE_NOTE_SCORE = xml_score(xml_part(xml_note("C", 4, 1)))

BAD_INPUTS = [
    # (file name, content: None = absent, "DIR", str, bytes or a writer; load_melody kwargs; message part)
    ("absent.mid", None, {}, "absent.mid: melody file not found"),
    ("folder.mid", "DIR", {}, "folder.mid: is a directory"),
    ("tune.txt", "hello", {}, "unknown melody file extension '.txt'; allowed: .mid, .midi, .musicxml"),
    ("tune", "hello", {}, "unknown melody file extension ''"),
    ("tune.mid", b"not a midi file at all", {}, "tune.mid: not a readable MIDI file"),
    ("tune.mid", b"MThd\x00\x00\x00\x06\x00\x01", {}, "not a readable MIDI file"),
    ("tune.mid", type2_midi, {}, "MIDI type 2"),
    ("tune.mid", drums_only_midi, {}, "the melody is empty: no notes outside the percussion channel 10"),
    ("tune.musicxml", "<score-partwise><part>", {}, "tune.musicxml: not well-formed XML"),
    ("tune.xml", "<html/>", {}, "root element <html> is not a MusicXML score"),
    ("tune.xml", xml_score(xml_part(xml_rest(4))), {}, "no pitched notes in any part"),
    (
        "tune.xml",
        xml_score(xml_part(xml_note("C", 4, 1), divisions=None)),
        {},
        "before any <attributes><divisions>",
    ),
    ("tune.xml", xml_score(xml_part(xml_note("H", 4, 1))), {}, "measure 1: <step>'H' is not a note name"),
    ("tune.xml", xml_score(xml_part(xml_note("C", 10, 1))), {}, "midi_note=132.0 is outside the MIDI range"),
    (
        "tune.xml",
        xml_score(xml_part('<sound tempo="0"/>' + xml_note("C", 4, 1))),
        {},
        "<sound tempo>='0' is not a number > 0",
    ),
    ("tune.xml", xml_score(xml_part(xml_note("C", 4, -1))), {}, "<duration>='-1' is not a number >= 0"),
    ("tune.mxl", b"PK but not a zip", {}, "tune.mxl: not a readable compressed MusicXML (.mxl) zip"),
    ("tune.mxl", lambda path: write_mxl(path, ONE_NOTE_SCORE, container=""), {}, "no META-INF/container.xml"),
    (
        "tune.mxl",
        lambda path: write_mxl(
            path,
            ONE_NOTE_SCORE,
            container='<container><rootfiles><rootfile full-path="gone.xml"/></rootfiles></container>',
        ),
        {},
        "names 'gone.xml', which is not in the archive",
    ),
    ("tune.csv", "", {}, "tune.csv: the file is empty; it needs a header row"),
    ("tune.csv", "0,1,60\n", {}, "tune.csv line 1: no header row"),
    (
        "tune.csv",
        "start_s,end_s,midi_note,pitch\n0,1,60,3\n",
        {},
        "tune.csv line 1: unknown column(s) 'pitch'; allowed columns: start_s, end_s, midi_note (required), "
        "velocity, lyric (optional)",
    ),
    ("tune.csv", "start_s,midi_note\n0,60\n", {}, "missing column(s) 'end_s'"),
    ("tune.csv", "start_s,end,midi_note\n0,1,60\n", {}, "unknown column(s) 'end', missing column(s) 'end_s'"),
    ("tune.csv", "start_s,end_s,midi_note,end_s\n", {}, "a repeated column"),
    ("tune.csv", NOTE_HEADER, {}, "the melody is empty: the note list has no notes"),
    ("tune.csv", NOTE_HEADER + "0,0.005,60\n", {}, "every note is shorter than 10 ms"),
    ("tune.csv", NOTE_HEADER + "0,1,60\n1,2\n", {}, "tune.csv line 3: 2 values for 3 columns"),
    (
        "tune.csv",
        NOTE_HEADER + "0,1,60\n1,1.5,62\n1.5,1.2,64\n",
        {},
        "tune.csv line 4: end_s=1.2 is not after start_s=1.5; each note needs end_s > start_s",
    ),
    ("tune.csv", NOTE_HEADER + "0,1,60\n1,1,62\n", {}, "line 3: end_s=1.0 is not after start_s=1.0"),
    ("tune.csv", NOTE_HEADER + "-0.5,1,60\n", {}, "line 2: start_s=-0.5 is negative"),
    ("tune.csv", NOTE_HEADER + "0,1,128\n", {}, "line 2: midi_note=128.0 is outside the MIDI range 0..127"),
    ("tune.csv", NOTE_HEADER + "0,1,-1\n", {}, "midi_note=-1.0 is outside the MIDI range 0..127"),
    (
        "tune.csv",
        "start_s,end_s,midi_note,velocity\n0,1,60,0\n",
        {},
        "velocity=0 is not a whole number in 1..127",
    ),
    ("tune.csv", "start_s,end_s,midi_note,velocity\n0,1,60,128\n", {}, "velocity=128 is not a whole number"),
    (
        "tune.csv",
        "start_s,end_s,midi_note,velocity\n0,1,60,64.5\n",
        {},
        "velocity='64.5' is not a whole number",
    ),
    ("tune.csv", NOTE_HEADER + "nan,1,60\n", {}, "line 2: start_s=nan is not a finite number"),
    ("tune.csv", NOTE_HEADER + "0,inf,60\n", {}, "end_s=inf is not a finite number"),
    ("tune.csv", NOTE_HEADER + "0,1,C4\n", {}, "line 2: midi_note='C4' is not a number"),
    ("tune.csv", b"\xff\xfe\x00s\x00t", {}, "tune.csv: cannot be read as UTF-8 text"),
    ("tune.json", "{notes: []", {}, "tune.json: not valid JSON"),
    ("tune.json", "[]", {}, "the melody is empty"),
    ("tune.json", '"notes"', {}, "expected a list of notes"),
    ("tune.json", '{"notes": [], "tempo": 90}', {}, "top-level keys ['notes', 'tempo']"),
    ("tune.json", "[[0, 1, 60]]", {}, "tune.json note #1: expected an object"),
    (
        "tune.json",
        '[{"start_s": 0, "end_s": 1, "midi_note": 60, "pitch": 3}]',
        {},
        "note #1: unknown key(s) 'pitch'; allowed keys: start_s, end_s, midi_note (required), velocity, "
        "lyric (optional)",
    ),
    (
        "tune.json",
        '[{"start_s": NaN, "end_s": 1, "midi_note": 60}]',
        {},
        "start_s=nan is not a finite number",
    ),
    ("tune.json", '[{"start_s": 0, "end_s": 1, "midi_note": true}]', {}, "midi_note=True is not a number"),
    ("tune.json", '[{"start_s": 0, "end_s": 1, "midi_note": 60, "velocity": 300}]', {}, "velocity=300"),
    (
        "tune.csv",
        NOTE_HEADER + "0,1,60\n",
        {"transpose_semitones": math.nan},
        "transpose_semitones=nan is not a",
    ),
    (
        "tune.csv",
        NOTE_HEADER + "0,1,60\n",
        {"transpose_semitones": math.inf},
        "transpose_semitones=inf is not a",
    ),
    (
        "tune.csv",
        high_csv,
        {"transpose_semitones": 12},
        "transpose_semitones=12 moves notes 60..120 to 72..132, outside MIDI 0..127; use a transpose between -60 and 7",
    ),
    ("tune.csv", high_csv, {"transpose_semitones": -61}, "outside MIDI 0..127"),
    ("tune.csv", NOTE_HEADER + "0,1,60\n", {"tempo_factor": 0}, "tempo_factor=0 must be a finite number > 0"),
    ("tune.csv", NOTE_HEADER + "0,1,60\n", {"tempo_factor": -2.0}, "tempo_factor=-2.0 must be"),
    ("tune.csv", NOTE_HEADER + "0,1,60\n", {"tempo_factor": math.nan}, "tempo_factor=nan must be"),
    ("tune.csv", NOTE_HEADER + "0,1,60\n", {"tempo_factor": math.inf}, "tempo_factor=inf must be"),
]


@pytest.mark.parametrize(
    "name, content, kwargs, match",
    BAD_INPUTS,
    ids=[f"{case[0]}-{index}" for index, case in enumerate(BAD_INPUTS)],
)
def test_load_melody_rejects_bad_input(tmp_path, name, content, kwargs, match):
    path = tmp_path / name
    if content == "DIR":
        path.mkdir()
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        content(path)
    with pytest.raises(MelodyError, match=re.escape(match)) as excinfo:
        load_melody(path, **kwargs)
    message = str(excinfo.value)
    assert message.startswith(str(path)), message  # names the file first
    assert "\n" not in message


# ---------------------------------------------------------------- cross-check with music21

MUSIC21_SCORES = [
    # (corpus work, number in an opus, format written, tempo marks inserted: (measure index, beat, bpm))
    ("bach/bwv66.6", None, "musicxml", ()),
    ("essenFolksong/altdeu10", 1, "mxl", ()),
    ("essenFolksong/ballad10", 1, "musicxml", ((3, 0.0, 72), (6, 1.0, 150))),
]


@pytest.mark.parametrize("work, number, fmt, tempo_marks", MUSIC21_SCORES, ids=[s[0] for s in MUSIC21_SCORES])
def test_parse_musicxml_matches_music21(tmp_path, work, number, fmt, tempo_marks):
    music21 = pytest.importorskip("music21", reason="music21 is a dev extra: pip install -e '.[dev]'")
    score = music21.corpus.parse(work, number=number) if number else music21.corpus.parse(work)
    measures = score.parts[0].getElementsByClass("Measure")
    for measure_index, beat, bpm in tempo_marks:
        measures[measure_index].insert(beat, music21.tempo.MetronomeMark(number=bpm))
    path = Path(score.write(fmt, fp=tmp_path / f"score.{fmt}"))

    reread = music21.converter.parse(path).parts[0].flatten().stripTies()
    expected = [
        (entry["offsetSeconds"], entry["durationSeconds"], entry["element"].pitch.ps)
        for entry in reread.secondsMap
        if isinstance(entry["element"], music21.note.Note)
    ]
    got = [(note.start_s, note.duration_s, note.midi_note) for note in parse_musicxml(path).notes]

    assert len(got) == len(expected) > 20
    for index, ((start_s, duration_s, pitch), (want_start_s, want_duration_s, want_pitch)) in enumerate(
        zip(got, expected, strict=True)
    ):
        assert pitch == want_pitch, f"note {index}"
        assert start_s == pytest.approx(want_start_s, abs=1e-3), f"note {index}"
        assert duration_s == pytest.approx(want_duration_s, abs=1e-3), f"note {index}"

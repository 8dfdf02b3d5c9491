"""MusicXML melodies: read a .musicxml/.xml score or a compressed .mxl archive into a `Melody`.

The first part with pitched notes is used; ties are merged; grace notes, cue notes and unpitched
percussion are skipped; each note keeps the syllable of its first ``<lyric>`` line (``Note.lyric``); times come from ``<sound tempo>`` (120 quarter notes per minute until the
first one); positions are counted exactly in quarter notes (`Fraction`) and become seconds
only at the end. Every bad score raises `MelodyError` with one line naming the file, the part
and measure, the value and what is allowed. A score (or the score entry of an .mxl archive,
decompressed a piece at a time) may have at most ``MAX_MELODY_BYTES`` bytes and ``MAX_NOTES`` notes.

`parse_musicxml` is re-exported by :mod:`.melody`, whose `load_melody` calls `_parse_musicxml`
for .musicxml, .xml and .mxl files.
"""

from __future__ import annotations

import bisect
import math
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .errors import MelodyError
from .notes import (
    DEFAULT_VELOCITY,
    Melody,
    PathLike,
    _build_note,
    _check_file,
    _check_note_count,
    _check_size,
    _finish,
    _read_limited,
)

DEFAULT_TEMPO_BPM = 120.0  # MusicXML tempo, quarter notes per minute, before any <sound tempo>
_ENTRY_PIECE_BYTES = 1 << 20  # an .mxl entry is decompressed this much at a time
_STEP_SEMITONES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def parse_musicxml(path: PathLike) -> Melody:
    """Read MusicXML (.musicxml/.xml, or compressed .mxl) with its first part that has pitched notes.

    Reads <divisions>, <duration>, <rest/>, <chord/>, <backup>, <forward>, <tie> (tied notes merge
    into one), <pitch> with <alter> (fractional alters give fractional MIDI notes) and every
    <sound tempo> of every part (120 quarter notes per minute before the first). Grace and cue notes
    and unpitched percussion are skipped; voices and chords are reduced by `to_monophonic`. Velocity
    comes from <sound dynamics> or <note dynamics> (percent of forte, 90), else 100. Repeats are not
    expanded.

    Args:
        path: the .musicxml, .xml or .mxl file.

    Returns:
        The melody after `to_monophonic`, `source` set to `path`.

    Raises:
        MelodyError: missing or corrupt file, malformed elements, or no pitched notes in any part.
    """
    source, file = _check_file(path)
    return _parse_musicxml(file, source)


def _parse_xml(data: bytes, where: str) -> ET.Element:
    try:
        return ET.fromstring(data)
    except (ET.ParseError, LookupError, ValueError) as exc:  # LookupError: unknown encoding
        raise MelodyError(
            f"{where}: not well-formed XML ({exc}); export the score as MusicXML again"
        ) from exc


def _read_mxl(file: Path, source: str) -> ET.Element:
    try:
        with zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
            if "META-INF/container.xml" not in names:
                raise MelodyError(
                    f"{source}: compressed MusicXML has no META-INF/container.xml naming "
                    "the score; export it as .mxl again or unzip it to .musicxml"
                )
            container = _parse_xml(_read_entry(archive, "META-INF/container.xml", source),
                                   f"{source} META-INF/container.xml")
            rootfiles = [
                e for e in container.iter() if e.tag.rsplit("}", 1)[-1] == "rootfile" and e.get("full-path")
            ]
            scores = [e for e in rootfiles if "musicxml" in e.get("media-type", "musicxml")] or rootfiles
            if not scores:
                raise MelodyError(
                    f"{source}: META-INF/container.xml names no <rootfile full-path=...>; "
                    "export it as .mxl again"
                )
            name = scores[0].get("full-path", "")
            if name not in names:
                raise MelodyError(
                    f"{source}: META-INF/container.xml names {name!r}, which is not in the archive"
                )
            data = _read_entry(archive, name, source)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError,
            UnicodeDecodeError) as exc:   # a member name flagged UTF-8 that is not
        raise MelodyError(
            f"{source}: not a readable compressed MusicXML (.mxl) zip ({exc}); export it again"
        ) from exc
    return _parse_xml(data, f"{source} {name}")


def _read_entry(archive: zipfile.ZipFile, name: str, source: str) -> bytes:
    """One archive entry, decompressed a piece at a time and refused once it passes
    `MAX_MELODY_BYTES` (whatever size the archive declares: a zip bomb stops there)."""
    _check_size(archive.getinfo(name).file_size, source, f"entry {name!r} (decompressed)")
    pieces: list[bytes] = []
    size = 0
    with archive.open(name) as entry:
        while piece := entry.read(_ENTRY_PIECE_BYTES):
            size += len(piece)
            _check_size(size, source, f"entry {name!r} (decompressed)")
            pieces.append(piece)
    return b"".join(pieces)


def _parse_musicxml(file: Path, source: str) -> Melody:
    if file.suffix.lower() == ".mxl" or zipfile.is_zipfile(file):
        root = _read_mxl(file, source)
    else:
        root = _parse_xml(_read_limited(file, source), source)
    parts: dict[str, list[tuple[str, ET.Element]]] = {}  # part id -> (measure number, music data)
    if root.tag == "score-partwise":
        for index, part in enumerate(root.findall("part")):
            measures = parts.setdefault(part.get("id", f"#{index + 1}"), [])
            measures.extend((m.get("number", "?"), m) for m in part.findall("measure"))
    elif root.tag == "score-timewise":
        for measure in root.findall("measure"):
            for index, part in enumerate(measure.findall("part")):
                parts.setdefault(part.get("id", f"#{index + 1}"), []).append(
                    (measure.get("number", "?"), part)
                )
    else:
        raise MelodyError(
            f"{source}: root element <{root.tag}> is not a MusicXML score; "
            "expected <score-partwise> or <score-timewise>"
        )
    tempos: list[tuple[Fraction, float]] = []
    walked = [
        _walk_part(f"{source} part {part_id!r}", measures, tempos) for part_id, measures in parts.items()
    ]
    chosen = next((notes for notes in walked if notes), [])
    to_seconds = _seconds_map(tempos)
    melody_notes = [
        _build_note(n.where, to_seconds(n.start_q), to_seconds(n.end_q), n.midi_note, n.velocity, n.lyric)
        for n in chosen
    ]
    return _finish(
        melody_notes,
        source,
        "no pitched notes in any part (rests, grace notes, cue notes and unpitched percussion do not count)",
    )


def _xml_number(text: str | None, what: str, where: str, *, allow: str) -> Fraction:
    """Parse a decimal MusicXML number exactly; `allow` is "positive", "non-negative" or "any"."""
    try:
        value: Fraction | None = Fraction((text or "").strip())
    except (ValueError, ZeroDivisionError):
        value = None
    if value is None or (allow == "positive" and value <= 0) or (allow == "non-negative" and value < 0):
        allowed = {"positive": "a number > 0", "non-negative": "a number >= 0"}.get(allow, "a number")
        raise MelodyError(f"{where}: {what}={text!r} is not {allowed}")
    return value


def _quarters(element: ET.Element, divisions: Fraction | None, where: str) -> Fraction:
    text = element.findtext("duration")
    if text is None:
        raise MelodyError(f"{where}: <{element.tag}> has no <duration>; every non-grace note needs one")
    if divisions is None:
        raise MelodyError(
            f"{where}: <duration> comes before any <attributes><divisions>; "
            "add <divisions> to the first measure"
        )
    return _xml_number(text, "<duration>", where, allow="non-negative") / divisions


def _midi_from_pitch(pitch: ET.Element, where: str) -> float:
    step = (pitch.findtext("step") or "").strip()
    if step not in _STEP_SEMITONES:
        raise MelodyError(f"{where}: <step>{step!r} is not a note name; use one of A B C D E F G")
    try:
        octave = int((pitch.findtext("octave") or "").strip())
        alter = float((pitch.findtext("alter") or "0").strip())
    except ValueError as exc:
        raise MelodyError(
            f"{where}: <pitch> needs an integer <octave> and a numeric <alter> ({exc})"
        ) from exc
    if not math.isfinite(alter):
        raise MelodyError(f"{where}: <alter>={alter!r} is not a finite number of semitones")
    return (octave + 1) * 12 + _STEP_SEMITONES[step] + alter


def _velocity(percent: str, where: str) -> int:
    value = _xml_number(percent, "dynamics", where, allow="non-negative")
    return min(127, max(1, round(value * 90 / 100)))


@dataclass
class _ScoreNote:
    """A MusicXML note while its part is read; positions in quarter notes from the part's start."""

    start_q: Fraction
    end_q: Fraction
    midi_note: float
    velocity: int
    where: str
    lyric: str | None = None


def _walk_part(
    where_part: str, measures: list[tuple[str, ET.Element]], tempos: list[tuple[Fraction, float]]
) -> list[_ScoreNote]:
    """Collect the pitched notes of one part, ties merged; append its tempo changes to `tempos`."""
    notes: list[_ScoreNote] = []
    open_ties: dict[tuple[str, float], _ScoreNote] = {}  # (voice, midi) -> note whose tie goes on
    divisions: Fraction | None = None
    velocity = DEFAULT_VELOCITY
    measure_start = Fraction(0)
    for number, measure in measures:
        where = f"{where_part} measure {number}"
        cursor = chord_start = measure_end = measure_start
        for element in measure:
            sounds = [element] if element.tag == "sound" else element.findall(".//sound")
            if sounds:  # <sound> anywhere: a measure child, inside <direction>, ...
                at = cursor
                offset = element.find("offset")
                if offset is not None and offset.get("sound") == "yes" and divisions is not None:
                    shift = _xml_number(offset.text, "<offset>", where, allow="any") / divisions
                    at = max(measure_start, cursor + shift)
                velocity = _read_sounds(sounds, at, velocity, tempos, where)
            if element.tag == "attributes" and element.find("divisions") is not None:
                divisions = _xml_number(element.findtext("divisions"), "<divisions>", where, allow="positive")
            elif element.tag in ("backup", "forward"):
                step = _quarters(element, divisions, where)
                cursor = cursor + step if element.tag == "forward" else max(measure_start, cursor - step)
            elif element.tag == "note" and element.find("grace") is None:
                duration = _quarters(element, divisions, where)
                if element.find("chord") is None:
                    chord_start, cursor = cursor, cursor + duration
                pitch = element.find("pitch")
                if pitch is not None and element.find("cue") is None and duration > 0:
                    _check_note_count(len(notes) + 1, where_part)
                    _add_xml_note(
                        notes,
                        open_ties,
                        element,
                        chord_start,
                        duration,
                        _midi_from_pitch(pitch, where),
                        velocity,
                        where,
                    )
            measure_end = max(measure_end, cursor)
        measure_start = measure_end
    return notes


def _read_sounds(
    sounds: list[ET.Element], at: Fraction, velocity: int, tempos: list[tuple[Fraction, float]], where: str
) -> int:
    """Append the tempo changes of these <sound> elements at `at`; return the velocity they set."""
    for sound in sounds:
        if sound.get("tempo") is not None:
            tempos.append(
                (at, float(_xml_number(sound.get("tempo"), "<sound tempo>", where, allow="positive")))
            )
        if sound.get("dynamics") is not None:
            velocity = _velocity(sound.get("dynamics", ""), where)
    return velocity


def _add_xml_note(
    notes: list[_ScoreNote],
    open_ties: dict[tuple[str, float], _ScoreNote],
    element: ET.Element,
    start: Fraction,
    duration: Fraction,
    midi: float,
    velocity: int,
    where: str,
) -> None:
    if element.get("dynamics") is not None:
        velocity = _velocity(element.get("dynamics", ""), where)
    ties = {tie.get("type") for tie in element.findall("tie")}
    ties |= {tie.get("type") for tie in element.findall("notations/tied")}
    key = ((element.findtext("voice") or "1").strip(), midi)
    note = open_ties.pop(key, None)
    if note is not None and note.end_q == start:
        note.end_q = start + duration  # tied on: lengthen the note the tie started from
    else:
        note = _ScoreNote(start, start + duration, midi, velocity, where, _lyric(element))
        notes.append(note)
    if "start" in ties or "continue" in ties:
        open_ties[key] = note


def _lyric(note: ET.Element) -> str | None:
    """The syllable of a note's first lyric line (``<lyric><text>``); None without one, or for an
    ``<extend/>`` alone (the previous syllable held on: a melisma)."""
    lyrics = note.findall("lyric")
    if not lyrics:
        return None
    first = min(lyrics, key=lambda lyric: str(lyric.get("number", "1")))
    text = "".join(part.text or "" for part in first.findall("text")).strip()
    return text[:64] or None


def _seconds_map(tempos: list[tuple[Fraction, float]]) -> Callable[[Fraction], float]:
    """Return a function from a position in quarter notes to seconds under these tempo changes."""
    points: list[tuple[Fraction, float, float]] = [(Fraction(0), 0.0, 60.0 / DEFAULT_TEMPO_BPM)]
    for at, bpm in sorted(tempos, key=lambda change: change[0]):
        start, start_s, seconds_per_quarter = points[-1]
        if at == start:
            points[-1] = (start, start_s, 60.0 / bpm)
        else:
            points.append((at, start_s + float(at - start) * seconds_per_quarter, 60.0 / bpm))
    starts = [point[0] for point in points]

    def to_seconds(position: Fraction) -> float:
        start, start_s, seconds_per_quarter = points[max(0, bisect.bisect_right(starts, position) - 1)]
        return start_s + float(position - start) * seconds_per_quarter

    return to_seconds

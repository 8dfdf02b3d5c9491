"""Target melodies for speech-to-singing: read a tune from MIDI, MusicXML or a note list.

A `Melody` is a tuple of monophonic `Note`s with times in seconds from the start of the file's
timeline (so leading rests count). `load_melody` picks the parser from the file extension, then
applies the CLI's ``--transpose SEMITONES`` and ``--tempo FACTOR``:

- ``.mid``/``.midi``: all tracks merged, tempo map applied, channel 10 (drums) ignored.
- ``.musicxml``/``.xml``/``.mxl``: the first part with pitched notes; ties merged; grace notes
  skipped; tempo from ``<sound tempo>`` (120 quarter notes per minute until the first one).
- ``.csv``/``.json``: explicit notes with ``start_s, end_s, midi_note`` and optional ``velocity``.

Every format is reduced by `to_monophonic`. Every bad melody raises `MelodyError` with one line
naming the file, the value and what is allowed. docs/melody.md has the details.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import json
import math
import numbers
import os
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import mido

from .errors import MelodyError

PathLike = str | os.PathLike[str]

MIN_NOTE_S = 0.010  # notes shorter than this (after monophonic cutting) are dropped
DEFAULT_TEMPO_BPM = 120.0  # MusicXML tempo, quarter notes per minute, before any <sound tempo>
DEFAULT_VELOCITY = 100
DRUM_CHANNEL = 9  # MIDI channel 10, counted from 0 as mido does
SAME_ONSET_S = 1e-6  # notes starting closer than this form one chord
NOTE_KEYS = ("start_s", "end_s", "midi_note", "velocity")
REQUIRED_NOTE_KEYS = NOTE_KEYS[:3]
EXTENSIONS = (".mid", ".midi", ".musicxml", ".xml", ".mxl", ".csv", ".json")
_STEP_SEMITONES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def _note_problem(start_s: float, end_s: float, midi_note: float, velocity: int) -> str | None:
    """Describe what is wrong with these note values, or return None when they are valid."""
    for name, value in (("start_s", start_s), ("end_s", end_s), ("midi_note", midi_note)):
        if not math.isfinite(value):
            return f"{name}={value!r} is not a finite number; use a real number"
    if start_s < 0:
        return f"start_s={start_s!r} is negative; times are seconds from the start of the tune, >= 0"
    if end_s <= start_s:
        return f"end_s={end_s!r} is not after start_s={start_s!r}; each note needs end_s > start_s"
    if not 0 <= midi_note <= 127:
        return f"midi_note={midi_note!r} is outside the MIDI range 0..127"
    if isinstance(velocity, bool) or not isinstance(velocity, numbers.Integral) or not 1 <= velocity <= 127:
        return f"velocity={velocity!r} is not a whole number in 1..127"
    return None


@dataclass(frozen=True)
class Note:
    """One note: `start_s` <= t < `end_s` in seconds, a (possibly fractional) MIDI pitch and a velocity.

    Raises:
        MelodyError: a time is negative or not finite, end_s <= start_s, midi_note is outside
            0..127 or velocity outside 1..127.
    """

    start_s: float
    end_s: float
    midi_note: float
    velocity: int = DEFAULT_VELOCITY

    def __post_init__(self) -> None:
        problem = _note_problem(self.start_s, self.end_s, self.midi_note, self.velocity)
        if problem:
            raise MelodyError(problem)

    @property
    def duration_s(self) -> float:
        """Length of the note in seconds."""
        return self.end_s - self.start_s

    @property
    def f0_hz(self) -> float:
        """Fundamental frequency in Hz, equal temperament with A4 (MIDI 69) = 440 Hz."""
        return 440.0 * 2.0 ** ((self.midi_note - 69.0) / 12.0)


def _check_transpose(semitones: float, source: str) -> None:
    if isinstance(semitones, bool) or not math.isfinite(semitones):
        raise MelodyError(
            f"{source}: transpose_semitones={semitones!r} is not a finite number; "
            "use semitones such as -2 or 3.5"
        )


def _check_tempo_factor(factor: float, source: str) -> None:
    if isinstance(factor, bool) or not math.isfinite(factor) or factor <= 0:
        raise MelodyError(
            f"{source}: tempo_factor={factor!r} must be a finite number > 0 "
            "(2.0 plays twice as fast, 0.5 half as fast)"
        )


@dataclass(frozen=True)
class Melody:
    """A monophonic tune: `notes` sorted by start and non-overlapping; `source` names it in messages.

    Raises:
        MelodyError: there are no notes, or two notes overlap or are out of order
            (pass them through `to_monophonic` first).
    """

    notes: tuple[Note, ...]
    source: str
    _starts: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        notes = tuple(self.notes)
        object.__setattr__(self, "notes", notes)
        if not notes:
            raise MelodyError(f"{self.source}: the melody has no notes; it needs at least one")
        for index, (earlier, later) in enumerate(itertools.pairwise(notes)):
            if later.start_s < earlier.end_s:
                raise MelodyError(
                    f"{self.source}: note {index + 1} starts at {later.start_s!r} s, before note {index} "
                    f"ends at {earlier.end_s!r} s; notes must be sorted and non-overlapping (use to_monophonic)"
                )
        object.__setattr__(self, "_starts", tuple(note.start_s for note in notes))

    @property
    def span_s(self) -> float:
        """End of the last note in seconds, counted from time 0 (leading rests included)."""
        return self.notes[-1].end_s

    def transposed(self, semitones: float) -> Melody:
        """Return the melody shifted by `semitones` (fractions allowed).

        Raises:
            MelodyError: `semitones` is not finite, or a note would leave MIDI 0..127.
        """
        _check_transpose(semitones, self.source)
        if semitones == 0:
            return self
        low = min(note.midi_note for note in self.notes)
        high = max(note.midi_note for note in self.notes)
        if low + semitones < 0 or high + semitones > 127:
            raise MelodyError(
                f"{self.source}: transpose_semitones={semitones!r} moves notes {low:g}..{high:g} to "
                f"{low + semitones:g}..{high + semitones:g}, outside MIDI 0..127; "
                f"use a transpose between {-low:g} and {127 - high:g}"
            )
        notes = tuple(replace(note, midi_note=note.midi_note + semitones) for note in self.notes)
        return Melody(notes, self.source)

    def with_tempo(self, factor: float) -> Melody:
        """Return the melody played `factor` times as fast: every time is divided by `factor`.

        Raises:
            MelodyError: `factor` is not a finite number > 0.
        """
        _check_tempo_factor(factor, self.source)
        if factor == 1:
            return self
        notes = tuple(
            replace(note, start_s=note.start_s / factor, end_s=note.end_s / factor) for note in self.notes
        )
        return Melody(notes, self.source)

    def note_at(self, time_s: float) -> Note | None:
        """Return the note sounding at `time_s` (start inclusive, end exclusive), None in rests.

        Raises:
            ValueError: `time_s` is NaN.
        """
        if math.isnan(time_s):
            raise ValueError(f"time_s={time_s!r} is not a number; use seconds from the start of the melody")
        index = bisect.bisect_right(self._starts, time_s) - 1
        if index >= 0 and time_s < self.notes[index].end_s:
            return self.notes[index]
        return None


def to_monophonic(notes: Iterable[Note]) -> tuple[Note, ...]:
    """Reduce notes to one line, as a monophonic synth with last-onset priority would play them.

    Rules, in order: notes shorter than `MIN_NOTE_S` (10 ms) are dropped first, so they never cut
    another note; notes are sorted by start; of notes starting together (within `SAME_ONSET_S`, a
    chord) the highest is kept (the longer one on a tie); a note still sounding when the next note
    starts is cut at that start; notes left shorter than 10 ms by the cut are dropped.

    Returns:
        The notes sorted by start and non-overlapping, possibly empty.
    """
    ordered = sorted(
        (note for note in notes if note.duration_s >= MIN_NOTE_S - 1e-9), key=lambda note: note.start_s
    )
    kept: list[Note] = []
    first = 0
    while first < len(ordered):
        last = first + 1
        while last < len(ordered) and ordered[last].start_s - ordered[first].start_s <= SAME_ONSET_S:
            last += 1
        kept.append(max(ordered[first:last], key=lambda note: (note.midi_note, note.end_s)))
        first = last
    result: list[Note] = []
    for index, note in enumerate(kept):
        end_s = note.end_s if index + 1 == len(kept) else min(note.end_s, kept[index + 1].start_s)
        if end_s - note.start_s >= MIN_NOTE_S - 1e-9:
            result.append(note if end_s == note.end_s else replace(note, end_s=end_s))
    return tuple(result)


def _build_note(where: str, start_s: float, end_s: float, midi_note: float, velocity: int) -> Note:
    problem = _note_problem(start_s, end_s, midi_note, velocity)
    if problem:
        raise MelodyError(f"{where}: {problem}")
    return Note(start_s, end_s, midi_note, velocity)


def _finish(notes: list[Note], source: str, why_empty: str) -> Melody:
    if not notes:
        raise MelodyError(f"{source}: the melody is empty: {why_empty}")
    mono = to_monophonic(notes)
    if not mono:
        raise MelodyError(
            f"{source}: the melody is empty: every note is shorter than "
            f"{MIN_NOTE_S * 1000:g} ms; a melody needs at least one longer note"
        )
    return Melody(mono, source)


def _check_file(path: PathLike) -> tuple[str, Path]:
    source = os.fspath(path)
    file = Path(source)
    if file.is_dir():
        raise MelodyError(f"{source}: is a directory; pass a melody file ({', '.join(EXTENSIONS)})")
    if not file.exists():
        raise MelodyError(f"{source}: melody file not found; check the path")
    return source, file


def load_melody(path: PathLike, *, transpose_semitones: float = 0.0, tempo_factor: float = 1.0) -> Melody:
    """Read a melody file chosen by extension, then transpose it and change its tempo.

    Args:
        path: a .mid, .midi, .musicxml, .xml, .mxl, .csv or .json file.
        transpose_semitones: pitch shift in semitones, fractions allowed (CLI ``--transpose``).
        tempo_factor: speed factor; 2.0 plays twice as fast (CLI ``--tempo``).

    Returns:
        The monophonic melody, `source` set to `path`.

    Raises:
        MelodyError: bad arguments, or the file is missing, of an unknown type, unreadable, empty or
            has invalid notes.
    """
    source = os.fspath(path)
    _check_transpose(transpose_semitones, source)
    _check_tempo_factor(tempo_factor, source)
    source, file = _check_file(path)
    extension = file.suffix.lower()
    parser = _PARSERS.get(extension)
    if parser is None:
        raise MelodyError(
            f"{source}: unknown melody file extension {extension!r}; allowed: {', '.join(EXTENSIONS)}"
        )
    return parser(file, source).transposed(transpose_semitones).with_tempo(tempo_factor)


def parse_midi(path: PathLike) -> Melody:
    """Read a standard MIDI file (type 0 or 1): all tracks merged, times in seconds via the tempo map.

    note_on with velocity 0 ends a note; a note-off ends the earliest sounding note of that key and
    channel; notes still sounding at the end of the file end there. Channel 10 (drums) is ignored.

    Args:
        path: the .mid/.midi file.

    Returns:
        The melody after `to_monophonic`, `source` set to `path`.

    Raises:
        MelodyError: missing, corrupt or type 2 file, or no notes outside channel 10.
    """
    source, file = _check_file(path)
    return _parse_midi(file, source)


def _parse_midi(file: Path, source: str) -> Melody:
    try:
        midi = mido.MidiFile(file)
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, mido.KeySignatureError) as exc:
        raise MelodyError(
            f"{source}: not a readable MIDI file ({type(exc).__name__}: {exc}); "
            "export it again as a standard MIDI file"
        ) from exc
    if midi.type == 2:
        raise MelodyError(
            f"{source}: MIDI type 2 (independent sequences) is not supported; export it as type 0 or 1"
        )
    now_s = 0.0
    sounding: dict[tuple[int, int], list[tuple[float, int]]] = {}
    notes: list[Note] = []
    for msg in midi:  # tracks merged; msg.time is seconds since the previous message
        now_s += msg.time
        if msg.type not in ("note_on", "note_off") or msg.channel == DRUM_CHANNEL:
            continue
        key = (msg.channel, msg.note)
        if msg.type == "note_on" and msg.velocity > 0:
            sounding.setdefault(key, []).append((now_s, msg.velocity))
        elif sounding.get(key):
            start_s, velocity = sounding[key].pop(0)
            if now_s > start_s:
                notes.append(Note(start_s, now_s, float(msg.note), velocity))
    for (_, pitch), starts in sounding.items():
        notes.extend(
            Note(start_s, now_s, float(pitch), velocity) for start_s, velocity in starts if now_s > start_s
        )
    return _finish(notes, source, "no notes outside the percussion channel 10")


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
            container = _parse_xml(archive.read("META-INF/container.xml"), f"{source} META-INF/container.xml")
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
            data = archive.read(name)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise MelodyError(
            f"{source}: not a readable compressed MusicXML (.mxl) zip ({exc}); export it again"
        ) from exc
    return _parse_xml(data, f"{source} {name}")


def _parse_musicxml(file: Path, source: str) -> Melody:
    if file.suffix.lower() == ".mxl" or zipfile.is_zipfile(file):
        root = _read_mxl(file, source)
    else:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise MelodyError(f"{source}: cannot be read ({exc})") from exc
        root = _parse_xml(data, source)
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
        _build_note(n.where, to_seconds(n.start_q), to_seconds(n.end_q), n.midi_note, n.velocity)
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
        note = _ScoreNote(start, start + duration, midi, velocity, where)
        notes.append(note)
    if "start" in ties or "continue" in ties:
        open_ties[key] = note


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


def parse_note_list(path: PathLike) -> Melody:
    """Read notes from .csv (header row required) or .json (a list of objects, or {"notes": [...]}).

    Columns/keys: start_s, end_s, midi_note (required) and velocity (optional, default 100), in any
    order. Overlapping or unsorted notes are reduced by `to_monophonic`.

    Args:
        path: the .csv or .json file.

    Returns:
        The melody after `to_monophonic`, `source` set to `path`.

    Raises:
        MelodyError: missing or unreadable file, unknown or missing columns/keys, values that are not
            numbers, or invalid notes (the message gives the line or note number).
    """
    source, file = _check_file(path)
    return _parse_note_list(file, source)


def _parse_note_list(file: Path, source: str) -> Melody:
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MelodyError(f"{source}: cannot be read as UTF-8 text ({exc})") from exc
    rows = _json_rows(text, source) if file.suffix.lower() == ".json" else _csv_rows(text, source)
    notes = [_note_from_row(row, where) for where, row in rows]
    return _finish(notes, source, "the note list has no notes")


def _check_keys(keys: list[str], where: str, kind: str) -> None:
    unknown = [key for key in keys if key not in NOTE_KEYS]
    missing = [key for key in REQUIRED_NOTE_KEYS if key not in keys]
    problems = [f"unknown {kind}(s) {', '.join(map(repr, unknown))}"] if unknown else []
    problems += [f"missing {kind}(s) {', '.join(map(repr, missing))}"] if missing else []
    problems += [f"a repeated {kind} in {', '.join(keys)}"] if len(set(keys)) != len(keys) else []
    if problems:
        problem = ", ".join(problems)
        raise MelodyError(
            f"{where}: {problem}; allowed {kind}s: start_s, end_s, midi_note (required), velocity (optional)"
        )


def _csv_rows(text: str, source: str) -> list[tuple[str, dict[str, object]]]:
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    rows: list[tuple[str, dict[str, object]]] = []
    try:
        for cells in reader:
            where = f"{source} line {reader.line_num}"
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = [cell.strip() for cell in cells]
                if all(_is_number(cell) for cell in header):
                    raise MelodyError(
                        f"{where}: no header row; the first line must name the columns, "
                        "e.g. start_s,end_s,midi_note,velocity"
                    )
                _check_keys(header, where, "column")
            elif len(cells) != len(header):
                raise MelodyError(
                    f"{where}: {len(cells)} values for {len(header)} columns ({','.join(header)})"
                )
            else:
                rows.append(
                    (
                        where,
                        {
                            key: cell.strip()
                            for key, cell in zip(header, cells, strict=True)
                            if key != "velocity" or cell.strip()
                        },
                    )
                )
    except csv.Error as exc:
        raise MelodyError(f"{source} line {reader.line_num}: malformed CSV ({exc})") from exc
    if header is None:
        raise MelodyError(
            f"{source}: the file is empty; it needs a header row start_s,end_s,midi_note[,velocity] "
            "and one row per note"
        )
    return rows


def _json_rows(text: str, source: str) -> list[tuple[str, dict[str, object]]]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MelodyError(f"{source}: not valid JSON ({exc})") from exc
    if isinstance(data, dict):
        extra = sorted(set(data) - {"notes"})
        if extra or "notes" not in data:
            raise MelodyError(
                f"{source}: top-level keys {sorted(data)!r}; a JSON melody object has exactly "
                "one key, 'notes' (or use a plain list of notes)"
            )
        data = data["notes"]
    if not isinstance(data, list):
        raise MelodyError(
            f'{source}: expected a list of notes or {{"notes": [...]}}, got {type(data).__name__}'
        )
    rows: list[tuple[str, dict[str, object]]] = []
    for index, item in enumerate(data):
        where = f"{source} note #{index + 1}"
        if not isinstance(item, dict):
            raise MelodyError(f"{where}: expected an object with start_s, end_s, midi_note, got {item!r}")
        _check_keys(list(item), where, "key")
        rows.append((where, item))
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _row_number(row: dict[str, object], key: str, where: str) -> float:
    value = row[key]
    if isinstance(value, str) and _is_number(value):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MelodyError(f"{where}: {key}={value!r} is not a number")
    try:
        return float(value)
    except OverflowError:  # a JSON integer beyond the float range
        return math.inf


def _note_from_row(row: dict[str, object], where: str) -> Note:
    start_s, end_s, midi_note = (_row_number(row, key, where) for key in REQUIRED_NOTE_KEYS)
    velocity = DEFAULT_VELOCITY
    if "velocity" in row:
        value = _row_number(row, "velocity", where)
        if not value.is_integer():
            raise MelodyError(f"{where}: velocity={row['velocity']!r} is not a whole number in 1..127")
        velocity = int(value)
    return _build_note(where, start_s, end_s, midi_note, velocity)


_PARSERS: dict[str, Callable[[Path, str], Melody]] = {
    ".mid": _parse_midi,
    ".midi": _parse_midi,
    ".musicxml": _parse_musicxml,
    ".xml": _parse_musicxml,
    ".mxl": _parse_musicxml,
    ".csv": _parse_note_list,
    ".json": _parse_note_list,
}

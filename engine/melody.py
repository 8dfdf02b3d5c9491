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

The pieces live in sibling modules; this one is the public front and re-exports them all:
`Note`, `Melody` and `to_monophonic` come from :mod:`.notes`, `parse_musicxml` from
:mod:`.musicxml`, `parse_note_list` from :mod:`.note_list`; the MIDI reader and `load_melody`
are here.
"""

from __future__ import annotations

import bisect
import io
import math
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import mido

from .errors import MelodyError, OptionError
from .musicxml import DEFAULT_TEMPO_BPM, _parse_musicxml, parse_musicxml
from .note_list import NOTE_KEYS, REQUIRED_NOTE_KEYS, _parse_note_list, parse_note_list
from .notes import (
    AUDIO_EXTENSIONS,
    DEFAULT_VELOCITY,
    EXTENSIONS,
    MAX_MELODY_BYTES,
    MAX_NOTES,
    MIN_NOTE_S,
    SAME_ONSET_S,
    TEMPO_FACTOR_RANGE,
    Melody,
    Note,
    PathLike,
    SungPitch,
    _check_file,
    _check_note_count,
    _check_tempo_factor,
    _check_transpose,
    _finish,
    _read_limited,
    to_monophonic,
)

__all__ = [
    "DEFAULT_TEMPO_BPM",
    "DEFAULT_VELOCITY",
    "DRUM_CHANNEL",
    "EXTENSIONS",
    "MAX_MELODY_BYTES",
    "MAX_NOTES",
    "MIN_NOTE_S",
    "NOTE_KEYS",
    "REQUIRED_NOTE_KEYS",
    "SAME_ONSET_S",
    "TEMPO_FACTOR_RANGE",
    "Melody",
    "Note",
    "PathLike",
    "SungPitch",
    "check_melody_end",
    "is_recording",
    "load_melody",
    "parse_midi",
    "parse_musicxml",
    "parse_note_list",
    "to_monophonic",
]

DRUM_CHANNEL = 9  # MIDI channel 10, counted from 0 as mido does


def is_recording(path: PathLike) -> bool:
    """Whether ``load_melody`` would read ``path`` as a sung recording (by its extension)."""
    return Path(os.fspath(path)).suffix.lower() in AUDIO_EXTENSIONS


def load_melody(path: PathLike, *, transpose_semitones: float = 0.0, tempo_factor: float = 1.0,
                max_output_s: float | None = None, sung_pitch: bool = False) -> Melody:
    """Read a melody file chosen by extension, then transpose it and change its tempo.

    Args:
        path: a .mid, .midi, .musicxml, .xml, .mxl, .csv or .json file, or a sung or hummed
            recording (.wav, .flac, .ogg, .mp3, .aiff), whose notes are transcribed
            (:func:`voxflip.engine.melody_audio.transcribe_melody`: whole semitones, the singer's
            tuning removed).
        transpose_semitones: pitch shift in semitones, fractions allowed (CLI ``--transpose``).
        tempo_factor: speed factor, 0.1..10; 2.0 plays twice as fast (CLI ``--tempo``).
        max_output_s: the latest a melody may end, in seconds after ``tempo_factor`` (CLI
            ``--max-output-s``); ``None``: no limit. A recording longer than that is refused
            before it is decoded.
        sung_pitch: keep the pitch the singer of a recording actually sang (``Melody.sung``: their
            tuning, vibrato and glides) besides its notes (CLI ``--melody-pitch sung``); only for a
            recording.

    Returns:
        The monophonic melody, `source` set to `path`.

    Raises:
        MelodyError: bad arguments, or the file is missing, of an unknown type, unreadable, too
            large (``MAX_MELODY_BYTES``), empty, has more than ``MAX_NOTES`` notes or invalid notes.
        OptionError: the melody ends after ``max_output_s``.
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
    if max_output_s is not None and parser is _parse_audio:
        from .audio_io import probe

        check_melody_end(probe(file).duration_s / tempo_factor, source, max_output_s)
    if sung_pitch and parser is not _parse_audio:
        raise MelodyError(f"{source}: --melody-pitch sung follows the pitch of a sung recording "
                          f"({', '.join(AUDIO_EXTENSIONS)}); a {extension} file has only notes: use --melody-pitch notes")
    melody = (_parse_sung if sung_pitch else parser)(file, source)
    melody = melody.transposed(transpose_semitones).with_tempo(tempo_factor)
    if max_output_s is not None:
        check_melody_end(melody.span_s, source, max_output_s)
    return melody


def check_melody_end(end_s: float, source: str, max_output_s: float) -> None:
    """Refuse a melody that ends after ``max_output_s`` (the singing would be that long).

    Raises:
        OptionError: naming ``max_output_s`` (the CLI's ``--max-output-s``), the melody's end and the limit.
    """
    if end_s > max_output_s:
        raise OptionError(
            "max_output_s", max_output_s,
            f"s is the longest singing allowed, but melody {source} ends at {end_s:.1f} s (after the tempo "
            f"factor); raise it to at least {math.ceil(end_s)}, or use a shorter or faster melody",
        )


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
    data = _read_limited(file, source)
    try:
        midi = mido.MidiFile(file=io.BytesIO(data))
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
    lyrics: list[tuple[float, str]] = []
    started = 0
    for msg in midi:  # tracks merged; msg.time is seconds since the previous message
        now_s += msg.time
        if msg.type == "lyrics" and len(lyrics) < MAX_NOTES:
            text = _midi_syllable(msg.text)
            if text:
                lyrics.append((now_s, text))
            continue
        if msg.type not in ("note_on", "note_off") or msg.channel == DRUM_CHANNEL:
            continue
        key = (msg.channel, msg.note)
        if msg.type == "note_on" and msg.velocity > 0:
            started += 1
            _check_note_count(started, source)
            sounding.setdefault(key, []).append((now_s, msg.velocity))
        elif sounding.get(key):
            start_s, velocity = sounding[key].pop(0)
            if now_s > start_s:
                notes.append(Note(start_s, now_s, float(msg.note), velocity))
    for (_, pitch), starts in sounding.items():
        notes.extend(
            Note(start_s, now_s, float(pitch), velocity) for start_s, velocity in starts if now_s > start_s
        )
    return _finish(_with_lyrics(notes, lyrics), source, "no notes outside the percussion channel 10")


#: how far before or after a note's onset a MIDI lyric event may fall and still belong to it
LYRIC_ONSET_TOLERANCE_S = 0.03


def _midi_syllable(text: str) -> str:
    """A lyric event's syllable: karaoke line marks (``/``, ``\\``), hyphens and spaces stripped."""
    return text.strip().lstrip("/\\").strip().rstrip("-").strip()[:64]


def _with_lyrics(notes: list[Note], lyrics: list[tuple[float, str]]) -> list[Note]:
    """Each lyric event on the note whose onset is nearest, within ``LYRIC_ONSET_TOLERANCE_S``."""
    if not lyrics or not notes:
        return notes
    notes = sorted(notes, key=lambda note: note.start_s)
    starts = [note.start_s for note in notes]
    for at, text in lyrics:
        i = bisect.bisect_left(starts, at - LYRIC_ONSET_TOLERANCE_S)
        if i < len(notes) and abs(starts[i] - at) <= LYRIC_ONSET_TOLERANCE_S and notes[i].lyric is None:
            notes[i] = replace(notes[i], lyric=text)
    return notes


def _parse_audio(path: Path, source: str) -> Melody:
    from .melody_audio import transcribe_melody_file

    melody = transcribe_melody_file(path).melody
    return Melody(melody.notes, source)


def _parse_sung(path: Path, source: str) -> Melody:
    """A recording's notes with the pitch its singer sang (``Melody.sung``)."""
    from .melody_audio import transcribe_melody_file

    transcription = transcribe_melody_file(path)
    return Melody(transcription.melody.notes, source, transcription.sung_pitch())


_PARSERS: dict[str, Callable[[Path, str], Melody]] = {
    ".mid": _parse_midi,
    ".midi": _parse_midi,
    ".musicxml": _parse_musicxml,
    ".xml": _parse_musicxml,
    ".mxl": _parse_musicxml,
    ".csv": _parse_note_list,
    ".json": _parse_note_list,
    **{extension: _parse_audio for extension in AUDIO_EXTENSIONS},
}

"""Notes and melodies: the validated, monophonic note model that every melody reader builds.

A `Melody` is a tuple of monophonic `Note`s with times in seconds from the start of the file's
timeline (so leading rests count); `to_monophonic` reduces any notes to one line, as a monophonic
synth with last-onset priority would play them. Invalid values raise `MelodyError` with one line
naming the value and what is allowed.

The private helpers `_build_note`, `_finish` and `_check_file` are shared by the readers
(:mod:`.melody` for MIDI, :mod:`.musicxml`, :mod:`.note_list`), so every format reports problems
the same way. Import the public names from :mod:`.melody`, which re-exports them.
"""

from __future__ import annotations

import bisect
import itertools
import math
import numbers
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import MelodyError

PathLike = str | os.PathLike[str]

MIN_NOTE_S = 0.010  # notes shorter than this (after monophonic cutting) are dropped
DEFAULT_VELOCITY = 100
SAME_ONSET_S = 1e-6  # notes starting closer than this form one chord
#: the most notes a melody may have (a 3600 s tune at 16 notes a second has 57,600); readers stop past it
MAX_NOTES = 100_000
#: the largest melody file (or .mxl score entry, decompressed) a reader takes, in bytes
MAX_MELODY_BYTES = 32 * 1024 * 1024
#: how much faster (or slower) ``tempo_factor`` may play a melody
TEMPO_FACTOR_RANGE = (0.1, 10.0)
#: a sung or hummed reference, transcribed to notes (engine/melody_audio.py)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")
EXTENSIONS = (".mid", ".midi", ".musicxml", ".xml", ".mxl", ".csv", ".json", *AUDIO_EXTENSIONS)


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
    #: the lyric syllable the score sets on this note (MusicXML ``<lyric>``, MIDI lyric events); None:
    #: none, which in a melody that has lyrics means the note goes on singing the previous syllable
    lyric: str | None = None

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
    lo, hi = TEMPO_FACTOR_RANGE
    if isinstance(factor, bool) or not math.isfinite(factor) or not lo <= factor <= hi:
        raise MelodyError(
            f"{source}: tempo_factor={factor!r} must be a finite number > 0, within {lo:g}..{hi:g} "
            "(2.0 plays twice as fast, 0.5 half as fast)"
        )


def _check_note_count(count: int, source: str) -> None:
    """Raise once a reader has found more than `MAX_NOTES` notes (it stops reading there)."""
    if count > MAX_NOTES:
        raise MelodyError(
            f"{source}: more than {MAX_NOTES:,} notes; a melody may have at most {MAX_NOTES:,} "
            "(split the tune into shorter files)"
        )


def _check_size(size: int, source: str, what: str = "the file") -> None:
    if size > MAX_MELODY_BYTES:
        raise MelodyError(
            f"{source}: {what} is {size:,} bytes, more than the {MAX_MELODY_BYTES // (1024 * 1024)} MiB a melody "
            "file may have; split the tune into shorter files"
        )


def _read_limited(file: Path, source: str) -> bytes:
    """The bytes of a melody file, refused before reading when it is larger than `MAX_MELODY_BYTES`."""
    try:
        with file.open("rb") as handle:
            _check_size(os.fstat(handle.fileno()).st_size, source)
            data = handle.read(MAX_MELODY_BYTES + 1)
    except OSError as exc:
        raise MelodyError(f"{source}: cannot be read ({exc})") from exc
    _check_size(len(data), source)  # a file that grew, or a pipe whose size is not known
    return data


@dataclass(frozen=True, eq=False)
class SungPitch:
    """The pitch a singer actually sang, on a regular frame grid: what ``--melody-pitch sung`` sings.

    Frame ``k`` is centred at ``start_s + k * hop_s`` seconds of the melody's timeline; ``midi`` is its
    pitch in fractional MIDI semitones (A4 = 69 at 440 Hz, the singer's tuning, vibrato and glides
    kept), NaN where the singer sang nothing to follow (between notes). Built by
    :meth:`voxflip.engine.melody_audio.MelodyTranscription.sung_pitch`.
    """

    start_s: float
    hop_s: float
    midi: np.ndarray

    def __post_init__(self) -> None:
        midi = np.array(self.midi, dtype=np.float64)   # a copy the caller cannot change
        if midi.ndim != 1 or not math.isfinite(self.start_s) or not (math.isfinite(self.hop_s) and self.hop_s > 0):
            raise MelodyError(f"a sung pitch needs a finite start, a hop > 0 and one row of pitches; got start "
                              f"{self.start_s!r} s, hop {self.hop_s!r} s, shape {midi.shape}")
        midi.setflags(write=False)
        object.__setattr__(self, "midi", midi)

    @property
    def end_s(self) -> float:
        """Centre of the last frame."""
        return self.start_s + (len(self.midi) - 1) * self.hop_s

    def at(self, time_s: float) -> float | None:
        """The sung pitch at ``time_s`` (linear between frame centres, in semitones), or None where the
        singer sang nothing (either neighbouring frame is NaN, or outside the frames)."""
        position = (time_s - self.start_s) / self.hop_s
        nearest = round(position)
        if abs(position - nearest) < 1e-6:       # on a frame centre (times rounded to the hop)
            value = self.midi[nearest] if 0 <= nearest < len(self.midi) else math.nan
        elif 0.0 < position < len(self.midi) - 1:
            lower = int(position)
            weight = position - lower
            value = (1.0 - weight) * self.midi[lower] + weight * self.midi[lower + 1]
        else:
            return None
        return None if math.isnan(value) else float(value)

    def transposed(self, semitones: float) -> SungPitch:
        return self if semitones == 0 else SungPitch(self.start_s, self.hop_s, self.midi + semitones)

    def with_tempo(self, factor: float) -> SungPitch:
        return self if factor == 1 else SungPitch(self.start_s / factor, self.hop_s / factor, self.midi)


@dataclass(frozen=True)
class Melody:
    """A monophonic tune: `notes` sorted by start and non-overlapping; `source` names it in messages.

    `sung`, when the melody was transcribed from a recording with its sung pitch kept
    (``load_melody(..., sung_pitch=True)``), is the pitch the singer actually sang; converters that
    honour it sing that instead of the notes' steady pitch with synthetic vibrato and glides.

    Raises:
        MelodyError: there are no notes, or two notes overlap or are out of order
            (pass them through `to_monophonic` first).
    """

    notes: tuple[Note, ...]
    source: str
    sung: SungPitch | None = field(default=None, compare=False)
    _starts: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _lyrics: bool = field(init=False, repr=False, compare=False)

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
        object.__setattr__(self, "_lyrics", any(note.lyric for note in notes))

    @property
    def span_s(self) -> float:
        """End of the last note in seconds, counted from time 0 (leading rests included)."""
        return self.notes[-1].end_s

    @property
    def has_lyrics(self) -> bool:
        """Whether the score set lyric syllables on its notes (then a note without one is a melisma)."""
        return self._lyrics

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
        return Melody(notes, self.source, None if self.sung is None else self.sung.transposed(semitones))

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
        return Melody(notes, self.source, None if self.sung is None else self.sung.with_tempo(factor))

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
        chord = ordered[first:last]
        top = max(chord, key=lambda note: (note.midi_note, note.end_s))
        lyric = next((note.lyric for note in chord if note.lyric), None)   # a chord's syllable is the line's
        kept.append(top if top.lyric == lyric else replace(top, lyric=lyric))
        first = last
    result: list[Note] = []
    for index, note in enumerate(kept):
        end_s = note.end_s if index + 1 == len(kept) else min(note.end_s, kept[index + 1].start_s)
        if end_s - note.start_s >= MIN_NOTE_S - 1e-9:
            result.append(note if end_s == note.end_s else replace(note, end_s=end_s))
    return tuple(result)


def _build_note(where: str, start_s: float, end_s: float, midi_note: float, velocity: int,
                lyric: str | None = None) -> Note:
    problem = _note_problem(start_s, end_s, midi_note, velocity)
    if problem:
        raise MelodyError(f"{where}: {problem}")
    return Note(start_s, end_s, midi_note, velocity, lyric or None)


def _finish(notes: list[Note], source: str, why_empty: str) -> Melody:
    _check_note_count(len(notes), source)
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

"""Real melodies for the synthetic corpus, from the score corpus bundled with music21.

The catalog holds two kinds of tunes, each drawn half of the time:

- ``bach/*.mxl``: the top part of the Bach chorale harmonisations (and the few other Bach
  movements music21 ships as MusicXML), usually the soprano's chorale melody;
- ``essenFolksong/*.abc``: the Essen folk-song collection (German, Chinese and other tunes), one
  entry per tune number (``X:``) in each ABC file (the small ``test*.abc`` files are left out).

A tune becomes a `TuneLine`: its pitches and lengths in quarter notes, ties merged, rests removed
(the notes close up), chords reduced to their top note, grace notes dropped. `choose_melody` picks a
line, a start note, a transposition into the voice's range and a tempo, all from the caller's RNG;
`MelodyChoice.notes(count)` then lays ``count`` notes from that start out in seconds (wrapping to the
line's beginning when it runs out). The transposition puts the median of the first ``count`` notes
at a random pitch inside the voice's range, then moves it so that the whole line stays within
`RANGE_MARGIN` semitones of that range; a note of a line too wide for it is moved by octaves.
"""

from __future__ import annotations

import functools
import random
import re
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxflip.engine.errors import ConfigError

from .manifest import NoteSpan
from .synth_festival import FestivalVoice

MIN_LINE_NOTES = 8
MEDIAN_NOTE_S = 0.40  # a line's median note lasts this long at tempo factor 1
TEMPO_RANGE = (0.8, 1.3)  # tempo factors; 1.3 is 30 % faster
MIN_NOTE_S = 0.15  # notes are clamped to this range after scaling, so every syllable can be sung
MAX_NOTE_S = 2.5
RANGE_MARGIN = 4  # semitones a melody may reach beyond the voice's range


def _music21() -> Any:
    try:
        import music21
    except ImportError:
        raise ConfigError("the synthetic corpus takes its melodies from music21's score corpus; "
                          "install it with: pip install music21") from None
    return music21


def music21_version() -> str:
    return str(_music21().__version__)


@dataclass(frozen=True)
class TuneRef:
    """One tune of the catalog: a corpus file and, for ABC collections, the tune number."""

    path: Path
    number: int | None = None

    @property
    def source(self) -> str:
        """``folder/file`` inside music21's corpus, with ``#X`` for the tune number."""
        name = f"{self.path.parent.name}/{self.path.name}"
        return name if self.number is None else f"{name}#{self.number}"


@dataclass(frozen=True)
class TuneLine:
    source: str
    midi: tuple[int, ...]
    quarters: tuple[float, ...]


@functools.lru_cache(maxsize=1)
def catalog() -> tuple[tuple[TuneRef, ...], tuple[TuneRef, ...]]:
    """(chorales, folk tunes), each sorted, from music21's bundled corpus."""
    corpus = _music21().corpus
    bach = tuple(TuneRef(Path(p)) for p in sorted(corpus.getComposer("bach"), key=str) if Path(p).suffix == ".mxl")
    folk: list[TuneRef] = []
    for p in sorted(corpus.getComposer("essenFolksong"), key=str):
        path = Path(p)
        if path.suffix != ".abc" or path.name.startswith("test"):
            continue
        text = path.read_text(encoding="latin-1")
        numbers = sorted({int(n) for n in re.findall(r"^X:\s*(\d+)", text, flags=re.MULTILINE)})
        folk.extend(TuneRef(path, n) for n in numbers)
    if not bach and not folk:
        raise ConfigError("music21 is installed without its score corpus (no Bach or Essen files found); "
                          "reinstall it with: pip install --force-reinstall music21")
    return bach, tuple(folk)


@functools.lru_cache(maxsize=64)
def load_line(ref: TuneRef) -> TuneLine:
    """Parse one tune into a `TuneLine` (may be empty when the file holds no notes)."""
    converter = _music21().converter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # always from the source file, and no cache pickles left in music21's temporary folder
        score = converter.parse(str(ref.path), number=ref.number, forceSource=True, storePickle=False)
    if hasattr(score, "scores") and score.scores:  # an Opus: the tune number was not found alone
        score = score.scores[0]
    part = score.parts[0] if getattr(score, "parts", None) else score
    midi: list[int] = []
    quarters: list[float] = []
    for element in part.stripTies().flatten().notes:
        length = float(element.quarterLength)
        if length <= 0:  # grace notes
            continue
        pitches = [element.pitch] if element.isNote else list(element.pitches)
        if not pitches:
            continue
        midi.append(max(p.midi for p in pitches))
        quarters.append(length)
    return TuneLine(ref.source, tuple(midi), tuple(quarters))


@dataclass(frozen=True)
class MelodyChoice:
    """A line, where to start in it, how far to transpose it and how fast to play it."""

    line: TuneLine
    start: int
    transpose_semitones: int
    tempo_factor: float
    low_midi: int = 0  # notes outside low_midi..high_midi are moved by octaves into it
    high_midi: int = 127

    @property
    def seconds_per_quarter(self) -> float:
        return MEDIAN_NOTE_S / statistics.median(self.line.quarters) / self.tempo_factor

    def notes(self, count: int) -> list[NoteSpan]:
        """`count` notes from `start` (wrapping around), back to back from 0 s, transposed."""
        spans: list[NoteSpan] = []
        time_s = 0.0
        size = len(self.line.midi)
        for k in range(count):
            i = (self.start + k) % size
            length = min(MAX_NOTE_S, max(MIN_NOTE_S, self.line.quarters[i] * self.seconds_per_quarter))
            end = round(time_s + length, 5)
            midi = self.line.midi[i] + self.transpose_semitones
            while midi > self.high_midi and midi - 12 >= self.low_midi:
                midi -= 12
            while midi < self.low_midi and midi + 12 <= self.high_midi:
                midi += 12
            spans.append(NoteSpan(round(time_s, 5), end, float(midi)))
            time_s = end
        return spans

    def describe(self) -> dict[str, object]:
        """The facts a manifest entry records about this melody."""
        return {"melody_source": f"music21:{self.line.source}", "melody_start_note": self.start,
                "melody_transpose_semitones": self.transpose_semitones,
                "melody_tempo_factor": round(self.tempo_factor, 4)}


def choose_melody(rng: random.Random, count: int, voice: FestivalVoice) -> MelodyChoice:
    """Pick a tune, a start, a transposition into `voice`'s range and a tempo for `count` notes.

    Raises:
        ConfigError: music21 or its corpus is missing.
        RuntimeError: no usable tune in 50 tries (not expected).
    """
    bach, folk = catalog()
    for _ in range(50):
        pool = bach if (rng.random() < 0.5 and bach) or not folk else folk
        line = load_line(pool[rng.randrange(len(pool))])
        if len(line.midi) < MIN_LINE_NOTES:
            continue
        start = rng.randrange(max(1, len(line.midi) - count + 1))  # wraps only when the line is short
        span = [line.midi[(start + k) % len(line.midi)] for k in range(count)]
        target = rng.uniform(voice.low_midi + 2, voice.high_midi - 2)
        shift = round(target - statistics.median(span))
        # keep the whole line in range (the converter may ask for more notes than `count`)
        low, high = voice.low_midi - RANGE_MARGIN, voice.high_midi + RANGE_MARGIN
        shift -= max(0, max(line.midi) + shift - high)
        shift += max(0, low - (min(line.midi) + shift))
        tempo = rng.uniform(*TEMPO_RANGE)
        return MelodyChoice(line, start, int(shift), tempo, low, high)
    raise RuntimeError("no tune with at least 8 notes found in 50 tries of music21's corpus")

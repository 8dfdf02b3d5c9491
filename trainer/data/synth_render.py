"""Render one item of the synthetic corpus: Festival speech, then singing of the same text.

`render_item` is a pure function of its `ItemJob` (seed, index, text, voices): it draws the voice,
the singing method and the melody from an RNG seeded with ``(seed, index)``, so items come out the
same in any process and any order. It writes, each atomically (temporary name, then rename):

1. ``audio/<id>.speech.wav``: Festival speech, 16-bit, 16 kHz;
2. ``audio/<id>.sing.wav``: the same text sung, 16-bit, 16 kHz;
3. ``items/<id>.json``: the item's manifest row and what is needed to trust it on resume
   (written last: an item without it is not done).

Singing methods (``extra["singing_method"]``):

- ``festival-singing-mode``: Festival sings the text, one note per syllable of Festival's own
  syllabification; the sung phone timings come from Festival (diphone voices only);
- ``voxflip-world``: voxflip's WORLD speech-to-singing converter, driven through `Streamer`,
  sings the Festival speech on the melody. It cuts the speech into syllables with its own detector,
  so the melody is first laid out with one note per Festival syllable and, when the converter
  counts a different number, laid out again with one note per detected syllable. No sung phone
  timings exist this way (``singing_phones`` is absent).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from voxflip.engine.converters.world_to_singing import WorldToSingingConverter
from voxflip.engine.melody import Melody, Note
from voxflip.streaming.streamer import Streamer

from .manifest import ManifestEntry, NoteSpan, PhoneSpan
from .synth_festival import SAMPLE_RATE, FestivalError, FestivalVoice, sing, speak
from .synth_melodies import MelodyChoice, choose_melody
from .synth_text import split_for_text

SOURCE = "voxflip-synth"
SING_FESTIVAL = "festival-singing-mode"
SING_WORLD = "voxflip-world"
FESTIVAL_SINGING_SHARE = 0.5  # of items whose voice supports singing mode


@dataclass(frozen=True)
class ItemJob:
    """Everything one item depends on (the fingerprint covers the rest: versions, format)."""

    out_dir: str
    index: int
    seed: int
    text: str
    voices: tuple[FestivalVoice, ...]
    fingerprint: str

    @property
    def item_id(self) -> str:
        return item_id(self.seed, self.index)


def item_id(seed: int, index: int) -> str:
    return f"synth-s{seed}-{index:06d}"


def item_paths(out_dir: Path, ident: str) -> tuple[Path, Path, Path]:
    """(speech wav, singing wav, item record) of one item."""
    return (out_dir / "audio" / f"{ident}.speech.wav", out_dir / "audio" / f"{ident}.sing.wav",
            out_dir / "items" / f"{ident}.json")


def load_done(job: ItemJob) -> dict[str, Any] | None:
    """The record of a finished item that matches `job`, or None when it must be rendered."""
    speech, singing, record_path = item_paths(Path(job.out_dir), job.item_id)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (not isinstance(record, dict) or record.get("fingerprint") != job.fingerprint
            or record.get("entry", {}).get("text") != job.text):
        return None
    sizes = record.get("sizes", {})
    for key, path in (("speech", speech), ("singing", singing)):
        if not path.is_file() or path.stat().st_size != sizes.get(key):
            return None
    return record


def render_item(job: ItemJob) -> dict[str, Any]:
    """Render one item (see the module docstring) and return its record.

    Raises:
        FestivalError: Festival could not speak the sentence.
    """
    out = Path(job.out_dir)
    speech_path, sing_path, record_path = item_paths(out, job.item_id)
    scratch = out / ".work" / job.item_id
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    rng = random.Random(f"voxflip-synth-item:{job.seed}:{job.index}")
    voice = job.voices[rng.randrange(len(job.voices))]
    wants_festival = rng.random() < FESTIVAL_SINGING_SHARE and voice.singing_mode

    spoken = speak(job.text, voice, scratch / "speech.wav", scratch)
    speech_s = sf.info(str(spoken.wav)).frames / SAMPLE_RATE
    syllables = max(1, sum(count for _, count in spoken.words))
    choice = choose_melody(rng, syllables, voice)
    extra: dict[str, Any] = {"voice_gender": voice.gender, "phone_set": spoken.phone_set,
                             "sample_rate": SAMPLE_RATE, "syllables": syllables, **choice.describe()}

    sung_phones: list[PhoneSpan] | None = None
    method = SING_WORLD
    if wants_festival:
        notes = choice.notes(syllables)
        try:
            sung = sing(spoken.words, [(n.end_s - n.start_s, _hz(n.midi_note)) for n in notes], voice,
                        scratch / "sing.wav", scratch)
            if sung.syllables != len(notes):
                raise FestivalError(f"singing mode sang {sung.syllables} syllables for {len(notes)} notes")
            method, sung_phones = SING_FESTIVAL, sung.phones
        except FestivalError as exc:
            # no folder names: the manifest must not depend on where the corpus is made
            reason = str(exc).replace(str(scratch.resolve()), "<item>").replace(str(scratch), "<item>")
            extra["singing_fallback"] = reason[:200]
    if method == SING_WORLD:
        notes, warnings = _world_sing(spoken.wav, choice, syllables, scratch / "sing.wav")
        if warnings:
            extra["singing_warnings"] = warnings
    singing_s = sf.info(str(scratch / "sing.wav")).frames / SAMPLE_RATE
    extra.update(singing_method=method, speech_s=round(speech_s, 5), singing_s=round(singing_s, 5))

    entry = ManifestEntry(
        id=job.item_id, text=job.text, singing=sing_path, speech=speech_path, speaker=voice.name,
        split=split_for_text(job.text), language="en", source=SOURCE,
        singing_phones=_clamp(sung_phones, singing_s) if sung_phones is not None else None,
        speech_phones=_clamp(spoken.phones, speech_s), notes=notes, extra=extra,
    )
    speech_path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(spoken.wav, speech_path)
    os.replace(scratch / "sing.wav", sing_path)
    record = {"fingerprint": job.fingerprint, "index": job.index, "speech_s": speech_s,
              "sizes": {"speech": speech_path.stat().st_size, "singing": sing_path.stat().st_size},
              "entry": entry.to_json(out.resolve())}
    record_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = record_path.with_name(f".{record_path.name}.tmp")
    tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")  # key order kept: the manifest row reuses it
    os.replace(tmp, record_path)
    shutil.rmtree(scratch, ignore_errors=True)
    return record


def _hz(midi_note: float) -> float:
    return 440.0 * 2.0 ** ((midi_note - 69.0) / 12.0)


def _clamp(phones: list[PhoneSpan], duration_s: float) -> list[PhoneSpan]:
    """Phone spans rounded as the manifest stores them and kept inside the audio."""
    limit = round(duration_s, 5)
    spans = []
    for p in phones:
        start = min(round(p.start_s, 5), limit)
        spans.append(PhoneSpan(p.phone, start, max(start, min(round(p.end_s, 5), limit))))
    return spans


def _world_sing(speech_wav: Path, choice: MelodyChoice, syllables: int, out: Path) -> tuple[list[NoteSpan], list[str]]:
    """Sing the speech with the WORLD converter; returns the notes used and the converter's warnings."""
    audio, rate = sf.read(str(speech_wav), dtype="float32")
    notes = choice.notes(syllables)
    sung, report = _convert(audio, rate, notes, choice.line.source)
    detected = int(report.stats.get("syllables", syllables))
    if detected not in (syllables, 0):
        notes = choice.notes(detected)
        sung, report = _convert(audio, rate, notes, choice.line.source)
    sf.write(str(out), np.clip(sung, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    return notes, list(report.warnings)


def _convert(audio: np.ndarray, rate: int, notes: list[NoteSpan], source: str) -> tuple[np.ndarray, Any]:
    melody = Melody(tuple(Note(n.start_s, n.end_s, n.midi_note) for n in notes), f"music21:{source}")
    streamer = Streamer(WorldToSingingConverter(melody), rate, rate)   # it counts syllables: the WORLD converter
    sung = np.concatenate([streamer.process(audio), streamer.flush()])
    return sung, streamer.report()

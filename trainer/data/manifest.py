"""The manifest: one JSON object per line describing a sung/spoken pair. Every loader writes it.

Keys (docs/data.md has the full description):

- ``id`` (str, unique), ``text`` (str: the lyrics / sentence, as sung and spoken)
- ``singing``, ``speech``: audio paths, absolute or relative to the manifest's folder;
  at least one of them (DSing without TTS has singing only; a speech-only set has speech only)
- ``speaker`` (str), ``split`` (``train`` | ``valid`` | ``test``), ``language`` (BCP-47-ish, ``en``),
  ``source`` (the corpus it came from)
- ``singing_phones``, ``speech_phones``: optional lists of ``[phone, start_s, end_s]``
- ``notes``: optional list of ``[start_s, end_s, midi_note]`` (the sung melody)

Unknown keys are kept in ``extra`` (so a loader can carry corpus-specific facts), except
that ``singer`` is read as ``speaker`` (the development set's manifest uses it).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxflip.engine.errors import ConfigError

SPLITS = ("train", "valid", "test")
_KNOWN = ("id", "text", "singing", "speech", "speaker", "split", "language", "source",
          "singing_phones", "speech_phones", "notes")


@dataclass(frozen=True)
class PhoneSpan:
    phone: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class NoteSpan:
    start_s: float
    end_s: float
    midi_note: float


@dataclass
class ManifestEntry:
    """One sung/spoken pair (either side may be missing)."""

    id: str
    text: str
    singing: Path | None = None
    speech: Path | None = None
    speaker: str = ""
    split: str = "train"
    language: str = "en"
    source: str = ""
    singing_phones: list[PhoneSpan] | None = None
    speech_phones: list[PhoneSpan] | None = None
    notes: list[NoteSpan] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, base: Path | None = None) -> dict[str, Any]:
        """The JSON object of this entry; paths relative to ``base`` when they lie under it."""

        def rel(p: Path | None) -> str | None:
            if p is None:
                return None
            p = Path(p).resolve()
            if base is not None and p.is_relative_to(base):
                return p.relative_to(base).as_posix()
            return str(p)

        obj: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.singing is not None:
            obj["singing"] = rel(self.singing)
        if self.speech is not None:
            obj["speech"] = rel(self.speech)
        obj.update(speaker=self.speaker, split=self.split, language=self.language, source=self.source)
        if self.singing_phones is not None:
            obj["singing_phones"] = [[p.phone, round(p.start_s, 5), round(p.end_s, 5)] for p in self.singing_phones]
        if self.speech_phones is not None:
            obj["speech_phones"] = [[p.phone, round(p.start_s, 5), round(p.end_s, 5)] for p in self.speech_phones]
        if self.notes is not None:
            obj["notes"] = [[round(n.start_s, 5), round(n.end_s, 5), n.midi_note] for n in self.notes]
        obj.update(self.extra)
        return obj


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    return float(value)


def _phones(value: Any, where: str) -> list[PhoneSpan]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of [phone, start_s, end_s], got {type(value).__name__}")
    spans = []
    for i, item in enumerate(value):
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)):
            raise ConfigError(f"{where}[{i}]: expected [phone, start_s, end_s], got {item!r}")
        start, end = _number(item[1], f"{where}[{i}]"), _number(item[2], f"{where}[{i}]")
        if end < start:
            raise ConfigError(f"{where}[{i}]: end_s={end} is before start_s={start}")
        spans.append(PhoneSpan(item[0], start, end))
    return spans


def _notes(value: Any, where: str) -> list[NoteSpan]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of [start_s, end_s, midi_note], got {type(value).__name__}")
    notes = []
    for i, item in enumerate(value):
        if not (isinstance(item, list) and len(item) == 3):
            raise ConfigError(f"{where}[{i}]: expected [start_s, end_s, midi_note], got {item!r}")
        start, end, midi = (_number(v, f"{where}[{i}]") for v in item)
        if end <= start or not 0 <= midi <= 127:
            raise ConfigError(f"{where}[{i}]: needs start_s < end_s and midi_note in 0..127, got {item!r}")
        notes.append(NoteSpan(start, end, midi))
    return notes


def parse_entry(obj: Any, base: Path, where: str) -> ManifestEntry:
    """One JSON object -> entry (paths resolved against ``base``). Raises ConfigError naming ``where``."""
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in ("id", "text"):
        if not isinstance(obj.get(key), str) or not obj[key].strip() and key == "id":
            raise ConfigError(f"{where}: {key!r} must be a string{' (non-empty)' if key == 'id' else ''}, got {obj.get(key)!r}")
    paths: dict[str, Path | None] = {}
    for side in ("singing", "speech"):
        value = obj.get(side)
        if value is None:
            paths[side] = None
        elif isinstance(value, str) and value:
            path = Path(value)
            paths[side] = path if path.is_absolute() else base / path
        else:
            raise ConfigError(f"{where}: {side!r} must be an audio path (string), got {value!r}")
    if paths["singing"] is None and paths["speech"] is None:
        raise ConfigError(f"{where}: an entry needs 'singing' or 'speech' (or both)")
    split = obj.get("split", "train")
    if split not in SPLITS:
        raise ConfigError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
    speaker = obj.get("speaker", obj.get("singer", ""))
    extra = {k: v for k, v in obj.items() if k not in _KNOWN and k != "singer"}
    return ManifestEntry(
        id=obj["id"], text=obj["text"], singing=paths["singing"], speech=paths["speech"],
        speaker=str(speaker), split=split, language=str(obj.get("language", "en")), source=str(obj.get("source", "")),
        singing_phones=_phones(obj["singing_phones"], f"{where}: singing_phones") if "singing_phones" in obj else None,
        speech_phones=_phones(obj["speech_phones"], f"{where}: speech_phones") if "speech_phones" in obj else None,
        notes=_notes(obj["notes"], f"{where}: notes") if "notes" in obj else None,
        extra=extra,
    )


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestEntry]:
    """Read a JSONL manifest. Raises ConfigError (one line: file, line number, problem)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"manifest {str(path)!r} does not exist (or is not a file)")
    base = path.parent.resolve()
    entries: list[ManifestEntry] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from None
            entry = parse_entry(obj, base, where)
            if entry.id in seen:
                raise ConfigError(f"{where}: id {entry.id!r} already used on line {seen[entry.id]}; ids must be unique")
            seen[entry.id] = lineno
            entries.append(entry)
    if not entries:
        raise ConfigError(f"manifest {str(path)!r} has no entries")
    return entries


def write_manifest(path: str | os.PathLike[str], entries: list[ManifestEntry]) -> Path:
    """Write entries as JSONL (paths relative to the manifest's folder), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(entry.to_json(path.parent.resolve()), ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path

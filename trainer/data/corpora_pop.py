"""Loaders of the pop-singing corpora: DSing (Smule karaoke, singing only) and PopBuTFy (+ AlignSTS speech).

Layouts, what is confirmed and what is assumed: docs/data.md ("Corpora").
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from voxflip.engine.errors import ConfigError

from .corpora_common import (
    LoadReport,
    audio_files,
    check_fractions,
    child_dir,
    finish,
    group_key,
    layout_error,
    read_text_file,
    require_root,
    subdirs,
)
from .manifest import ManifestEntry

DSING_LAYOUT = ("<root>/<COUNTRY>/<COUNTRY>Vocals/<recording>.m4a (the sing_300x30x2 folder) with the DSing "
                "lists DSing1.csv|DSing3.csv|DSing30.csv, dev.csv, test.csv in <root> or lists_dir")
POPBUTFY_LAYOUT = ("<root>/data/<Singer>#singing#<Song>_<Amateur|Professional>/<same>_<n>.mp3, "
                   "<root>/data/<Singer>#speech#<Song>/<same>_<n>.wav (AlignSTS speech subset), "
                   "<root>/text_labels/<folder>/<file stem>.txt")
DSING_SUBSETS = ("dsing1", "dsing3", "dsing30")
_CONVERTED = (".flac", ".wav", ".ogg", ".mp3")  # decodable copies of an .m4a, preferred when present
_DSING_COLUMNS = ("utterance_id", "recording", "start", "end", "speaker", "text")


# --------------------------------------------------------------------------- DSing


def _find_list(folder: Path, names: tuple[str, ...]) -> Path | None:
    wanted = {n.casefold() for n in names}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name.casefold() in wanted:
            return path
    return None


def _read_dsing_list(path: Path) -> list[tuple[int, dict[str, str]]]:
    where = repr(str(path))
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in _DSING_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(
                    f"dsing: list {where} lacks the column(s) {', '.join(missing)}; expected the header "
                    f"utterance_id,recording_id,recording,start,end,speaker,gender,text"
                )
            return [(reader.line_num, row) for row in reader]
    except OSError as exc:
        raise ConfigError(f"dsing: cannot read list {where}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"dsing: list {where} is not a readable CSV file: {exc}") from None


def _seconds(value: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"dsing: {where}: start/end must be seconds, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"dsing: {where}: start/end must be finite seconds >= 0, got {value!r}")
    return number


def load_dsing(root: str | Path, *, subset: str = "dsing30", lists_dir: str | Path | None = None,
               split_seed: int = 0, valid_fraction: float = 0.05, test_fraction: float = 0.05,
               report: LoadReport | None = None) -> list[ManifestEntry]:
    """DSing: utterance segments of Smule Sing! 300x30x2 recordings, with lyrics; singing only.

    DSing's own split is kept (train list of ``subset``, ``dev.csv`` -> valid, ``test.csv`` -> test);
    ``split_seed`` and the fractions are accepted for a uniform interface and ignored. Entries have
    ``singing`` and no ``speech``: the spoken side is synthesised later (TTS). Each entry is a segment
    of a whole recording: ``extra["singing_start_s"]`` / ``extra["singing_end_s"]`` give it. A
    recording converted next to its ``.m4a`` (same stem, .flac/.wav/.ogg/.mp3) is used instead of
    the ``.m4a``, which libsndfile cannot decode.

    Args:
        root: the ``sing_300x30x2`` folder (``GB/GBVocals/*.m4a``, ...).
        subset: ``"dsing1"``, ``"dsing3"`` or ``"dsing30"`` (the train list to read).
        lists_dir: folder of the DSing CSV lists ("DSing Preconstructed" of groadabike/Kaldi-Dsing-task);
            default ``root``.
        report: filled with list rows whose recording is missing, and a note on .m4a files.

    Raises:
        ConfigError: missing root or list, a list without the DSing columns, bad start/end values.
    """
    check_fractions(valid_fraction, test_fraction)
    report = report if report is not None else LoadReport()
    root = require_root("dsing", root, DSING_LAYOUT)
    if subset not in DSING_SUBSETS:
        raise ConfigError(f"dsing: subset {subset!r} is not one of {', '.join(DSING_SUBSETS)}")
    lists = root if lists_dir is None else Path(lists_dir)
    if not lists.is_dir():
        raise ConfigError(f"dsing: lists_dir {str(lists)!r} is not a folder; it must hold the DSing CSV lists")
    n = subset.removeprefix("dsing")
    wanted = {"train": (f"DSing{n}.csv", f"train{n}.csv"), "valid": ("dev.csv",), "test": ("test.csv",)}
    files = {split: _find_list(lists, names) for split, names in wanted.items()}
    if any(path is None for path in files.values()):
        missing = ", ".join(" or ".join(wanted[s]) for s, p in files.items() if p is None)
        raise layout_error("dsing", root, f"{DSING_LAYOUT}; missing {missing}", where=lists)
    resolved: dict[str, Path | None] = {}
    m4a: set[Path] = set()
    entries = []
    for split, path in files.items():
        assert path is not None
        for line, row in _read_dsing_list(path):
            where = f"{path.name} line {line}"
            if any(row.get(column) is None for column in _DSING_COLUMNS):
                raise ConfigError(f"dsing: {where} has fewer fields than the header ({', '.join(_DSING_COLUMNS)}, ...)")
            start, end = _seconds(row["start"], where), _seconds(row["end"], where)
            if end <= start:
                raise ConfigError(f"dsing: {where}: end {end} s is not after start {start} s")
            recording = row["recording"]
            if recording not in resolved:
                resolved[recording] = _dsing_audio(root / recording)
            audio = resolved[recording]
            if audio is None:
                report.skip("list rows whose recording is missing", root / recording)
                continue
            if audio.suffix.lower() == ".m4a":
                m4a.add(audio)
            entries.append(ManifestEntry(
                id=f"dsing/{row['utterance_id']}", text=" ".join(row["text"].split()), singing=audio,
                speaker=row["speaker"], split=split, language="en", source="dsing",
                extra={"singing_start_s": start, "singing_end_s": end, "gender": row.get("gender", "")},
            ))
    if m4a:
        report.notes.append(
            f"{len(m4a)} recordings are .m4a (AAC), which libsndfile cannot decode: convert each next to "
            f"itself, e.g. ffmpeg -i X.m4a X.flac, and load again"
        )
    return finish("dsing", root, entries, [], report, split_seed=split_seed, valid_fraction=valid_fraction,
                  test_fraction=test_fraction, own_splits=True, expected=DSING_LAYOUT)


def _dsing_audio(listed: Path) -> Path | None:
    for suffix in _CONVERTED:
        if listed.with_suffix(suffix).is_file():
            return listed.with_suffix(suffix)
    return listed if listed.is_file() else None


# --------------------------------------------------------------------------- PopBuTFy

_FOLDER = re.compile(r"^(?P<singer>[^#]+)#(?P<kind>singing|speech)#(?P<song>.+)$")
_TECHNIQUE = re.compile(r"^(?P<song>.+)_(?P<tech>Amateur|Professional)$")


def _take_number(folder: Path, stem: str) -> str:
    prefix = folder.name + "_"
    return stem[len(prefix):] if stem.startswith(prefix) else stem.rsplit("_", 1)[-1]


def load_popbutfy(root: str | Path, *, require_speech: bool = True, split_seed: int = 0,
                  valid_fraction: float = 0.05, test_fraction: float = 0.05,
                  report: LoadReport | None = None) -> list[ManifestEntry]:
    """PopBuTFy singing paired with the AlignSTS speech subset (same singer, song and segment number).

    Every singing take (Amateur and Professional) of ``(singer, song, n)`` pairs with the speech file
    ``<Singer>#speech#<Song>_<n>``; both takes therefore share one speech file and one split. The
    speech subset's layout is not public: this loader assumes it follows PopBuTFy's own naming with
    ``#speech#`` in place of ``#singing#`` and no Amateur/Professional suffix (a suffix, if present, is
    ignored). Text: the first line of ``text_labels/<folder>/<file stem>.txt`` (singing, else speech).

    Args:
        root: the PopBuTFy folder holding ``data/`` (and ``text_labels/``), or ``data/`` itself.
        require_speech: False keeps singing takes without speech (``speech`` = None), as for DSing.
        split_seed, valid_fraction, test_fraction: the split by text (docs/data.md).
        report: filled with unpaired singing and speech files.

    Raises:
        ConfigError: missing root, no ``<Singer>#singing#<Song>`` folders, or (with ``require_speech``)
            no ``#speech#`` folders at all, unreadable text labels.
    """
    check_fractions(valid_fraction, test_fraction)
    report = report if report is not None else LoadReport()
    root = require_root("popbutfy", root, POPBUTFY_LAYOUT)
    data = child_dir(root, "data") or root
    labels = child_dir(root, "text_labels") or child_dir(data.parent, "text_labels")
    singing: dict[tuple[str, str, str], list[tuple[str, Path]]] = {}
    speech: dict[tuple[str, str, str], Path] = {}
    texts: dict[Path, str] = {}
    for folder in subdirs(data):
        match = _FOLDER.match(folder.name)
        if match is None:
            continue
        singer, kind, song = match["singer"], match["kind"], match["song"]
        tech_match = _TECHNIQUE.match(song)
        tech, song = (tech_match["tech"], tech_match["song"]) if tech_match else ("", song)
        for stem, audio in audio_files(folder, "popbutfy").items():
            key = (singer, song, _take_number(folder, stem))
            label = labels / folder.name / f"{stem}.txt" if labels is not None else None
            if label is not None and label.is_file():
                texts[audio] = read_text_file(label, "popbutfy", first_line=True)
            if kind == "speech":
                speech[key] = audio
            else:
                singing.setdefault(key, []).append((tech or "Singing", audio))
    if not singing:
        raise layout_error("popbutfy", root, POPBUTFY_LAYOUT, where=data)
    if require_speech and not speech:
        raise ConfigError(
            f"popbutfy: {str(data)!r} has {len(singing)} singing segments but no <Singer>#speech#<Song> folders: "
            f"the AlignSTS speech subset is missing; add it (docs/data.md) or pass require_speech=False"
        )
    entries, keys = [], []
    for key in sorted(set(singing) | set(speech)):
        singer, song, number = key
        if key not in singing:
            report.skip("speech files without singing", speech[key])
            continue
        for tech, audio in sorted(singing[key]):
            spoken = speech.get(key)
            if spoken is None and require_speech:
                report.skip("singing files without speech", audio)
                continue
            text = texts.get(audio) or (texts.get(spoken, "") if spoken is not None else "")
            entries.append(ManifestEntry(
                id=f"popbutfy/{singer}/{song}/{tech}/{number}", text=text, singing=audio, speech=spoken,
                speaker=singer, language="en", source="popbutfy", extra={"technique": tech},
            ))
            keys.append(group_key(text, f"popbutfy:{singer}/{song}/{number}"))
    return finish("popbutfy", root, entries, keys, report, split_seed=split_seed,
                  valid_fraction=valid_fraction, test_fraction=test_fraction, expected=POPBUTFY_LAYOUT)

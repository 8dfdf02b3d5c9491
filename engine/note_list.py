"""Note-list melodies: read explicit notes from a .csv or .json file into a `Melody`.

Each note gives ``start_s``, ``end_s`` and ``midi_note`` and optionally ``velocity`` (default
100) and ``lyric`` (the syllable the note starts; empty: it goes on with the previous one): a CSV file names them in a header row, a JSON file is a list of objects or
``{"notes": [...]}``. Every bad note list raises `MelodyError` with one line naming the file, the
line or note number, the value and what is allowed. A file may hold at most ``MAX_NOTES`` notes
and ``MAX_MELODY_BYTES`` bytes (:mod:`.notes`); the reader stops where it passes either.

`parse_note_list` is re-exported by :mod:`.melody`, whose `load_melody` calls `_parse_note_list`
for .csv and .json files.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from .errors import MelodyError
from .notes import (
    DEFAULT_VELOCITY,
    Melody,
    Note,
    PathLike,
    _build_note,
    _check_file,
    _check_note_count,
    _finish,
    _read_limited,
)

NOTE_KEYS = ("start_s", "end_s", "midi_note", "velocity", "lyric")
REQUIRED_NOTE_KEYS = NOTE_KEYS[:3]


def parse_note_list(path: PathLike) -> Melody:
    """Read notes from .csv (header row required) or .json (a list of objects, or {"notes": [...]}).

    Columns/keys: start_s, end_s, midi_note (required), velocity (optional, default 100) and lyric
    (optional: the syllable the note starts, as a score's lyrics; docs/melody.md), in any order. Overlapping or unsorted notes are reduced by `to_monophonic`.

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
    data = _read_limited(file, source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MelodyError(f"{source}: cannot be read as UTF-8 text ({exc})") from exc
    del data
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
            f"{where}: {problem}; allowed {kind}s: start_s, end_s, midi_note (required), velocity, lyric (optional)"
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
                _check_note_count(len(rows) + 1, source)
                rows.append(
                    (
                        where,
                        {
                            key: cell.strip()
                            for key, cell in zip(header, cells, strict=True)
                            if key not in ("velocity", "lyric") or cell.strip()
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
    _check_note_count(len(data), source)
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
    lyric = row.get("lyric")
    if lyric is not None and not isinstance(lyric, str):
        raise MelodyError(f"{where}: lyric={lyric!r} is not text (the syllable the note starts, or empty)")
    return _build_note(where, start_s, end_s, midi_note, velocity, (lyric or "").strip()[:64] or None)

"""The synthetic paired corpus: Festival speech and singing of the same sentences, on real melodies.

`make_synthetic_corpus(out_dir, minutes, seed)` renders items until the speech side reaches
``minutes`` and writes::

    out_dir/audio/<id>.speech.wav     Festival speech (16-bit PCM, 16 kHz)
    out_dir/audio/<id>.sing.wav       the same text sung (16-bit PCM, 16 kHz)
    out_dir/manifest.jsonl            one row per item (see manifest.py), source "voxflip-synth"
    out_dir/synth_config.json         seed, minutes, voices, versions, the command, counts
    out_dir/items/<id>.json           per-item records that make the run resumable

Text comes from :mod:`.synth_text` (our own sentences, then a template grammar), voices and phone
timings from :mod:`.synth_festival`, melodies from music21's corpus (:mod:`.synth_melodies`), and
each item is rendered by :mod:`.synth_render`. docs/data.md ("Synthetic corpus") has the details.

Item ``i`` depends only on the seed, ``i`` and the settings fingerprint (generator format, voices,
Festival and music21 versions), so the same seed gives byte-identical audio and manifest with any
number of workers, and a second call on the same folder only renders what is missing.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from voxflip.engine.errors import ConfigError

from .manifest import ManifestEntry, parse_entry, write_manifest
from .synth_festival import SAMPLE_RATE, festival_binary, festival_version, installed_voices
from .synth_melodies import catalog, music21_version
from .synth_render import SOURCE, ItemJob, item_paths, load_done, render_item
from .synth_text import sentence_stream

__all__ = ["SYNTH_FORMAT", "make_synthetic_corpus"]

#: bump when a change alters what an item renders: older items are then not reused
SYNTH_FORMAT = 1
CONFIG_NAME = "synth_config.json"
MANIFEST_NAME = "manifest.jsonl"

Progress = Callable[[float, float], None]


def make_synthetic_corpus(out_dir: str | os.PathLike[str], minutes: float, seed: int = 0, workers: int = 1,
                          progress: Progress | None = None) -> Path:
    """Render a paired speech/singing corpus into `out_dir` and return its manifest path.

    Args:
        out_dir: output folder (created; a folder from an earlier call with the same seed is resumed).
        minutes: stop once the speech audio adds up to this many minutes (> 0).
        seed: selects sentence order, voices, singing methods, melodies, transpositions and tempi.
        workers: processes rendering items in parallel (>= 1); the result does not depend on it.
        progress: called as ``progress(done_seconds, total_seconds)`` of speech after each item.

    Returns:
        ``out_dir/manifest.jsonl``.

    Raises:
        ConfigError: bad arguments, Festival or music21 missing, or `out_dir` holds a corpus made
            with other settings.
        FestivalError: Festival failed on a sentence.
    """
    _check_arguments(minutes, seed, workers, progress)
    out = Path(out_dir).resolve()  # Festival runs in its own working folder: give it absolute paths
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir {str(out)!r} is a file; give a folder for the corpus")
    festival_binary()
    catalog()  # fails early, with the install hint, when music21 is missing
    with tempfile.TemporaryDirectory(prefix="voxflip-festival-") as probe:
        voices = tuple(installed_voices(Path(probe)))
    settings = {"format": SYNTH_FORMAT, "seed": seed, "voices": [v.name for v in voices],
                "sample_rate": SAMPLE_RATE, "festival_version": festival_version(),
                "music21_version": music21_version()}
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    config_path = out / CONFIG_NAME
    _check_previous(config_path, settings, fingerprint)
    scratch = out / ".work"
    scratch.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "generator": SOURCE, **settings, "fingerprint": fingerprint, "minutes": minutes, "workers": workers,
        "voices": [{"name": v.name, "debian_package": v.package, "gender": v.gender,
                    "singing_range_midi": [v.low_midi, v.high_midi], "festival_singing_mode": v.singing_mode}
                   for v in voices],
        "text": "voxflip's own sentences (trainer/data/synth_sentences.py) then its template grammar; MIT",
        "melodies": "music21 corpus: Bach chorale top parts (bach/*.mxl) and Essen folk songs (essenFolksong/*.abc)",
        "command": shlex.join(sys.argv),
        "call": f"make_synthetic_corpus({str(out)!r}, minutes={minutes!r}, seed={seed!r}, workers={workers!r})",
    }
    _write_json(config_path, config)

    total_s = 60.0 * minutes
    jobs = (ItemJob(str(out), index, seed, text, voices, fingerprint)
            for index, text in enumerate(sentence_stream(seed)))
    entries: list[ManifestEntry] = []
    done_s = 0.0
    counts = {"rendered": 0, "reused": 0}
    started = time.perf_counter()

    def items_wanted() -> float:  # estimate, to keep workers from rendering much past the end
        if not entries:
            return math.inf
        return math.ceil(max(0.0, total_s - done_s) / (done_s / len(entries)))

    results = _results(jobs, workers, items_wanted)
    try:
        for record, reused in results:
            counts["reused" if reused else "rendered"] += 1
            entries.append(parse_entry(record["entry"], out.resolve(), f"{out / 'items'}/{record['entry']['id']}"))
            done_s += record["speech_s"]
            if progress is not None:
                progress(min(done_s, total_s), total_s)
            if done_s >= total_s:
                break
    finally:
        results.close()  # waits for work in flight, so nothing is written after the clean-up below
    _remove_other_items(out, {e.id for e in entries})
    shutil.rmtree(scratch, ignore_errors=True)
    manifest = write_manifest(out / MANIFEST_NAME, entries)
    config.update(items=len(entries), speech_seconds=round(done_s, 3),
                  singing_seconds=round(sum(e.extra["singing_s"] for e in entries), 3),
                  last_run={**counts, "wall_seconds": round(time.perf_counter() - started, 2)})
    _write_json(config_path, config)
    return manifest


def _check_arguments(minutes: float, seed: int, workers: int, progress: Progress | None) -> None:
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not math.isfinite(minutes) or minutes <= 0:
        raise ConfigError(f"minutes={minutes!r} must be a finite number of minutes > 0, e.g. 0.5 or 60")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} must be a whole number, e.g. 0")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r} must be a whole number of processes >= 1")
    if progress is not None and not callable(progress):
        raise ConfigError(f"progress={progress!r} must be a function progress(done_seconds, total_seconds) or None")


def _check_previous(config_path: Path, settings: dict[str, Any], fingerprint: str) -> None:
    """Refuse to mix items of other settings into a folder (resuming needs the same settings)."""
    if not config_path.is_file():
        return
    try:
        previous = json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError:
        raise ConfigError(f"{config_path} is not valid JSON; delete it (or the folder) to start again") from None
    if previous.get("fingerprint") == fingerprint:
        return
    old_voices = [v["name"] if isinstance(v, dict) else v for v in previous.get("voices", [])]
    differences = [f"{key} {previous.get(key)!r} -> {settings[key]!r}" for key in settings
                   if key != "voices" and previous.get(key) != settings[key]]
    if old_voices != settings["voices"]:
        differences.append(f"voices {old_voices!r} -> {settings['voices']!r}")
    raise ConfigError(f"{config_path.parent} holds a synthetic corpus made with other settings "
                      f"({'; '.join(differences) or 'unknown'}); use an empty folder, or the same seed and setup")


def _results(jobs: Iterator[ItemJob], workers: int,
             items_wanted: Callable[[], float]) -> Iterator[tuple[dict[str, Any], bool]]:
    """(item record, reused) in index order; finished items are read back, the others rendered.

    With several workers, up to ``2 * workers`` items are in flight, fewer near the end (as many
    as `items_wanted` estimates are still needed); what the caller does not take is discarded.
    """
    if workers == 1:
        for job in jobs:
            record = load_done(job)
            yield (record, True) if record is not None else (render_item(job), False)
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(os.getpid(),))
    pending: deque[dict[str, Any] | Future[dict[str, Any]]] = deque()
    try:
        for job in jobs:
            record = load_done(job)
            pending.append(record if record is not None else pool.submit(render_item, job))
            while pending and (len(pending) > min(2 * workers, items_wanted() - 1)
                               or not isinstance(pending[0], Future)):
                yield _settle(pending.popleft())
        while pending:
            yield _settle(pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _exit_with_parent(parent_pid: int) -> None:
    """In a worker: exit as soon as the parent process is gone (killed), instead of idling forever."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _settle(item: dict[str, Any] | Future[dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    return (item.result(), False) if isinstance(item, Future) else (item, True)


def _remove_other_items(out: Path, keep: set[str]) -> None:
    """Delete rendered items that are not in the manifest (past the requested length)."""
    for record in sorted((out / "items").glob("synth-*.json")):
        ident = record.stem
        if ident not in keep:
            for path in item_paths(out, ident):
                path.unlink(missing_ok=True)
    for wav in sorted((out / "audio").glob("synth-*.wav")):
        if wav.name.split(".")[0] not in keep:
            wav.unlink()


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)

"""``voxflip corpus check MANIFEST``: find the entries of a manifest that training cannot use.

For every entry and each of its audio files (singing, speech) :func:`check_manifest` looks for:

=====================  ===================================================================
``missing``            the audio file does not exist
``corrupt``            unreadable, not audio, or truncated (``engine.audio_io.probe``)
``zero_length``        an empty file, a file with 0 samples, or a clip of 0 s
``sample_rate``        a sample rate outside ``min_sample_rate_hz..max_sample_rate_hz``
``bad_segment``        ``extra[<side>_start_s/_end_s]`` not numbers with 0 <= start < end <= file end
``duration_mismatch``  sung/spoken duration ratio outside [1/max_duration_ratio, max_duration_ratio]
``phones_beyond_end``  a phone span (or a note) ending after the clip ends
=====================  ===================================================================

Durations are those of the clip: the whole file, or the segment ``extra["singing_start_s"]`` to
``extra["singing_end_s"]`` when a loader set one (DSing); phone and note times are relative to the
start of the clip. Only file headers are read (``probe``), so a check of a large corpus is I/O
bound; ``workers > 1`` spreads it over a process pool.

:func:`filter_entries` then keeps the usable entries and logs what it skipped, as training does.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, NamedTuple

from voxflip.engine.audio_io import MAX_SAMPLE_RATE, AudioInfo, probe
from voxflip.engine.errors import AudioInputError

from .manifest import ManifestEntry, read_manifest

log = logging.getLogger(__name__)

PROBLEM_KINDS = ("missing", "corrupt", "zero_length", "sample_rate", "bad_segment", "duration_mismatch",
                 "phones_beyond_end")
_CHUNK = 16  # entries per task in the process pool (and per progress call)


class Problem(NamedTuple):
    entry_id: str
    kind: str  # one of PROBLEM_KINDS
    detail: str  # one line


@dataclass
class CheckReport:
    """The result of :func:`check_manifest`: problems per entry, and the ids with none."""

    path: Path
    total: int
    problems: list[Problem] = field(default_factory=list)
    ok_ids: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Number of problems of each kind (every kind listed, 0 included)."""
        counts = dict.fromkeys(PROBLEM_KINDS, 0)
        for problem in self.problems:
            counts[problem.kind] += 1
        return counts

    @property
    def bad_ids(self) -> set[str]:
        return {problem.entry_id for problem in self.problems}

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self, max_examples: int = 3) -> str:
        """A short summary: totals, the count of each problem kind, then up to ``max_examples`` each."""
        bad = len(self.bad_ids)
        lines = [f"{self.path}: {self.total} entries, {self.total - bad} usable, {bad} with problems"]
        counts = {kind: n for kind, n in self.counts.items() if n}
        lines += [f"  {kind}: {n}" for kind, n in counts.items()]
        for kind, n in counts.items():
            lines.append(f"{kind} ({n}):")
            examples = [p for p in self.problems if p.kind == kind][:max_examples]
            lines += [f"  {p.entry_id}: {p.detail}" for p in examples]
            if n > len(examples):
                lines.append(f"  ... and {n - len(examples)} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Options:
    max_duration_ratio: float
    min_sample_rate_hz: int
    max_sample_rate_hz: int
    tolerance_s: float


def _probe(path: Path, side: str, cache: dict[Path, AudioInfo | tuple[str, str]]) -> AudioInfo | tuple[str, str]:
    """The file's header info, or ``(kind, detail)`` of what is wrong with it."""
    if path in cache:
        return cache[path]
    result: AudioInfo | tuple[str, str]
    if not path.exists():
        result = ("missing", f"{side} file {str(path)!r} does not exist")
    elif path.is_file() and path.stat().st_size == 0:
        result = ("zero_length", f"{side} file {str(path)!r} is empty (0 bytes)")
    else:
        try:
            result = probe(path)
        except AudioInputError as exc:
            message = " ".join(str(exc).split())
            if "(0 samples)" in message or "(0 bytes)" in message:
                result = ("zero_length", f"{side}: {message}")
            elif "sample rate" in message:
                result = ("sample_rate", f"{side}: {message}")
            else:
                result = ("corrupt", f"{side}: {message}")
    cache[path] = result
    return result


def _segment(entry: ManifestEntry, side: str, file_s: float, opts: _Options) -> tuple[float, str | None]:
    """(clip duration, problem) for a side: the whole file, or its ``<side>_start_s``..``_end_s`` segment."""
    start, end = entry.extra.get(f"{side}_start_s"), entry.extra.get(f"{side}_end_s")
    if start is None and end is None:
        return file_s, None
    start = 0.0 if start is None else start
    end = file_s if end is None else end
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (start, end))
    if not numbers or not 0 <= start < end or end > file_s + opts.tolerance_s:
        return 0.0, (f"{side} segment {start!r}..{end!r} s is not inside the file's 0..{file_s:.3f} s "
                     f"(needs 0 <= start < end <= end of file)")
    return end - start, None


def _check_entry(entry: ManifestEntry, opts: _Options, cache: dict) -> list[Problem]:
    problems: list[Problem] = []
    durations: dict[str, float] = {}
    for side in ("singing", "speech"):
        path = getattr(entry, side)
        if path is None:
            continue
        info = _probe(Path(path), side, cache)
        if isinstance(info, tuple):
            problems.append(Problem(entry.id, *info))
            continue
        if not opts.min_sample_rate_hz <= info.sample_rate <= opts.max_sample_rate_hz:
            problems.append(Problem(entry.id, "sample_rate", (
                f"{side} file {str(path)!r} has {info.sample_rate} Hz; allowed: "
                f"{opts.min_sample_rate_hz}..{opts.max_sample_rate_hz} Hz (resample it)")))
            continue
        duration, segment_problem = _segment(entry, side, info.duration_s, opts)
        if segment_problem is not None:
            problems.append(Problem(entry.id, "bad_segment", segment_problem))
            continue
        durations[side] = duration
        spans: list[tuple[str, float]] = [(p.phone, p.end_s) for p in getattr(entry, f"{side}_phones") or []]
        if side == "singing":
            spans += [(f"note {n.midi_note:g}", n.end_s) for n in entry.notes or []]
        late = [(label, end) for label, end in spans if end > duration + opts.tolerance_s]
        if late:
            label, end = max(late, key=lambda item: item[1])
            problems.append(Problem(entry.id, "phones_beyond_end", (
                f"{len(late)} {side} span(s) end after the clip ({duration:.3f} s), the last "
                f"{label!r} at {end:.3f} s")))
    if len(durations) == 2:
        sung, spoken = durations["singing"], durations["speech"]
        ratio = sung / spoken
        if not 1 / opts.max_duration_ratio <= ratio <= opts.max_duration_ratio:
            problems.append(Problem(entry.id, "duration_mismatch", (
                f"singing {sung:.2f} s vs speech {spoken:.2f} s (ratio {ratio:.2f}; allowed "
                f"{1 / opts.max_duration_ratio:.2f}..{opts.max_duration_ratio:.2f})")))
    return problems


def _check_chunk(entries: Sequence[ManifestEntry], opts: _Options) -> list[list[Problem]]:
    cache: dict[Path, Any] = {}  # files shared by several entries (segments, takes) are probed once
    return [_check_entry(entry, opts, cache) for entry in entries]


def check_manifest(path: str | os.PathLike[str], *, max_duration_ratio: float = 5.0, workers: int = 1,
                   progress: Callable[[int, int], None] | None = None, min_sample_rate_hz: int = 16_000,
                   max_sample_rate_hz: int = MAX_SAMPLE_RATE, tolerance_s: float = 0.05) -> CheckReport:
    """Check every entry of a manifest (see the module docstring for the problem kinds).

    Args:
        path: the JSONL manifest.
        max_duration_ratio: allowed sung/spoken duration ratio is [1/max, max]; singing is usually
            1-3x longer than speech, so the default 4.0 flags only wild mismatches.
        workers: processes probing files; 1 checks in this process.
        progress: called as ``progress(done, total)`` (entries) after each batch, in this process.
        min_sample_rate_hz, max_sample_rate_hz: allowed sample rates (Hz).
        tolerance_s: slack for phone/note ends and segment ends past the end of the audio (s).

    Returns:
        A :class:`CheckReport`; ``report.format()`` is the human summary.

    Raises:
        ConfigError: the manifest itself cannot be read (see ``manifest.read_manifest``).
        ValueError: a bad argument.
    """
    if isinstance(max_duration_ratio, bool) or not isinstance(max_duration_ratio, int | float) \
            or not math.isfinite(max_duration_ratio) or max_duration_ratio < 1:
        raise ValueError(f"max_duration_ratio must be a finite number >= 1, got {max_duration_ratio!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if not 0 < min_sample_rate_hz <= max_sample_rate_hz:
        raise ValueError(
            f"need 0 < min_sample_rate_hz <= max_sample_rate_hz, got {min_sample_rate_hz!r}, {max_sample_rate_hz!r}"
        )
    if not math.isfinite(tolerance_s) or tolerance_s < 0:
        raise ValueError(f"tolerance_s must be a finite number of seconds >= 0, got {tolerance_s!r}")
    entries = read_manifest(path)
    opts = _Options(float(max_duration_ratio), int(min_sample_rate_hz), int(max_sample_rate_hz), float(tolerance_s))
    chunks = [entries[i:i + _CHUNK] for i in range(0, len(entries), _CHUNK)]
    report = CheckReport(Path(path), len(entries))
    results: Iterable[list[list[Problem]]]
    pool = ProcessPoolExecutor(max_workers=min(workers, len(chunks))) if workers > 1 else None
    try:
        results = pool.map(_check_chunk, chunks, repeat(opts)) if pool else map(_check_chunk, chunks, repeat(opts))
        done = 0
        for chunk, chunk_problems in zip(chunks, results, strict=True):
            for entry, problems in zip(chunk, chunk_problems, strict=True):
                report.problems += problems
                if not problems:
                    report.ok_ids.append(entry.id)
            done += len(chunk)
            if progress is not None:
                progress(done, len(entries))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return report


def filter_entries(entries: Sequence[ManifestEntry], report: CheckReport) -> list[ManifestEntry]:
    """The entries ``report`` found usable, in their order; logs one warning naming what it skipped.

    Raises:
        ValueError: ``report`` does not cover some entry (it was made from another manifest).
    """
    ok, bad = set(report.ok_ids), report.bad_ids
    unknown = [entry.id for entry in entries if entry.id not in ok and entry.id not in bad]
    if unknown:
        raise ValueError(
            f"the check report of {str(report.path)!r} does not cover {len(unknown)} entries (e.g. "
            f"{unknown[0]!r}); check the manifest these entries came from"
        )
    kept = [entry for entry in entries if entry.id in ok]
    if len(kept) < len(entries):
        dropped = {entry.id for entry in entries} - ok
        counts = {kind: n for kind, n in CheckReport(report.path, 0, [p for p in report.problems
                                                                      if p.entry_id in dropped]).counts.items() if n}
        log.warning("skipping %d of %d entries with problems (%s); run: voxflip corpus check %s",
                    len(entries) - len(kept), len(entries), ", ".join(f"{k}: {n}" for k, n in counts.items()),
                    report.path)
    return kept

"""Rendering whole corpora: a manifest or a folder of audio files, on every core or on Ray.

``voxflip render --manifest M --out DIR`` and ``voxflip render --input-dir D --out DIR`` turn
each input into ``DIR/<id>.wav`` with :func:`voxflip.render.render_file`, exactly as one-by-one
rendering would (same converter options, same bytes), and write ``DIR/render.jsonl``: one JSON
object per file with its id, input, output, converter, options, durations, seconds taken,
status (``ok`` or ``failed``, with the error) and the fingerprint of its input (size, mtime,
sha256). A second run skips a file whose output exists and whose record shows the same input,
options and voxflip version; anything else is rendered again.

The jobs run in a process pool (:func:`run_pool`, each worker builds its converter once) or as
Ray tasks (:func:`voxflip.corpus_ray.run_ray`); both call :func:`render_job`, which never raises
for a bad file: it returns a ``failed`` record, so one bad entry does not stop the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxflip.engine.audio_io import READ_EXTENSIONS
from voxflip.engine.errors import ConfigError, EngineError

from . import __version__

#: the record of a corpus render, in its output folder
RECORD_NAME = "render.jsonl"
#: converter options whose value may be a file: its content is part of the fingerprint
_FILE_OPTIONS = ("melody", "model_path")


@dataclass(frozen=True)
class RenderSettings:
    """What every file of a corpus render shares (picklable: it travels to the workers).

    Args:
        to: ``"speech"`` or ``"singing"``.
        method: a converter name, or None for the direction's default.
        options: converter options as :func:`voxflip.engine.registry.make_converter` takes them
            (a ``melody`` here is a path: one tune for every file).
        block_size, sample_rate, gain_db, fx, allow_plugins: as :func:`voxflip.render.render_file`.
    """

    to: str
    method: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    block_size: int = 65_536
    sample_rate: int | None = None
    gain_db: float = 0.0
    fx: str | None = None
    allow_plugins: bool = False

    def fingerprint(self) -> dict[str, Any]:
        """What decides the output, as JSON: options, the content of files they name, the version.

        The block size is left out: the output does not depend on it.
        """
        options: dict[str, Any] = {}
        for name, value in sorted(self.options.items()):
            if name in _FILE_OPTIONS and isinstance(value, str | os.PathLike) and Path(value).is_file():
                options[name] = {"path": str(Path(value).resolve()), "sha256": file_sha256(value)}
            else:
                options[name] = value
        fx: Any = self.fx   # a preset name, or a preset file: its content
        if self.fx is not None and Path(self.fx).is_file():
            fx = {"path": str(Path(self.fx).resolve()), "sha256": file_sha256(self.fx)}
        return {"to": self.to, "method": self.method, "options": options, "sample_rate": self.sample_rate,
                "gain_db": self.gain_db, "fx": fx, "allow_plugins": self.allow_plugins, "version": __version__}


@dataclass(frozen=True)
class RenderJob:
    """One file to render: ``input`` -> ``output`` (absolute paths).

    ``notes`` (``[start_s, end_s, midi_note]`` rows) is the entry's own melody for ``--to
    singing`` without ``--melody``; ``segment`` (start_s, end_s) renders that part of the input
    only (manifest entries with ``<side>_start_s``/``_end_s``, docs/data.md). ``error`` marks a
    job that cannot run (found while listing): it is reported as failed without running.
    """

    id: str
    input: str
    output: str
    notes: tuple[tuple[float, float, float], ...] | None = None
    segment: tuple[float, float] | None = None
    error: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        notes = None if self.notes is None else hashlib.sha256(json.dumps(self.notes).encode()).hexdigest()
        return {"segment": list(self.segment) if self.segment else None, "notes_sha256": notes}


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def input_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Size, mtime (ns) and sha256 of a file."""
    stat = os.stat(path)
    return {"input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns, "input_sha256": file_sha256(path)}


def _safe_output(out_dir: Path, relative: str) -> Path | None:
    """``out_dir/relative.wav``, or None when ``relative`` would leave ``out_dir`` (``..``, absolute)."""
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or any(p in ("..", ".", "") for p in parts):
        return None
    return out_dir / Path(*parts[:-1]) / f"{parts[-1]}.wav"


def jobs_from_manifest(manifest: str | os.PathLike[str], to: str, out_dir: str | os.PathLike[str],
                       *, has_melody: bool) -> list[RenderJob]:
    """A job per manifest entry: its ``singing`` for ``to="speech"``, its ``speech`` for ``to="singing"``.

    Raises:
        ConfigError: the manifest cannot be read (file:line), or ``to="singing"`` without a
            melody when no entry has ``notes``.
    """
    from voxflip.trainer.data.manifest import read_manifest

    entries = read_manifest(manifest)
    side = "singing" if to == "speech" else "speech"
    if to == "singing" and not has_melody and not any(e.notes for e in entries):
        raise ConfigError(f"--to singing needs --melody, or 'notes' in the manifest; none of the "
                          f"{len(entries)} entries of {str(manifest)!r} has notes")
    out = Path(out_dir).resolve()
    jobs = []
    for entry in entries:
        source = getattr(entry, side)
        output = _safe_output(out, entry.id)
        error = None
        if output is None:
            error = f"entry {entry.id!r}: its id cannot name a file under {str(out)!r} ('..', '.' or an absolute path)"
        elif source is None:
            error = f"entry {entry.id!r} has no {side!r} recording to render for --to {to}"
        elif to == "singing" and not has_melody and not entry.notes:
            error = f"entry {entry.id!r} has no 'notes' to sing on; give --melody or add notes to the manifest"
        notes = None
        if to == "singing" and not has_melody and entry.notes:
            notes = tuple((n.start_s, n.end_s, n.midi_note) for n in entry.notes)
        segment = None
        start, end = entry.extra.get(f"{side}_start_s"), entry.extra.get(f"{side}_end_s")
        if start is not None or end is not None:
            if (isinstance(start, int | float) and isinstance(end, int | float) and not isinstance(start, bool)
                    and not isinstance(end, bool) and 0 <= start < end):
                segment = (float(start), float(end))
            else:
                error = error or (f"entry {entry.id!r}: {side}_start_s={start!r}, {side}_end_s={end!r} is not a "
                                  "segment (0 <= start < end, in seconds)")
        jobs.append(RenderJob(entry.id, str(source or ""), str(output or ""), notes, segment, error))
    return jobs


def jobs_from_folder(input_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> list[RenderJob]:
    """A job per audio file under ``input_dir`` (recursive; wav, flac, mp3, ogg, aiff), in sorted order;
    ``a/b.flac`` (its id) -> ``out_dir/a/b.wav``. Files under ``out_dir`` itself are left out.

    Raises:
        ConfigError: ``input_dir`` is not a folder, or holds no audio file.
    """
    root = Path(input_dir).resolve()
    if not root.is_dir():
        raise ConfigError(f"--input-dir {str(input_dir)!r} is not a folder")
    out = Path(out_dir).resolve()
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in READ_EXTENSIONS and p.is_file()
                   and not p.resolve().is_relative_to(out) and not p.name.startswith("."))
    if not files:
        raise ConfigError(f"--input-dir {str(input_dir)!r} holds no audio file ({', '.join(READ_EXTENSIONS)})")
    jobs: list[RenderJob] = []
    taken: dict[Path, Path] = {}
    for path in files:
        rel = path.relative_to(root)
        output = out / rel.with_suffix(".wav")
        error = None
        if output in taken:
            error = f"{str(path)!r} and {str(taken[output])!r} would both be written to {str(output)!r}; rename one"
        taken.setdefault(output, path)
        jobs.append(RenderJob(rel.as_posix(), str(path), str(output), error=error))
    return jobs


# -- the worker side: one converter per process ---------------------------------------------------

#: (direction, method, options) -> the converter this process built for them
_CONVERTERS: dict[tuple[str, str | None, Any], Any] = {}


def _freeze(value: Any) -> Any:
    return tuple(sorted((k, _freeze(v)) for k, v in value.items())) if isinstance(value, dict) else value


def converter_for(settings: RenderSettings, notes: tuple[tuple[float, float, float], ...] | None = None,
                  name: str = "") -> Any:
    """The converter of ``settings`` (built once per process), or one singing ``notes`` (built per entry)."""
    from voxflip.engine.registry import make_converter

    if notes is not None:
        from voxflip.engine.notes import Melody, Note, to_monophonic

        melody = Melody(to_monophonic(Note(*row) for row in notes), f"the notes of entry {name!r}")
        return make_converter(settings.to, settings.method, **{**settings.options, "melody": melody})
    key = (settings.to, settings.method, _freeze(settings.options))
    if key not in _CONVERTERS:
        _CONVERTERS[key] = make_converter(settings.to, settings.method, **settings.options)
    return _CONVERTERS[key]


def one_line(exc: BaseException) -> str:
    """The one line a user reads for a failed file."""
    if isinstance(exc, EngineError):
        from .cli import error_message

        return error_message(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename!r}: " if exc.filename is not None else ""
        return f"{where}{' '.join(exc.strerror.split())}"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _source_of(job: RenderJob) -> Iterator[str]:
    """The file to render: the input, or its segment copied to a temporary WAV (float, the input's rate)."""
    if job.segment is None:
        yield job.input
        return
    import soundfile as sf

    from voxflip.engine.audio_io import probe
    from voxflip.engine.errors import AudioInputError

    rate = probe(job.input).sample_rate
    start, stop = round(job.segment[0] * rate), round(job.segment[1] * rate)
    audio, _ = sf.read(job.input, start=start, stop=stop, dtype="float32", always_2d=True)
    if audio.shape[0] < stop - start:
        raise AudioInputError(f"{job.input!r} ends before its segment {job.segment[0]:g}..{job.segment[1]:g} s does")
    with tempfile.TemporaryDirectory(prefix="voxflip-segment-") as folder:
        path = os.path.join(folder, "segment.wav")
        sf.write(path, audio, rate, subtype="FLOAT")
        yield path


def render_job(job: RenderJob, settings: RenderSettings) -> dict[str, Any]:
    """Render one job and return its record (never raises for a bad file: ``status`` says ``failed``)."""
    from .render import render_file

    started = time.perf_counter()
    record: dict[str, Any] = {"id": job.id, "input": job.input, "output": job.output, "status": "failed"}
    try:
        if job.error is not None:
            raise ConfigError(job.error)
        from voxflip.engine.audio_io import probe

        probe(job.input)       # a missing, unreadable or non-audio input: the message a single render gives
        record.update(input_fingerprint(job.input))
        converter = converter_for(settings, job.notes, job.id)
        Path(job.output).parent.mkdir(parents=True, exist_ok=True)
        with _source_of(job) as source:
            result = render_file(source, job.output, converter, block_size=settings.block_size,
                                 output_sample_rate=settings.sample_rate, gain_db=settings.gain_db,
                                 fx_preset=settings.fx, allow_plugins=settings.allow_plugins,
                                 cores=1)   # the corpus is shared between cores file by file
        record.update(status="ok", converter=result.converter, input_seconds=round(result.input_seconds, 6),
                      output_seconds=round(result.output_seconds, 6), output_sample_rate=result.output_sample_rate,
                      latency_ms=round(result.latency_ms, 3), warnings=result.warnings)
    except Exception as exc:   # a bad file fails alone; KeyboardInterrupt still stops the run
        record["error"] = one_line(exc)
    record["wall_seconds"] = round(time.perf_counter() - started, 4)
    return record


def run_pool(jobs: list[RenderJob], settings: RenderSettings, workers: int,
             done: Callable[[dict[str, Any]], None]) -> None:
    """Render ``jobs`` on ``workers`` processes (in this process for 1); ``done(record)`` as each ends."""
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            done(render_job(job, settings))
        return
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from voxflip.streaming.heap import keep_freed_memory

    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), initializer=keep_freed_memory)
    try:
        pending = {pool.submit(render_job, job, settings) for job in jobs}   # all submitted before any bar thread
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                done(future.result())
    except BaseException:   # Ctrl-C, SIGTERM: stop the workers now, not after their current files
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()   # a file being written stays a hidden temporary; the next run removes it
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- the record, resuming, the run ---------------------------------------------------------------

def read_records(out_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The last record per id of ``out_dir/render.jsonl`` (a line cut short by a kill is ignored)."""
    path = Path(out_dir) / RECORD_NAME
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                records[record["id"]] = record
    return records


def is_done(job: RenderJob, previous: dict[str, Any] | None, options: dict[str, Any]) -> bool:
    """Whether ``job``'s output exists and ``previous`` shows the same input, options and version."""
    if job.error is not None or previous is None or previous.get("status") != "ok":
        return False
    if (previous.get("options"), previous.get("job"), previous.get("input"), previous.get("output")) != (
            options, job.fingerprint(), job.input, job.output):
        return False
    if not os.path.isfile(job.output):
        return False
    try:
        stat = os.stat(job.input)
    except OSError:
        return False
    if (stat.st_size, stat.st_mtime_ns) != (previous.get("input_size"), previous.get("input_mtime_ns")):
        return False
    return file_sha256(job.input) == previous.get("input_sha256")


def _remove_stale_temporaries(output: str) -> None:
    """Temporary files a killed worker left beside ``output`` (``.<name>.<hex>.tmp``)."""
    folder, name = os.path.split(output)
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name.startswith(f".{name}.") and entry.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


@dataclass
class CorpusResult:
    records: list[dict[str, Any]]
    rendered: int
    skipped: int
    wall_seconds: float

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") != "ok"]


def render_corpus(jobs: list[RenderJob], settings: RenderSettings, out_dir: str | os.PathLike[str], *,
                  workers: int = 1, runner: Callable[..., None] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> CorpusResult:
    """Render ``jobs`` into ``out_dir``, skipping those already done, and write ``render.jsonl``.

    Args:
        runner: ``runner(jobs, settings, done)`` runs the jobs (default: :func:`run_pool` on ``workers``).
        progress: called with ``(files_done, files_total)``, skipped files included.

    Returns:
        A :class:`CorpusResult`; its ``records`` follow ``jobs``' order.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    options = settings.fingerprint()
    previous = read_records(out)
    by_id: dict[str, dict[str, Any]] = {}
    todo: dict[str, RenderJob] = {}
    for job in jobs:
        if is_done(job, previous.get(job.id), options):
            by_id[job.id] = previous[job.id]
        else:
            todo[job.id] = job
            if job.output:
                _remove_stale_temporaries(job.output)
    count = len(by_id)
    if progress is not None and not todo:   # otherwise at the first file done: a bar's thread starts after the pool forks
        progress(count, len(jobs))
    log_path = out / RECORD_NAME
    with log_path.open("a", encoding="utf-8") as log:
        def done(record: dict[str, Any]) -> None:
            nonlocal count
            record.update(options=options, job=todo[record["id"]].fingerprint())
            by_id[record["id"]] = record
            log.write(json.dumps(record, ensure_ascii=False) + "\n")   # kept if the run is killed
            log.flush()
            count += 1
            if progress is not None:
                progress(count, len(jobs))

        try:
            if runner is None:
                run_pool(list(todo.values()), settings, workers, done)
            else:
                runner(list(todo.values()), settings, done)
        except BaseException:   # stopped: the workers are gone; so are the files they were writing
            for job in todo.values():
                if job.output:
                    _remove_stale_temporaries(job.output)
            raise
    records = [by_id[j.id] for j in jobs]
    temp = out / f".{RECORD_NAME}.tmp"
    temp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    os.replace(temp, log_path)
    rendered = sum(by_id[i].get("status") == "ok" for i in todo)
    return CorpusResult(records, rendered=rendered, skipped=len(jobs) - len(todo),
                        wall_seconds=time.perf_counter() - started)


def summary(result: CorpusResult, out_dir: str | os.PathLike[str], where: str) -> str:
    audio = sum(r.get("input_seconds", 0.0) for r in result.records if r.get("status") == "ok")
    return (f"voxflip render: {len(result.records)} files: {result.rendered} rendered, {result.skipped} unchanged "
            f"(skipped), {len(result.failed)} failed, {where}, in {result.wall_seconds:.1f} s; "
            f"{audio:.1f} s of input in {out_dir}; record: {Path(out_dir) / RECORD_NAME}")


def print_failures(records: Iterable[dict[str, Any]]) -> None:
    for r in records:
        if r.get("status") != "ok":
            print(f"voxflip render: failed: {r['id']}: {r.get('error', 'unknown error')}", file=sys.stderr)



"""`voxflip bench`: per converter and block size, what live use costs on this machine.

Each configuration runs in a fresh Python process pinned to one CPU core, so
the start-up time and peak memory are the live path's own. The child streams
the bundled speech example (resampled to the device rate, looped to the
requested length) through the same constant-rate processor `voxflip live`
uses, one device block at a time, and reports:

- algorithmic latency: converter chunk + lookahead + resampling (what the
  converter needs to see before it can answer);
- declared latency: that plus the live engine's output prefill (the time the
  worker may take for one block; at least one block, at least one chunk);
- per-block compute time p50 / p99 and the real-time factor (compute time over
  block duration; p50 and p99 and the mean);
- peak RSS of the process;
- start-up: from launching the process to the first block of output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

BLOCK_MS = (10, 20, 40)


def default_converters(*, live: bool = True) -> tuple[str, ...]:
    """Every registered converter that can run here (what it needs is installed); for the live benchmark
    not those that convert once the whole input has ended (a block's time means nothing for them); not those
    that run only on models the user names (``alignsts-stream``: ``--model`` and ``--content-model``)."""
    from voxflip.engine.registry import converters

    return tuple(spec.name for spec in converters()
                 if not spec.missing() and not spec.required and not (live and spec.whole_input))


def bench_converter(name: str, chunk_ms: float | None, seconds: float, model: str | None = None,
                    voice_floor_hz: float | None = None, vocoder: str | None = None, content_model: str | None = None):
    """The converter ``name`` as the benchmark runs it: at ``voxflip live``'s chunk unless ``chunk_ms``,
    a converter to singing on a generated melody that lasts ``seconds``; ``model``,
    ``voice_floor_hz``, ``vocoder`` and ``content_model`` go to the converters that take them."""
    from voxflip.engine.registry import Direction, get_converter, make_converter

    spec = get_converter(name)
    options: dict = {"chunk_ms": chunk_ms or spec.grid.live_ms}
    if spec.direction is Direction.TO_SINGING:
        options["melody"] = _bench_melody(seconds)
    if model is not None and "model_path" in spec.option_names:
        options["model_path"] = model
    if voice_floor_hz is not None and "voice_floor_hz" in spec.option_names:
        options["voice_floor_hz"] = voice_floor_hz
    if vocoder is not None and "vocoder" in spec.option_names:
        options["vocoder"] = vocoder
    if content_model is not None and "content_model" in spec.option_names:
        options["content_model"] = content_model
    return make_converter(spec.direction, spec.name, **options)


@dataclass
class BenchResult:
    converter: str
    block_ms: float
    chunk_ms: float
    device_rate: int
    algorithmic_latency_ms: float
    declared_latency_ms: float
    compute_p50_ms: float
    compute_p99_ms: float
    rtf_p50: float
    rtf_p99: float
    rtf_mean: float
    peak_rss_mb: float
    startup_s: float
    seconds: float
    core: int | None
    voice_floor_hz: float | None = None
    vocoder: str | None = None


def _child(converter: str, block_ms: float, chunk_ms: float, device_rate: int, signal_path: str, core: int | None,
           launched: float, model: str | None, voice_floor_hz: float | None = None,
           vocoder: str | None = None, content_model: str | None = None) -> None:
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    import resource

    import numpy as np

    from voxflip.engine.registry import get_converter
    from voxflip.streaming.live import prefill_blocks_for
    from voxflip.streaming.realtime import RealtimeStreamer
    from voxflip.streaming.streamer import Streamer

    audio = np.load(signal_path)
    seconds = audio.shape[0] / device_rate
    conv = bench_converter(converter, chunk_ms or None, seconds, model, voice_floor_hz, vocoder, content_model)
    processor = RealtimeStreamer(Streamer(conv, device_rate, device_rate), device_rate)
    block = int(round(block_ms * device_rate / 1000))
    prefill = prefill_blocks_for(conv.chunk_samples / conv.sample_rate, device_rate, block)
    declared = (processor.latency_samples + prefill * block) / device_rate
    times = []
    first_output = None
    for i in range(0, audio.shape[0] - block + 1, block):
        t0 = time.perf_counter()
        out = processor.process(audio[i : i + block])
        times.append(time.perf_counter() - t0)
        if first_output is None and np.any(out != 0):
            first_output = time.time()
    t = np.array(times)
    block_s = block / device_rate
    result = BenchResult(
        converter=converter, block_ms=block_ms, chunk_ms=1000 * conv.chunk_samples / conv.sample_rate,
        device_rate=device_rate,
        algorithmic_latency_ms=1000 * processor.latency_samples / device_rate,
        declared_latency_ms=1000 * declared,
        compute_p50_ms=1000 * float(np.percentile(t, 50)), compute_p99_ms=1000 * float(np.percentile(t, 99)),
        rtf_p50=float(np.percentile(t, 50)) / block_s, rtf_p99=float(np.percentile(t, 99)) / block_s,
        rtf_mean=float(t.mean()) / block_s,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        startup_s=(first_output or time.time()) - launched,
        seconds=seconds, core=core,
        voice_floor_hz=voice_floor_hz if "voice_floor_hz" in get_converter(converter).option_names else None,
        vocoder=(vocoder or "dsp") if "vocoder" in get_converter(converter).option_names else None,
    )
    print(json.dumps(asdict(result)))


def _bench_signal(device_rate: int, seconds: float, folder: str) -> str:
    """The bundled speech at the device rate, looped to ``seconds``, saved as .npy for the children."""
    from importlib.resources import files

    import numpy as np
    import soundfile as sf
    from scipy.signal import resample_poly

    speech, rate = sf.read(str(files("voxflip") / "data" / "arctic_a0007.wav"), dtype="float32")
    speech = resample_poly(speech, device_rate, rate).astype(np.float32)
    reps = int(np.ceil(seconds * device_rate / speech.shape[0]))
    path = os.path.join(folder, f"bench_{device_rate}.npy")
    np.save(path, np.tile(speech, reps)[: int(seconds * device_rate)])
    return path


def run_bench(converters: tuple[str, ...] | list[str] | None = None, block_ms=BLOCK_MS, device_rate: int = 48_000, seconds: float = 20.0,
              core: int | None = 0, progress=None, chunk_ms: float | None = None,
              model: str | None = None, voice_floor_hz: float | None = None,
              vocoder: str | None = None, content_model: str | None = None) -> list[BenchResult]:
    """Benchmark each converter (default: :func:`default_converters`) at each block size;
    ``chunk_ms=None`` takes what ``voxflip live`` uses; ``voice_floor_hz`` and ``vocoder`` go to
    the converters that take them."""
    import tempfile

    converters = default_converters() if converters is None else converters
    chunk = 0.0 if chunk_ms is None else chunk_ms     # 0: the child picks the live default

    results = []
    with tempfile.TemporaryDirectory() as folder:
        signal = _bench_signal(device_rate, seconds, folder)
        for conv in converters:
            for ms in block_ms:
                launched = time.time()
                cmd = [sys.executable, "-m", "voxflip.bench", "--child", conv, str(ms), str(chunk), str(device_rate),
                       signal, "-1" if core is None else str(core), repr(launched), model or "",
                       "" if voice_floor_hz is None else repr(voice_floor_hz), vocoder or "", content_model or ""]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"benchmark of {conv} at {ms} ms failed: {done.stderr.strip()[-500:]}")
                results.append(BenchResult(**json.loads(done.stdout.strip().splitlines()[-1])))
                if progress is not None:
                    progress(results[-1])
    return results


def format_table(results: list[BenchResult]) -> str:
    head = ("| converter | block / chunk | algorithmic / declared latency | compute p50 / p99 | RTF p50 / p99 / mean "
            "| peak RSS | start-up |\n| --- | --- | --- | --- | --- | --- | --- |")
    rows = [
        f"| {r.converter}{'' if r.voice_floor_hz is None else f' (voice floor {r.voice_floor_hz:g} Hz)'}"
        f"{'' if r.vocoder in (None, 'dsp') else f' ({r.vocoder} vocoder)'} | "
        f"{r.block_ms:g} / {r.chunk_ms:g} ms | {r.algorithmic_latency_ms:.1f} / {r.declared_latency_ms:.1f} ms | "
        f"{r.compute_p50_ms:.2f} / "
        f"{r.compute_p99_ms:.2f} ms | {r.rtf_p50:.2f} / {r.rtf_p99:.2f} / {r.rtf_mean:.2f} | {r.peak_rss_mb:.0f} MB | "
        f"{r.startup_s:.2f} s |"
        for r in results
    ]
    return "\n".join([head, *rows])


# -- offline rendering: one long file per converter, against a naive pyworld pipeline ----------------

@dataclass
class OfflineResult:
    """One offline render of ``seconds`` of audio at ``sample_rate`` (``converter`` "pyworld" is the baseline)."""

    converter: str
    seconds: float
    output_seconds: float
    sample_rate: int
    wall_s: float
    times_real_time: float
    vs_baseline: float          # times faster than the naive pyworld pipeline on the same file, same run
    peak_rss_mb: float
    core: int | None
    cores: int = 1              # cores the render used (the pyworld baseline: always one)


def _pin(core: int | None, cores: int = 1) -> None:
    """Run on ``cores`` CPU cores from ``core`` on (``None``: wherever the system likes)."""
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(range(core, core + cores)))


def _offline_child(converter: str, wav: str, out_dir: str, core: int | None, model: str | None,
                   cores: int = 1) -> None:
    """Render ``wav`` with ``converter`` at its offline default chunk on ``cores`` cores; print the
    wall time as JSON."""
    _pin(core, cores)
    import resource

    import soundfile as sf

    from voxflip.engine.registry import Direction, get_converter, make_converter
    from voxflip.render import render_file

    seconds = sf.info(wav).duration
    spec = get_converter(converter)
    options: dict = {}
    if spec.direction is Direction.TO_SINGING:
        options["melody"] = _bench_melody(seconds)
    if model is not None and "model_path" in spec.option_names:
        options["model_path"] = model
    conv = make_converter(spec.direction, spec.name, **options)
    t0 = time.perf_counter()
    result = render_file(wav, os.path.join(out_dir, f"{converter}.wav"), conv, cores=cores)
    wall = time.perf_counter() - t0
    print(json.dumps({"wall_s": wall, "output_seconds": result.output_seconds, "seconds": result.input_seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _baseline_child(wav: str, core: int | None) -> None:
    """The naive pyworld pipeline on the whole file: DIO, StoneMask, CheapTrick, D4C, synthesis."""
    _pin(core)
    import resource

    import numpy as np
    import pyworld
    import soundfile as sf

    audio, rate = sf.read(wav, dtype="float64")
    t0 = time.perf_counter()
    f0, times = pyworld.dio(audio, rate)
    f0 = pyworld.stonemask(audio, f0, times, rate)
    envelope = pyworld.cheaptrick(audio, f0, times, rate)
    aperiodicity = pyworld.d4c(audio, f0, times, rate)
    out = pyworld.synthesize(f0, envelope, aperiodicity, rate)
    wall = time.perf_counter() - t0
    assert np.all(np.isfinite(out))
    print(json.dumps({"wall_s": wall, "output_seconds": out.shape[0] / rate, "seconds": audio.shape[0] / rate,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _bench_melody(seconds: float):
    """The benchmark's tune: a note every 0.4 s, ending within ``seconds`` (as :func:`bench_converter` sings)."""
    from voxflip.engine.melody import Melody, Note

    notes = tuple(Note(0.4 * i, 0.4 * i + 0.38, 60 + (i * 5) % 12) for i in range(max(1, int(seconds / 0.4))))
    return Melody(notes, "bench")


def _bench_wav(device_rate: int, seconds: float, folder: str, name: str = "offline") -> str:
    """The bench signal as a float WAV file (what an offline render reads)."""
    import numpy as np
    import soundfile as sf

    path = os.path.join(folder, f"{name}_{device_rate}.wav")
    sf.write(path, np.load(_bench_signal(device_rate, seconds, folder)), device_rate, subtype="FLOAT")
    return path


def _run_child(args: list[str], what: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "voxflip.bench", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"offline benchmark of {what} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_offline_bench(converters: tuple[str, ...] | list[str] | None = None, sample_rate: int = 48_000,
                      seconds: float = 60.0, core: int | None = 0, progress=None,
                      model: str | None = None, cores: int = 1) -> list[OfflineResult]:
    """Render one long file (the bundled speech looped to ``seconds`` at ``sample_rate``) with each
    converter, each in a fresh process pinned to ``cores`` cores (``render_file(cores=...)``), and the
    naive pyworld pipeline on the same file first, on one core (the baseline row,
    ``converter="pyworld"``)."""
    import tempfile

    converters = default_converters(live=False) if converters is None else converters
    results: list[OfflineResult] = []
    with tempfile.TemporaryDirectory() as folder:
        wav = _bench_wav(sample_rate, seconds, folder)
        pin = "-1" if core is None else str(core)
        base = _run_child(["--baseline-child", wav, pin], "the pyworld baseline")
        rows = [("pyworld", base)]
        if progress is not None:
            progress("pyworld", base)
        for conv in converters:
            row = _run_child(["--offline-child", conv, wav, folder, pin, model or "", str(cores)], conv)
            rows.append((conv, row))
            if progress is not None:
                progress(conv, row)
        for name, row in rows:
            results.append(OfflineResult(
                converter=name, seconds=row["seconds"], output_seconds=row["output_seconds"], sample_rate=sample_rate,
                wall_s=row["wall_s"], times_real_time=row["seconds"] / row["wall_s"],
                vs_baseline=base["wall_s"] / row["wall_s"], peak_rss_mb=row["peak_rss_mb"], core=core,
                cores=1 if name == "pyworld" else cores))
    return results


def format_offline_table(results: list[OfflineResult]) -> str:
    head = ("| converter | cores | input / output | wall time | times real time | vs naive pyworld | peak RSS |\n"
            "| --- | --- | --- | --- | --- | --- | --- |")
    rows = [f"| {r.converter} | {r.cores} | {r.seconds:.0f} / {r.output_seconds:.0f} s at {r.sample_rate} Hz | "
            f"{r.wall_s:.2f} s | {r.times_real_time:.1f}x | {r.vs_baseline:.2f}x | {r.peak_rss_mb:.0f} MB |"
            for r in results]
    return "\n".join([head, *rows])


@dataclass
class CorpusBenchResult:
    """Corpus rendering of ``files`` files (``seconds`` of audio in all) with ``workers`` processes."""

    converter: str
    workers: int
    files: int
    seconds: float
    wall_s: float
    times_real_time: float
    speedup: float              # over the 1-worker row of the same run


def run_corpus_bench(converter: str | None = None, files: int = 8, sample_rate: int = 48_000, seconds: float = 60.0,
                     workers: tuple[int, ...] = (1, 2), model: str | None = None) -> list[CorpusBenchResult]:
    """The same ``files`` files (the bench signal cut into equal parts) rendered with each worker
    count through :func:`voxflip.corpus.render_corpus`, into a fresh folder each time."""
    import shutil
    import tempfile

    import soundfile as sf

    from voxflip.engine.registry import Direction, default_converter, get_converter

    from .corpus import RenderSettings, jobs_from_folder, render_corpus

    spec = get_converter(converter) if converter else default_converter(Direction.TO_SPEECH)
    options: dict = {}
    results: list[CorpusBenchResult] = []
    with tempfile.TemporaryDirectory() as folder:
        inputs = os.path.join(folder, "in")
        os.makedirs(inputs)
        audio, _ = sf.read(_bench_wav(sample_rate, seconds, folder), dtype="float32")
        part = audio.shape[0] // files
        for i in range(files):
            sf.write(os.path.join(inputs, f"clip_{i:03d}.wav"), audio[i * part:(i + 1) * part], sample_rate,
                     subtype="FLOAT")
        if spec.direction is Direction.TO_SINGING:
            melody = os.path.join(folder, "tune.json")
            with open(melody, "w") as f:
                json.dump([{"start_s": n.start_s, "end_s": n.end_s, "midi_note": n.midi_note}
                           for n in _bench_melody(part / sample_rate).notes], f)
            options["melody"] = melody
        if model is not None and "model_path" in spec.option_names:
            options["model_path"] = model
        settings = RenderSettings(to=spec.direction.value, method=spec.name, options=options)
        for count in workers:
            out = os.path.join(folder, f"out_{count}")
            shutil.rmtree(out, ignore_errors=True)
            result = render_corpus(jobs_from_folder(inputs, out), settings, out, workers=count)
            if result.failed:
                raise RuntimeError(f"corpus benchmark: {result.failed[0]['id']}: {result.failed[0].get('error')}")
            total = files * part / sample_rate
            results.append(CorpusBenchResult(spec.name, count, files, total, result.wall_seconds,
                                             total / result.wall_seconds, 0.0))
    for r in results:
        r.speedup = results[0].wall_s / r.wall_s
    return results


def format_corpus_table(results: list[CorpusBenchResult]) -> str:
    head = "| converter | workers | files | audio | wall time | times real time | speed-up |\n| --- | --- | --- | --- | --- | --- | --- |"
    rows = [f"| {r.converter} | {r.workers} | {r.files} | {r.seconds:.0f} s | {r.wall_s:.2f} s | "
            f"{r.times_real_time:.1f}x | {r.speedup:.2f}x |" for r in results]
    return "\n".join([head, *rows])


if __name__ == "__main__":
    from voxflip.streaming.heap import keep_freed_memory

    keep_freed_memory()   # as the command line does (the baseline child too: the same process settings)
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        conv, ms, chunk, rate, signal, core, launched, model, floor, vocoder, content = sys.argv[2:13]
        _child(conv, float(ms), float(chunk), int(rate), signal, None if core == "-1" else int(core), float(launched),
               model or None, float(floor) if floor else None, vocoder or None, content or None)
    elif len(sys.argv) > 1 and sys.argv[1] == "--offline-child":
        conv, wav, folder, core, model, cores = sys.argv[2:8]
        _offline_child(conv, wav, folder, None if core == "-1" else int(core), model or None, int(cores))
    elif len(sys.argv) > 1 and sys.argv[1] == "--baseline-child":
        wav, core = sys.argv[2:4]
        _baseline_child(wav, None if core == "-1" else int(core))

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


def default_converters() -> tuple[str, ...]:
    """Every registered converter that can run here (what it needs is installed)."""
    from voxflip.engine.registry import converters

    return tuple(spec.name for spec in converters() if not spec.missing())


def bench_converter(name: str, chunk_ms: float | None, seconds: float, model: str | None = None):
    """The converter ``name`` as the benchmark runs it: at ``voxflip live``'s chunk unless ``chunk_ms``,
    a converter to singing on a generated melody that lasts ``seconds``."""
    from voxflip.engine.melody import Melody, Note
    from voxflip.engine.registry import Direction, get_converter, make_converter

    spec = get_converter(name)
    options: dict = {"chunk_ms": chunk_ms or spec.grid.live_ms}
    if spec.direction is Direction.TO_SINGING:
        notes = tuple(Note(0.4 * i, 0.4 * i + 0.38, 60 + (i * 5) % 12) for i in range(int(seconds / 0.4) + 2))
        options["melody"] = Melody(notes, "bench")
    if model is not None and "model_path" in spec.option_names:
        options["model_path"] = model
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


def _child(converter: str, block_ms: float, chunk_ms: float, device_rate: int, signal_path: str, core: int | None,
           launched: float, model: str | None) -> None:
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    import resource

    import numpy as np

    from voxflip.streaming.live import prefill_blocks_for
    from voxflip.streaming.realtime import RealtimeStreamer
    from voxflip.streaming.streamer import Streamer

    audio = np.load(signal_path)
    seconds = audio.shape[0] / device_rate
    conv = bench_converter(converter, chunk_ms or None, seconds, model)
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
              model: str | None = None) -> list[BenchResult]:
    """Benchmark each converter (default: :func:`default_converters`) at each block size;
    ``chunk_ms=None`` takes what ``voxflip live`` uses."""
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
                       signal, "-1" if core is None else str(core), repr(launched), model or ""]
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
        f"| {r.converter} | {r.block_ms:g} / {r.chunk_ms:g} ms | {r.algorithmic_latency_ms:.1f} / {r.declared_latency_ms:.1f} ms | "
        f"{r.compute_p50_ms:.2f} / "
        f"{r.compute_p99_ms:.2f} ms | {r.rtf_p50:.2f} / {r.rtf_p99:.2f} / {r.rtf_mean:.2f} | {r.peak_rss_mb:.0f} MB | "
        f"{r.startup_s:.2f} s |"
        for r in results
    ]
    return "\n".join([head, *rows])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        conv, ms, chunk, rate, signal, core, launched, model = sys.argv[2:10]
        _child(conv, float(ms), float(chunk), int(rate), signal, None if core == "-1" else int(core), float(launched),
               model or None)

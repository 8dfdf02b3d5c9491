"""Soak: an hour of audio through the live engine, with flat per-block time and flat memory.

The engine is what ``voxflip live --input-file X --fast`` runs (the default converters of
both directions behind a :class:`~voxflip.streaming.live_control.LiveController`, a
:class:`~voxflip.streaming.live.LiveEngine` paced in lockstep by
:func:`~voxflip.streaming.live.run_file`), fed 60 minutes of a synthetic voice made block by
block (so the input itself holds no memory), with a parameter change every few seconds. Every
minute of audio the test notes the wall time per block and the process's resident memory;
the last ten minutes must cost no more per block than the first ten (within 30 %), and memory
must not grow by more than 16 MiB after the first five minutes. It prints the table that
docs/performance.md ("Soak") records.

Slow (about ten minutes on 2 cores): ``pytest -m slow tests/test_torture_soak.py -s``.
``VOXFLIP_SOAK_MINUTES`` shortens it for a try.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from voxflip.engine.params import ParamChange
from voxflip.engine.registry import live_default_converter, make_converter
from voxflip.streaming.live import LiveEngine, prefill_blocks_for, run_file
from voxflip.streaming.live_control import LiveController

RATE = 48_000
BLOCK = 256
MINUTES = float(os.environ.get("VOXFLIP_SOAK_MINUTES", "60"))

pytestmark = pytest.mark.slow


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _voice_blocks(total: int):
    """A buzz with a moving pitch, syllable-like level and a pause every 7 s, made a block at a time."""
    phase = 0.0
    rng = np.random.default_rng(0)
    for start in range(0, total, BLOCK):
        n = min(BLOCK, total - start)
        t = (start + np.arange(n)) / RATE
        f0 = 170.0 + 60.0 * np.sin(2 * np.pi * 0.23 * t) + 20.0 * np.sin(2 * np.pi * 3.1 * t)
        ph = phase + 2 * np.pi * np.cumsum(f0) / RATE
        phase = float(ph[-1])
        level = 0.25 * (0.6 + 0.4 * np.sin(2 * np.pi * 4.0 * t)) * ((t % 7.0) < 6.2)
        buzz = sum(np.sin(k * ph) / k for k in range(1, 9))
        yield (level * buzz + 0.003 * rng.standard_normal(n)).astype(np.float32)


def test_an_hour_through_the_live_engine_keeps_time_and_memory_flat() -> None:
    converters = {d: make_converter(d, live_default_converter(d).name, **({"live_notes": True} if d == "singing" else {}))
                  for d in ("speech", "singing")}
    controller = LiveController(converters, "speech", RATE)
    chunk_s = converters["speech"].chunk_samples / converters["speech"].sample_rate
    engine = LiveEngine(controller.realtime, RATE, BLOCK, prefill_blocks=prefill_blocks_for(chunk_s, RATE, BLOCK),
                        apply_param=controller.apply)
    engine.warm_up()
    total = int(MINUTES * 60 * RATE)
    per_minute = 60 * RATE // BLOCK
    marks: list[tuple[float, int]] = []   # (wall clock, RSS) at the end of each minute of audio
    moves = [ParamChange("transpose", 2.0), ParamChange("mix", 0.8), ParamChange("transpose", -1.0),
             ParamChange("gain", -3.0), ParamChange("mode", "singing"), ParamChange("note", (60, 0.8)),
             ParamChange("note", (64, 0.8)), ParamChange("mode", "speech"), ParamChange("mix", 1.0)]
    peak = [0.0]

    def on_block(index: int) -> None:
        if index % (5 * RATE // BLOCK) == 0:   # a change every 5 s, as a DAW might send
            engine.params.put_nowait(moves[(index // (5 * RATE // BLOCK)) % len(moves)])
        if index % per_minute == per_minute - 1:
            marks.append((time.perf_counter(), _rss_bytes()))

    def write(block: np.ndarray) -> None:
        assert np.isfinite(block).all()
        peak[0] = max(peak[0], float(np.max(np.abs(block))) if block.size else 0.0)

    engine.start()
    started = time.perf_counter()
    try:
        run_file(engine, _voice_blocks(total), write, realtime=False, on_block=on_block)
    finally:
        engine.stop()
    assert engine.stats.worker_errors == 0
    assert peak[0] > 0.01, "the soak produced silence"
    times = np.diff([started] + [t for t, _ in marks]) / per_minute * 1e6   # us per block, per minute of audio
    rss = np.array([r for _, r in marks]) / 2**20
    print("\nminute  us/block  RSS MiB")
    for minute, (us, mib) in enumerate(zip(times, rss, strict=True), 1):
        print(f"{minute:>6}  {us:>8.0f}  {mib:>7.1f}")
    window = max(1, len(times) // 6)
    first, last = float(np.median(times[:window])), float(np.median(times[-window:]))
    print(f"first {window} min: {first:.0f} us/block; last {window} min: {last:.0f} us/block; "
          f"RSS {rss[min(4, len(rss) - 1)]:.1f} -> {rss[-1]:.1f} MiB; real-time factor "
          f"{(time.perf_counter() - started) / (total / RATE):.3f}")
    assert last <= 1.3 * first, f"per-block time grew: {first:.0f} -> {last:.0f} us"
    assert rss[-1] - rss[min(4, len(rss) - 1)] <= 16.0, f"memory grew: {rss.tolist()}"

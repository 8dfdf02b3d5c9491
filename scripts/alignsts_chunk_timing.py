"""Time an AlignSTS export chunk by chunk, through its step graphs and through the whole graph on slices.

    .venv/bin/python scripts/alignsts_chunk_timing.py exports/alignsts_abs50_step [--seconds 10] [--chunks 4,16,64,512]

Converts ``--seconds`` of random content into as long a song (ratio 0.2 content rows per frame),
ONNX Runtime on one thread, best of three, and prints a Markdown table: wall time and real-time
factor per chunk for both paths, and the largest difference between their mels (the step graphs
equal the slices to float rounding). Content, F0 and voice are random: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from voxflip.engine.converters.alignsts_model import AlignSTSModel, BlockNoise, target_mel


def _stepped(model: AlignSTSModel, content, f0, timbre, ratio: float, chunk: int) -> np.ndarray:
    graphs = model.step_graphs()
    t = f0.shape[0]
    stream = graphs.stream(ratio, t, BlockNoise(0, model.steps, model.n_mels))
    stream.set_voice(model.timbre_input(timbre))
    stream.push_content(content)
    stream.end_content()
    bins = model.f0_input(f0)
    out = []
    for a in range(0, t, chunk):
        b = min(t, a + chunk)
        stream.feed(bins, b + graphs.delay)
        out.append(stream.take(a, b))
    return np.concatenate(out, axis=1).T


def _sliced(model: AlignSTSModel, content, f0, timbre, ratio: float, chunk: int) -> np.ndarray:
    return model.sing(content, f0, timbre, ratio=ratio, chunk_frames=chunk,
                      noise=BlockNoise(0, model.steps, model.n_mels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an export folder of voxflip export-alignsts with step graphs")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--chunks", default="4,16,64,512", help="chunks in frames of 5.33 ms")
    args = parser.parse_args()
    model = AlignSTSModel(args.model, threads=1)
    frame_s = target_mel().frame_s
    t, ratio = int(args.seconds / frame_s), 0.2
    rng = np.random.default_rng(0)
    content = rng.standard_normal((int(t * ratio) + 1, 512)).astype(np.float32)
    f0 = (220.0 * 2 ** (rng.integers(-5, 7, t // 64 + 1).repeat(64)[:t] / 12)).astype(np.float32)
    timbre = (rng.standard_normal((375, model.n_mels)) - 5.0).astype(np.float32)
    print(f"{model.describe()}: {args.seconds:g} s of song, ONNX Runtime on one thread, best of three\n")
    print("| chunk | step graphs: wall time, RTF | whole graph on slices: wall time, RTF | largest difference |")
    print("| --- | --- | --- | --- |")
    for chunk in (int(c) for c in args.chunks.split(",")):
        times, mels = {}, {}
        for name, run in (("step", _stepped), ("sliced", _sliced)):
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                mels[name] = run(model, content, f0, timbre, ratio, chunk)
                best = min(best, time.perf_counter() - start)
            times[name] = best
        diff = float(np.max(np.abs(mels["step"] - mels["sliced"])))
        cells = [f"{times[n]:.2f} s, {times[n] / args.seconds:.3f}" for n in ("step", "sliced")]
        print(f"| {chunk} frames ({chunk * frame_s * 1000:.1f} ms) | {cells[0]} | {cells[1]} | {diff:.1e} |")


if __name__ == "__main__":
    main()

"""Many streams per GPU, measured: the PyTorch batched flow step at 1, 8, 64 and 256 streams.

Run by ``scripts/gpu_check.sh`` on a GPU machine that has only PyTorch and numpy (this module
imports nothing else of voxflip's dependencies), and with ``--device cpu`` at a small size
anywhere (a test does). For each stream count it times ``--chunks`` chunk steps of the whole
batch, inputs copied from the host and outputs back (what a server does per chunk), after
``--warmup`` steps, and writes JSON:

- ``p50_ms``/``p99_ms``/``max_ms``: the time of one chunk step for all the streams;
- ``realtime``: p99 under the chunk's own duration (20 ms for the shipped model);
- ``streams_at_realtime_throughput``: ``streams * chunk_ms / p50_ms``, the streams this batch
  size would carry if the GPU did nothing else (an upper bound, not a latency guarantee);
- ``peak_memory_mib`` on CUDA.

``summary.streams_per_gpu_measured`` is the largest stream count measured whose p99 stayed
under half a chunk (headroom for the rest of the pipeline: features, vocoder, transfers).

Weights are seeded random numbers in the shipped model's shapes (the manifest's
``model_config``): the compute does not depend on their values, and loading the real ones
would need onnx. The model is the ``step`` graph (the ``nodur`` path: encoder, prior,
durations, inverse flow), not the vocoder.

    python -m trt_build.gpu_check --device cuda --out gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from .torch_server import FlowStepNet, TorchBatchedServer, parameter_count, random_weights

DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / "voxflip" / "data" / "models" / "s2s_flow" / "model.manifest.json"
#: the shipped model's shape, used when no manifest is found (voxflip installed as a wheel)
FALLBACK = {"model_config": {"n_mels": 80, "hidden": 128, "encoder_layers": 6, "encoder_kernel": 5, "lookahead": 2,
                             "flow_blocks": 6, "flow_hidden": 96, "flow_layers": 3, "duration_hidden": 64,
                             "noise_scale": 0.0, "residual": True},
            "chunk_frames": 2, "sample_rate": 16000, "hop_samples": 160}


def _streams(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--streams {text!r} must be comma-separated whole numbers") from None
    if not values or any(v < 1 or v > 65536 for v in values):
        raise argparse.ArgumentTypeError(f"--streams {text!r}: each count must be in 1..65536")
    return values


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trt_build.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--streams", type=_streams, default=[1, 8, 64, 256], help="comma-separated (default 1,8,64,256)")
    parser.add_argument("--chunks", type=int, default=300, help="timed chunk steps per stream count (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps first (default 30)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    parser.add_argument("--no-cuda-graph", action="store_true", help="call the module per chunk instead of a graph")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST,
                        help="a flow model manifest for the model's shape (default: the shipped model's)")
    parser.add_argument("--budget-s", type=float, default=240.0,
                        help="stop starting new stream counts after this many seconds (default 240)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads torch uses (default 1: one stream's worth of a shared machine)")
    parser.add_argument("--out", type=Path, help="write the JSON here (default: stdout only)")
    return parser


def measure(net: FlowStepNet, streams: int, chunk_frames: int, chunks: int, warmup: int, device: torch.device,
            dtype: torch.dtype, cuda_graph: bool, seed: int = 0) -> dict:
    """Time ``chunks`` steps of ``streams`` streams (see the module docstring); returns one result row."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    server = TorchBatchedServer(net, streams, chunk_frames, device=device, cuda_graph=cuda_graph and cuda, dtype=dtype)
    setup_s = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(seed)
    n_mels = net.cfg["n_mels"]
    pool = [((torch.randn(streams, n_mels, chunk_frames, generator=gen) - 5.0).to(dtype),
             torch.randn(streams, n_mels, chunk_frames, generator=gen).to(dtype)) for _ in range(4)]
    if cuda:
        pool = [(m.pin_memory(), n.pin_memory()) for m, n in pool]
    times = []
    finite = True
    for i in range(warmup + chunks):
        mel, noise = pool[i % len(pool)]
        start = time.perf_counter()
        out = server.step(mel, noise)
        speech = out[0].to("cpu")           # the result back on the host (synchronises)
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed * 1000.0)
        if i == warmup + chunks - 1:
            finite = bool(torch.isfinite(speech).all())
    arr = np.array(times)
    row = {"streams": streams, "chunks": chunks, "p50_ms": float(np.percentile(arr, 50)),
           "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max()), "mean_ms": float(arr.mean()),
           "setup_s": round(setup_s, 3), "outputs_finite": finite}
    if cuda:
        row["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.chunks < 10 or args.warmup < 0:
        print(f"gpu_check: --chunks {args.chunks} must be >= 10 and --warmup {args.warmup} >= 0", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: --device {args.device}: torch {torch.__version__} sees no CUDA GPU; use --device cpu",
              file=sys.stderr)
        return 2
    try:
        manifest = json.loads(args.manifest.read_text(encoding="utf-8"))
        source = str(args.manifest)
    except (OSError, ValueError):
        manifest, source = FALLBACK, "built-in shape of the shipped model"
    cfg = manifest["model_config"]
    chunk_frames = int(manifest["chunk_frames"])
    chunk_ms = 1000.0 * chunk_frames * manifest["hop_samples"] / manifest["sample_rate"]
    dtype = getattr(torch, args.dtype)
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(0)
    net = random_weights(FlowStepNet(cfg)).to(device)
    started = time.perf_counter()
    rows, skipped = [], []
    for streams in args.streams:
        if time.perf_counter() - started > args.budget_s:
            skipped.append(streams)
            continue
        row = measure(net, streams, chunk_frames, args.chunks, args.warmup, device, dtype, not args.no_cuda_graph)
        row["realtime"] = row["p99_ms"] <= chunk_ms
        row["streams_at_realtime_throughput"] = math.floor(streams * chunk_ms / row["p50_ms"])
        rows.append(row)
        print(f"{streams:5d} streams: p50 {row['p50_ms']:.3f} ms, p99 {row['p99_ms']:.3f} ms per {chunk_ms:g} ms chunk",
              file=sys.stderr)
    headroom = [r["streams"] for r in rows if r["p99_ms"] <= chunk_ms / 2]
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "cuda_graph": device.type == "cuda" and not args.no_cuda_graph,
        "model": {"source": source, "parameters": parameter_count(net), "weights": "seeded random (timing only)"},
        "chunk_frames": chunk_frames,
        "chunk_ms": chunk_ms,
        "results": rows,
        "skipped_streams": skipped,
        "summary": {
            "streams_per_gpu_measured": max(headroom, default=0),
            "rule": "largest measured stream count whose p99 chunk step is under half a chunk",
            "streams_at_realtime_throughput_best": max((r["streams_at_realtime_throughput"] for r in rows), default=0),
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

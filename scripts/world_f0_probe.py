"""What the F0 track costs WORLD copy synthesis on dev-data's real singing, by DNSMOS.

Each singing clip (at the WORLD converters' 24 kHz) goes through the WORLD converters' own analysis
and synthesiser (`input-world` of `voxflip eval`) with its F0 track replaced, and its envelope and
aperiodicity recomputed for that track with pyworld's CheapTrick and D4C (voxflip's agree with them
to rounding: the `ours` row equals `input-world` within 0.01):

- `ours`: voxflip's own track (YIN, its instantaneous-frequency refinement and the tidy step, as the
  converters see it);
- `ours-unrefined`: the same without the refinement (`PitchConfig.refine` off);
- `harvest`: pyworld's Harvest (a whole-file tracker, with a path search);
- `harvest-voicing`: voxflip's values, voiced where Harvest is (Harvest's values where only it voices);
- `ours-voicing-harvest-values`: voiced where voxflip is, with Harvest's values where both voice;
- `ours-stonemask`: voxflip's track refined by pyworld's StoneMask (instantaneous frequency of the
  first harmonics, each frame alone): does a finer value in each frame give what Harvest's values do?
- `ours-median5`: voxflip's values through a 5-frame median within each voiced run (smoother values);
- `ours-extended-N`: voxflip's voicing extended by N frames at both ends of every voiced run (the edge
  F0 held): does Harvest's longer voicing give its gain by itself?

Prints DNSMOS OVRL per variant and each variant paired against `ours` (mean, 95% interval, clips up
and down), and the clips where the variants differ most.

    python scripts/world_f0_probe.py --manifest ../shared/dev-data/manifest.jsonl [--workers 2]

About 18 minutes on two cores. Needs the eval extra (pyworld, speechmos).
"""

from __future__ import annotations

import argparse
import json
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RATE = 24_000
HOP = 120
VARIANTS = ("ours", "ours-unrefined", "harvest", "harvest-voicing", "ours-voicing-harvest-values", "ours-stonemask", "ours-median5",
            "ours-extended-2", "ours-extended-6")


def _runs(voiced: np.ndarray) -> list[tuple[int, int]]:
    """The voiced runs of a track, as (start, stop) frame pairs."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _median5(f0: np.ndarray) -> np.ndarray:
    from scipy.signal import medfilt

    out = f0.copy()
    for a, b in _runs(f0 > 0):
        if b - a >= 5:
            out[a:b] = medfilt(f0[a:b], 5)
    return out


def _extended(f0: np.ndarray, n: int) -> np.ndarray:
    out = f0.copy()
    for a, b in _runs(f0 > 0):
        lo, hi = max(0, a - n), min(f0.shape[0], b + n)
        out[lo:a] = np.where(out[lo:a] > 0, out[lo:a], f0[a])
        out[b:hi] = np.where(out[b:hi] > 0, out[b:hi], f0[b - 1])
    return out


def _copy_synthesis(x: np.ndarray, override: dict | None, log: list | None, *, refine: bool = True) -> np.ndarray:
    from voxflip.engine.converters.world_pipeline import WorldPipelineConverter
    from voxflip.engine.features.pitch import PitchConfig
    from voxflip.engine.features.world import AnalysisConfig, Frames
    from voxflip.streaming.streamer import Streamer

    class Copy(WorldPipelineConverter):
        def init_custom(self) -> None:
            return None

        def transform(self, frames, first, state, end):  # type: ignore[no-untyped-def]
            if log is not None:
                log.append((first, frames.f0_hz.copy()))
            if override is None:
                return frames
            at = np.minimum(np.arange(first, first + len(frames)), override["f0"].shape[0] - 1)
            return Frames(override["f0"][at], frames.periodicity, frames.level_db, override["sp"][at],
                          override["ap"][at], frames.scale_exponent)

    streamer = Streamer(Copy(AnalysisConfig(pitch=PitchConfig(refine=refine))), RATE, RATE)
    return np.concatenate([streamer.process(x.astype(np.float32)), streamer.flush()])


def score_clip(path: str) -> dict[str, float]:
    warnings.filterwarnings("ignore")
    import pyworld
    import soundfile as sf
    from scipy.signal import resample_poly

    from voxflip.trainer.eval.quality import dnsmos

    audio, rate = sf.read(path, dtype="float64")
    x = resample_poly(audio, RATE // 100, rate // 100) if rate != RATE else audio
    frames = -(-x.shape[0] // HOP) + 1
    def track(refine: bool) -> np.ndarray:
        log: list = []
        _copy_synthesis(x, None, log, refine=refine)
        out = np.zeros(frames)
        for first, f0 in log:
            stop = min(frames, first + f0.shape[0])
            out[first:stop] = f0[: stop - first]
        return out

    ours = track(True)
    harvest, _ = pyworld.harvest(x, RATE, f0_floor=71.0, f0_ceil=800.0, frame_period=1000.0 * HOP / RATE)
    harvest = np.pad(harvest, (0, max(0, frames - harvest.shape[0])))[:frames]
    tracks = {
        "ours": ours,
        "ours-unrefined": track(False),
        "harvest": harvest,
        "harvest-voicing": np.where(harvest > 0, np.where(ours > 0, ours, harvest), 0.0),
        "ours-voicing-harvest-values": np.where(ours > 0, np.where(harvest > 0, harvest, ours), 0.0),
    }
    times = np.arange(frames) * HOP / RATE
    tracks["ours-stonemask"] = np.where(ours > 0, pyworld.stonemask(x, np.ascontiguousarray(ours), times, RATE), 0.0)
    tracks["ours-median5"] = _median5(ours)
    tracks["ours-extended-2"] = _extended(ours, 2)
    tracks["ours-extended-6"] = _extended(ours, 6)
    scores = {}
    for name, f0 in tracks.items():
        f0 = np.ascontiguousarray(f0)
        sp = pyworld.cheaptrick(x, f0, times, RATE, fft_size=1024, f0_floor=71.0)
        ap = pyworld.d4c(x, f0, times, RATE, fft_size=1024)
        y = _copy_synthesis(x, {"f0": f0, "sp": sp, "ap": ap}, None).astype(np.float64)
        peak = float(np.max(np.abs(y)))
        scores[name] = dnsmos((y / peak * 0.9 if peak > 1.0 else y).astype(np.float32), RATE)["ovrl"]
    scores["voiced_ours"] = float(np.mean(ours > 0))
    scores["voiced_harvest"] = float(np.mean(harvest > 0))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    manifest = Path(args.manifest)
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    paths = [str(manifest.parent / row["singing"]) for row in rows]
    with ProcessPoolExecutor(args.workers) as pool:
        results = dict(zip([row["id"] for row in rows], pool.map(score_clip, paths), strict=True))
    ours = np.array([r["ours"] for r in results.values()])
    n = ours.shape[0]
    print(f"{n} clips; frames voiced: ours {np.mean([r['voiced_ours'] for r in results.values()]):.3f}, "
          f"Harvest {np.mean([r['voiced_harvest'] for r in results.values()]):.3f}")
    print("| F0 track | DNSMOS OVRL | paired against ours | clips up / down |")
    print("| --- | --- | --- | --- |")
    from scipy.stats import t as student

    for name in VARIANTS:
        v = np.array([r[name] for r in results.values()])
        d = v - ours
        half = float(student.ppf(0.975, n - 1) * d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        print(f"| {name} | {v.mean():.3f} | {d.mean():+.3f} ± {half:.3f} | {int(np.sum(d > 0.005))} / "
              f"{int(np.sum(d < -0.005))} |")
    print("\nlargest gains from Harvest's values:")
    gains = sorted(results.items(), key=lambda t: t[1]["ours"] - t[1]["ours-voicing-harvest-values"])
    for clip, r in gains[:5]:
        print(f"  {clip}: ours {r['ours']:.2f}, Harvest's values {r['ours-voicing-harvest-values']:.2f}, "
              f"Harvest {r['harvest']:.2f}")


if __name__ == "__main__":
    main()

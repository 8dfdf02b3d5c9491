"""voxflip's F0 tracker against Praat's on every recording of ../shared/dev-data (sung and spoken).

Prints, per side and over all 50 recordings, what docs/converters.md quotes: the median difference
in cents where both call a frame voiced, the share of those frames more than 50 cents apart
("gross") and more than 600 cents apart (octave and twelfth errors), and the share of frames whose
voicing they disagree on; then the recordings with the most octave errors. Both run at the WORLD
converters' rate and frame grid (24 kHz, 5 ms) with the same range (60-1100 Hz); Praat's
autocorrelation tracker, with its path search over the whole file, is the reference.

    python scripts/pitch_vs_praat.py [--manifest ../shared/dev-data/manifest.jsonl] [--worst 5]

About a minute on two cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import parselmouth
import soundfile as sf
from scipy.signal import resample_poly

from voxflip.engine.features.pitch import PitchConfig, estimate_f0

RATE = 24_000
HOP = 120


def praat_on_grid(x: np.ndarray, frames: int, config: PitchConfig) -> np.ndarray:
    pitch = parselmouth.Sound(x, RATE).to_pitch_ac(time_step=HOP / RATE, pitch_floor=config.f0_min_hz,
                                                   pitch_ceiling=config.f0_max_hz)
    values = pitch.selected_array["frequency"]
    nearest = np.clip(np.round((np.arange(frames) * HOP / RATE - pitch.xs()[0]) * RATE / HOP).astype(int),
                      0, values.shape[0] - 1)
    return values[nearest]


def compare(ours: np.ndarray, praat: np.ndarray) -> dict[str, float]:
    both = (ours > 0) & (praat > 0)
    cents = np.abs(1200.0 * np.log2(ours[both] / praat[both]))
    return {"frames": float(both.sum()), "median_cents": float(np.median(cents)) if cents.size else 0.0,
            "gross": float(np.mean(cents > 50.0)) if cents.size else 0.0,
            "octave": float(np.mean(cents > 600.0)) if cents.size else 0.0,
            "voicing": float(np.mean((ours > 0) != (praat > 0)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default=str(Path(__file__).resolve().parents[2] / "shared" / "dev-data"
                                                  / "manifest.jsonl"))
    parser.add_argument("--worst", type=int, default=5, help="list this many recordings with the most octave errors")
    args = parser.parse_args()
    manifest = Path(args.manifest)
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    config = PitchConfig()
    results: dict[str, list[tuple[str, dict[str, float]]]] = {"singing": [], "speech": []}
    for side, found in results.items():
        for row in rows:
            audio, rate = sf.read(manifest.parent / row[side], dtype="float64")
            x = resample_poly(audio, RATE // 100, rate // 100) if rate != RATE else audio
            ours = estimate_f0(x, RATE, HOP, config)
            found.append((row["id"], compare(ours, praat_on_grid(x, ours.shape[0], config))))

    def line(name: str, group: list[tuple[str, dict[str, float]]]) -> str:
        weights = np.array([r["frames"] for _, r in group])
        mean = {k: float(np.mean([r[k] for _, r in group])) for k in ("gross", "octave", "voicing")}
        pooled = {k: float(np.sum(weights * [r[k] for _, r in group]) / weights.sum()) for k in ("gross", "octave")}
        median = float(np.median([r["median_cents"] for _, r in group]))
        return (f"| {name} | {len(group)} | {median:.1f} | {100 * pooled['gross']:.2f}% | {100 * pooled['octave']:.2f}% "
                f"| {100 * mean['voicing']:.2f}% |")

    print("| recordings | n | median difference (cents) | gross > 50 cents | octave > 600 cents | voicing disagrees |")
    print("| --- | --- | --- | --- | --- | --- |")
    for side, group in results.items():
        print(line(side, group))
    print(line("all", results["singing"] + results["speech"]))
    everything = [(f"{i} ({side})", r) for side, group in results.items() for i, r in group]
    print("\nmost octave errors:")
    for name, r in sorted(everything, key=lambda t: -t[1]["octave"])[: args.worst]:
        print(f"  {name}: {100 * r['octave']:.1f}% of frames both voice, gross {100 * r['gross']:.1f}%")


if __name__ == "__main__":
    main()

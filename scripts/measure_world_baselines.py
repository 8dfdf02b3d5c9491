"""Measure the WORLD converters on the real sung/spoken pairs of ../shared/dev-data.

Prints the figures quoted in docs/converters.md: held-note share, duration ratio and
speaking pitch of world-nodur / world-dur against the real singing and speech of each pair.
Pitch is tracked with Praat (parselmouth), independent of voxflip's own tracker.

    python scripts/measure_world_baselines.py [--dev-data ../shared/dev-data]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import parselmouth
import soundfile as sf

from voxflip.engine.registry import make_converter
from voxflip.streaming.streamer import Streamer
from voxflip.trainer.eval.metrics import held_pitch_fraction as held_fraction


def praat_f0(audio: np.ndarray, rate: int) -> np.ndarray:
    pitch = parselmouth.Sound(audio.astype(np.float64), rate).to_pitch_ac(
        time_step=0.005, pitch_floor=75.0, pitch_ceiling=1000.0
    )
    return pitch.selected_array["frequency"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dev-data", default=str(Path(__file__).resolve().parents[2] / "shared" / "dev-data"))
    args = parser.parse_args()
    root = Path(args.dev_data)
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines() if line.strip()]
    table: dict[str, list[tuple[float, float, float]]] = {k: [] for k in ("singing", "speech", "world-nodur", "world-dur")}
    for row in rows:
        sung, rate = sf.read(root / row["singing"], dtype="float32")
        spoken, _ = sf.read(root / row["speech"], dtype="float32")
        sung_f0 = praat_f0(sung, rate)
        sung_median = np.median(sung_f0[sung_f0 > 0])
        signals = {"singing": sung, "speech": spoken}
        for method in ("world-nodur", "world-dur"):
            streamer = Streamer(make_converter("speech", method), rate)
            signals[method] = np.concatenate([streamer.process(sung), streamer.flush()])
        for name, audio in signals.items():
            f0 = praat_f0(audio, rate)
            shift = 12.0 * np.log2(np.median(f0[f0 > 0]) / sung_median)
            table[name].append((held_fraction(f0), audio.shape[0] / sung.shape[0], shift))
    print(f"{len(rows)} pairs; mean (min..max) over pairs")
    print("| audio | held-note share | duration / sung duration | median F0 vs sung median (semitones) |")
    print("| --- | --- | --- | --- |")
    for name, values in table.items():
        v = np.array(values)
        cells = [f"{v[:, k].mean():.2f} ({v[:, k].min():.2f}..{v[:, k].max():.2f})" for k in range(3)]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

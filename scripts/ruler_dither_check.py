"""Is the median CER of a few inaudibly dithered copies a steadier ruler than one reading?

The control of docs/results.md ("The low-latency setting"): the default singing -> speech converter
as ``voxflip live`` plays it at 10 ms and at 5 ms chunks gives the same audio to one 16-bit step (the
clips are rounded to 16 bits, as ``voxflip eval`` writes them). Each of the 25 dev-data clips is read
once, and as the median of five copies with white noise at -80 dBFS (seeds 0-4); the script prints how
many identical-audio pairs the ruler reads differently either way. About 10 minutes on two cores:

    python scripts/ruler_dither_check.py [../shared/dev-data/manifest.jsonl]
"""

from __future__ import annotations

import sys

import numpy as np

from voxflip.engine.registry import make_converter
from voxflip.trainer.data.manifest import read_manifest
from voxflip.trainer.eval.asr import score_transcript
from voxflip.trainer.eval.systems import _convert_live
from voxflip.trainer.eval.whisper import transcribe

COPIES = 5
NOISE = 1e-4        # -80 dBFS


def cer(audio: np.ndarray, rate: int, text: str, language: str) -> float:
    return min(1.0, score_transcript(text, transcribe(audio, rate, language=language), language)["cer"])


def main(manifest: str) -> None:
    single, median = [], []
    for entry in read_manifest(manifest):
        pair = []
        for chunk_ms in (10, 5):
            audio, rate = _convert_live(entry.singing, make_converter("speech", "world-nodur", chunk_ms=chunk_ms))
            audio = np.round(np.clip(audio, -1, 1) * 32767) / 32767        # as the eval's 16-bit clips
            copies = [cer(audio + np.random.default_rng(s).normal(0, NOISE, audio.shape), rate, entry.text,
                          entry.language) for s in range(COPIES)]
            pair.append((cer(audio, rate, entry.text, entry.language), float(np.median(copies))))
        single.append([p[0] for p in pair])
        median.append([p[1] for p in pair])
        print(entry.id, pair, flush=True)
    for name, m in (("one reading", np.array(single)), (f"median of {COPIES}", np.array(median))):
        d = np.abs(m[:, 1] - m[:, 0])
        print(f"{name}: {np.sum(d > 0.005)} of {len(d)} pairs read differently, mean |d| {d.mean():.3f}, max {d.max():.3f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/dev-data/manifest.jsonl")

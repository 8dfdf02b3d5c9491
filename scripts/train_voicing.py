"""Train the learned voicing decision of ``engine/features/voicing.py`` (prints its constants).

For every recording of a manifest (its speech and its singing, resampled to the analysis rate), the
F0 estimator runs twice on the same frames: with the default window (33 ms, voices from 60 Hz),
whose voicing is the label, and with the 20 ms window of ``--voice-floor 100``, whose window gives
the features (``voicing_features``). A logistic regression (standardised features, Newton's
method, a small L2 penalty) is fitted on the frames above the silence level. With ``--check`` it
also reports, on a second manifest, how often the rule and the model disagree with the default.

    python scripts/train_voicing.py --manifest data/synth30/manifest.jsonl --items 160 \\
        --check ../shared/dev-data/manifest.jsonl

Train on redistributable data only (the synthetic corpus): the constants ship in the engine.
About 3 minutes on one core for 160 items.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

FLOOR_HZ = 100.0


def frame_features(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features of the short window, the default's voicing, the rule's voicing and the level."""
    from dataclasses import replace

    from voxflip.engine.features.frames import frame_matrix, pad_for_frames
    from voxflip.engine.features.pitch import yin_frames
    from voxflip.engine.features.voicing import voicing_features
    from voxflip.engine.features.world import AnalysisConfig

    base = AnalysisConfig()
    short = replace(base.for_voice_floor(FLOOR_HZ).pitch, voicing="periodicity")
    rate, hop = base.sample_rate, base.hop_samples
    long_win, short_win = base.pitch.window_samples(rate), short.window_samples(rate)
    padded, start, count = pad_for_frames(audio, hop, long_win)
    long_frames = frame_matrix(padded, start, 0, count, hop, long_win)
    offset = (long_win - short_win) // 2
    short_frames = np.ascontiguousarray(long_frames[:, offset:offset + short_win])
    label = yin_frames(long_frames, rate, base.pitch)[0] > 0
    f0, periodicity = yin_frames(short_frames, rate, short)
    level_db = 20.0 * np.log10(np.sqrt(np.mean(short_frames * short_frames, axis=1)) + 1e-12)
    rule = f0 > 0
    return voicing_features(short_frames, f0, periodicity, level_db, rule), label, rule, level_db


def load(manifest: Path, items: int) -> tuple[np.ndarray, ...]:
    from voxflip.engine.audio_io import read_audio
    from voxflip.engine.features.world import AnalysisConfig
    from voxflip.trainer.eval.metrics import resample

    rate = AnalysisConfig().sample_rate
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()][:items]
    parts = []
    for row in rows:
        for key in ("speech", "singing"):
            if not row.get(key):
                continue
            audio, source_rate = read_audio(manifest.parent / row[key])
            parts.append(frame_features(resample(audio, source_rate, rate).astype(np.float64)))
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 30) -> tuple[np.ndarray, ...]:
    """Logistic regression by Newton's method on standardised features."""
    means, scales = x.mean(axis=0), x.std(axis=0) + 1e-12
    z = np.hstack([(x - means) / scales, np.ones((x.shape[0], 1))])
    w = np.zeros(z.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        grad = z.T @ (p - y) / len(y) + l2 * np.r_[w[:-1], 0.0]
        hess = (z * (p * (1 - p))[:, None]).T @ z / len(y) + l2 * np.diag(np.r_[np.ones(len(w) - 1), 0.0])
        w -= np.linalg.solve(hess, grad)
    return means, scales, w[:-1], w[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True, help="training manifest (redistributable data)")
    parser.add_argument("--items", type=int, default=160)
    parser.add_argument("--check", type=Path, help="a manifest to report the disagreement on")
    args = parser.parse_args()

    from voxflip.engine.features.pitch import PitchConfig

    silence = PitchConfig().silence_db
    x, y, _, level = load(args.manifest, args.items)
    active = level > silence
    means, scales, weights, bias = fit(x[active], y[active].astype(np.float64))
    fmt = np.array2string
    print(f"MEANS = np.array({fmt(means, separator=', ', precision=6, floatmode='fixed')})")
    print(f"SCALES = np.array({fmt(scales, separator=', ', precision=6, floatmode='fixed')})")
    print(f"WEIGHTS = np.array({fmt(weights, separator=', ', precision=6, floatmode='fixed')})")
    print(f"BIAS = {bias:.6f}")
    print(f"trained on {int(active.sum())} active frames of {args.manifest}")
    if args.check:
        x, y, rule, level = load(args.check, 10_000)
        active = level > silence
        z = bias + ((x - means) / scales) @ weights
        for name, voiced in (("rule", rule), ("learned", z > 0)):
            voiced = voiced & active
            lost = np.mean(~voiced[active] & y[active])
            added = np.mean(voiced[active] & ~y[active])
            print(f"{args.check}: {name} disagrees with the default window on {lost + added:.4f} of "
                  f"{int(active.sum())} active frames (voiced -> unvoiced {lost:.4f}, unvoiced -> voiced {added:.4f})")


if __name__ == "__main__":
    main()

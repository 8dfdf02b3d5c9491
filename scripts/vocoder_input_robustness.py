"""How a vocoder copes with mel frames that are not a recording's: blurred, or jittered frame by frame.

    python scripts/vocoder_input_robustness.py CHECKPOINT MANIFEST [--every N] [--side speech]

Every N-th row of MANIFEST (default 3) is analysed as the flow converters analyse, its log-mel
frames changed (a Gaussian blur of 0.75 frames x 1.5 bands and of 1.5 x 3; independent normal
noise of 0.3 and 0.6 nats per frame and band), and synthesised by the DSP mel vocoder and by the
vocoder CHECKPOINT (``voxflip train-vocoder``), both on the checkpoint's mel setup. Prints mean
DNSMOS and LSD against the recording per vocoder and change (docs/results.md, the `hn` section).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("manifest")
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--side", default="speech", choices=("speech", "singing"))
    args = parser.parse_args(argv)

    import torch
    from scipy.ndimage import gaussian_filter

    from voxflip.engine.vocoder.mel_vocoder import MelVocoder, MelVocoderConfig
    from voxflip.trainer.eval.copy_synthesis import _analyse
    from voxflip.trainer.eval.quality import dnsmos
    from voxflip.trainer.eval.to_singing_metrics import lsd
    from voxflip.trainer.vocoder_export import load_generator

    generator = load_generator(args.checkpoint)[0]
    mel_cfg = generator.cfg.mel()
    hop = mel_cfg.hop_samples
    dsp = MelVocoder(MelVocoderConfig(mel=mel_cfg))
    changes = {"none": lambda m: m,
               "blur 0.75 x 1.5": lambda m: gaussian_filter(m, (0.75, 1.5)),
               "blur 1.5 x 3": lambda m: gaussian_filter(m, (1.5, 3.0)),
               "jitter 0.3": lambda m: m + 0.3 * np.random.default_rng(1).standard_normal(m.shape).astype(np.float32),
               "jitter 0.6": lambda m: m + 0.6 * np.random.default_rng(1).standard_normal(m.shape).astype(np.float32)}
    manifest = Path(args.manifest)
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()][:: args.every]
    scores: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in rows:
        x, mel, f0 = _analyse(manifest.parent / row[args.side], mel_cfg)
        for change, apply in changes.items():
            m = apply(mel)
            frames = torch.from_numpy(np.concatenate([m, m[-1:]]).T[None].copy()).float()
            hz = torch.from_numpy(np.concatenate([f0, f0[-1:]])[None]).float()
            noise = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 1, frames.shape[2] * hop),
                                                                               dtype=np.float32))
            with torch.no_grad():
                neural = generator(frames, hz, noise)[0, 0, hop:].numpy()
            for name, out in (("dsp", dsp(m, f0).astype(np.float32)), (generator.cfg.kind, neural)):
                n = min(len(out), len(x))
                scores.setdefault((name, change), []).append(
                    (dnsmos(np.clip(out, -1, 1), mel_cfg.sample_rate)["ovrl"],
                     lsd(x[:n], out[:n], mel_cfg.sample_rate, length="truncate")))
    print(f"{len(rows)} {args.side} clips of {manifest}")
    print("| vocoder | mel frames | DNSMOS | LSD dB |\n| --- | --- | --- | --- |")
    for (name, change), values in scores.items():
        v = np.mean(values, axis=0)
        print(f"| {name} | {change} | {v[0]:.2f} | {v[1]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

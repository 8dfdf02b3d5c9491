"""How a vocoder voices mel frames at another pitch than the one they were analysed at.

    python scripts/vocoder_other_pitch.py MANIFEST NAME=EXPORT_DIR ... [--side singing] [--semitones -7]
        [--every 1] [--wav-dir DIR]

The flow converters hand their vocoder such frames: the residual flow model's mel keeps the
singing's harmonics, which narrow low mel bands resolve, and the speech intonation voices it
several semitones lower. Every N-th row of MANIFEST is analysed as the flow converters analyse
(16 kHz, the exports' mel window), its YIN F0 moved by ``--semitones``, and the frames voiced at
that F0 by the DSP mel vocoder and by each exported vocoder (ONNX Runtime). Praat then tracks each
output: printed per vocoder, over every voiced frame of both, the share more than 50 cents off the
F0 given, and the median error in cents (docs/results.md, the `hn` section). ``--wav-dir`` keeps
the outputs, for listening and ``scripts/plot_spectrograms.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("vocoders", nargs="+", metavar="NAME=EXPORT_DIR")
    parser.add_argument("--side", default="singing", choices=("speech", "singing"))
    parser.add_argument("--semitones", type=float, default=-7.0)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--wav-dir", type=Path)
    args = parser.parse_args(argv)

    import soundfile as sf

    from voxflip.engine.vocoder.mel_vocoder import MelVocoder, MelVocoderConfig
    from voxflip.engine.vocoder.neural import NeuralVocoder
    from voxflip.trainer.eval.copy_synthesis import _analyse
    from voxflip.trainer.eval.to_singing_metrics import praat_f0

    neural = {name: NeuralVocoder(folder, seed=0) for name, _, folder in (v.partition("=") for v in args.vocoders)}
    mel_cfg = next(iter(neural.values())).mel
    if any(v.mel != mel_cfg for v in neural.values()):
        parser.error("the exports read different mel setups; give vocoders of one setup")
    dsp = MelVocoder(MelVocoderConfig(mel=mel_cfg))
    rate, hop, ratio = mel_cfg.sample_rate, mel_cfg.hop_samples, 2.0 ** (args.semitones / 12.0)
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()][:: args.every]
    errors: dict[str, list[np.ndarray]] = {"dsp": [], **{name: [] for name in neural}}
    for row in rows:
        _, mel, f0 = _analyse(args.manifest.parent / row[args.side], mel_cfg)
        target = f0 * ratio
        outputs = {"dsp": dsp(mel, target), **{name: v(mel, target) for name, v in neural.items()}}
        for name, out in outputs.items():
            times, got = praat_f0(np.asarray(out, np.float64), rate)
            given = target[np.clip(np.round(times * rate / hop).astype(int), 0, target.size - 1)]
            both = (got > 0) & (given > 0)
            errors[name].append(np.abs(1200.0 * np.log2(got[both] / given[both])))
            if args.wav_dir:
                args.wav_dir.mkdir(parents=True, exist_ok=True)
                sf.write(args.wav_dir / f"{row['id']}.{name}.wav", np.asarray(out, np.float32), rate)
    print(f"{len(rows)} {args.side} clips voiced {args.semitones:+g} semitones from their own F0")
    print("| vocoder | frames > 50 cents off | median error (cents) |")
    print("| --- | --- | --- |")
    for name, parts in errors.items():
        cents = np.concatenate(parts)
        print(f"| {name} | {np.mean(cents > 50):.3f} | {np.median(cents):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

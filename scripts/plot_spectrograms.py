"""Log spectrograms of several recordings of the same thing, one panel each, as one PNG.

    python scripts/plot_spectrograms.py OUT.png LABEL=FILE.wav ... [--seconds A:B] [--max-hz HZ]

For looking at what a vocoder or converter does to a recording (docs/results.md): every file is read
at its own rate, the same window (32 ms Hann, 4 ms hop) is used for all, and the colour scale is
shared, from the loudest bin of all panels down 80 dB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def spectrogram(audio: np.ndarray, rate: int) -> tuple[np.ndarray, float, float]:
    """``(bins, frames)`` power in dB, the frame period in s and the bin width in Hz."""
    win, hop = int(0.032 * rate), int(0.004 * rate)
    window = np.hanning(win)
    n = max(1, 1 + (len(audio) - win) // hop)
    frames = np.stack([audio[i * hop : i * hop + win] for i in range(n)]) if len(audio) >= win else \
        np.pad(audio, (0, win - len(audio)))[None]
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return 10 * np.log10(power.T + 1e-12), hop / rate, rate / win


def main(argv: list[str]) -> int:
    args, seconds, max_hz = [], None, None
    it = iter(argv)
    for a in it:
        if a == "--seconds":
            lo, _, hi = next(it).partition(":")
            seconds = (float(lo or 0), float(hi) if hi else None)
        elif a == "--max-hz":
            max_hz = float(next(it))
        else:
            args.append(a)
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from voxflip.engine.audio_io import read_audio

    out, panels = Path(args[0]), []
    for spec in args[1:]:
        label, _, path = spec.partition("=")
        audio, rate = read_audio(path)
        audio = np.asarray(audio, np.float64)
        audio = audio.mean(axis=1) if audio.ndim > 1 else audio
        if seconds:
            audio = audio[int(seconds[0] * rate) : int(seconds[1] * rate) if seconds[1] else None]
        panels.append((label, *spectrogram(audio, rate)))
    top = max(float(p[1].max()) for p in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.2 * len(panels)), squeeze=False, sharex=True)
    for ax, (label, db, period, bin_hz) in zip(axes[:, 0], panels, strict=True):
        extent = (0, db.shape[1] * period, 0, db.shape[0] * bin_hz)
        ax.imshow(db, origin="lower", aspect="auto", extent=extent, vmin=top - 80, vmax=top, cmap="magma")
        ax.set_ylim(0, max_hz or extent[3])
        ax.set_ylabel("Hz")
        ax.set_title(label, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

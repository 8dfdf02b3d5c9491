"""Log spectrograms of several recordings of the same thing, one panel each, as one PNG.

    python scripts/plot_spectrograms.py OUT.png LABEL=FILE.wav ... [--seconds A:B] [--max-hz HZ]

For looking at what a vocoder or converter does to a recording (docs/results.md): every file is read
at its own rate, the same window (32 ms Hann, 4 ms hop) is used for all, and the colour scale is
shared, from the loudest bin of all panels down 80 dB.
"""

from __future__ import annotations

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


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("panels", nargs="+", metavar="LABEL=FILE", help="a recording and its panel's title")
    parser.add_argument("--seconds", metavar="A:B", help="only this span of each file")
    parser.add_argument("--max-hz", type=float, help="the top of the frequency axis")
    args = parser.parse_args(argv)
    lo, _, hi = (args.seconds or "").partition(":")
    span = (float(lo or 0), float(hi) if hi else None)

    from matplotlib.figure import Figure

    from voxflip.engine.audio_io import read_audio

    panels = []
    for spec in args.panels:
        label, _, path = spec.partition("=")
        audio, rate = read_audio(path)
        audio = np.asarray(audio, np.float64)
        audio = audio.mean(axis=1) if audio.ndim > 1 else audio
        audio = audio[int(span[0] * rate) : int(span[1] * rate) if span[1] else None]
        panels.append((label, *spectrogram(audio, rate)))
    top = max(float(p[1].max()) for p in panels)
    fig = Figure(figsize=(10, 2.2 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)
    for ax, (label, db, period, bin_hz) in zip(axes[:, 0], panels, strict=True):
        extent = (0, db.shape[1] * period, 0, db.shape[0] * bin_hz)
        ax.imshow(db, origin="lower", aspect="auto", extent=extent, vmin=top - 80, vmax=top, cmap="magma")
        ax.set_ylim(0, args.max_hz or extent[3])
        ax.set_ylabel("Hz")
        ax.set_title(label, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

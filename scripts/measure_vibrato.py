"""Vibrato of real singers: rate and depth on the long notes of dev-data's singing (the defaults of
the speech -> singing converters come from here; docs/converters.md).

    python scripts/measure_vibrato.py ../shared/dev-data/manifest.jsonl

For every transcribed note of at least 0.6 s that is voiced throughout: the F0 in cents from 150 ms
after its start, a quadratic trend removed; the note has vibrato when the strongest modulation
between 3.5 and 8.5 Hz stands three times above the median of the 1-20 Hz spectrum. Its rate is
that peak; its depth the peak deviation of a sinusoid with the same RMS. Prints medians and
quartiles over those notes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from voxflip.engine.melody_audio import transcribe_melody_file


def note_vibrato(cents: np.ndarray, hop_s: float) -> tuple[float, float] | None:
    """(rate Hz, depth cents) of one note's F0 in cents, or None when it has no clear vibrato."""
    c = cents[int(0.15 / hop_s):]
    if len(c) < 40:
        return None
    x = np.arange(len(c))
    c = c - np.polyval(np.polyfit(x, c, 2), x)
    spectrum = np.abs(np.fft.rfft(c * np.hanning(len(c)), n=1024))
    freqs = np.fft.rfftfreq(1024, hop_s)
    band = (freqs >= 3.5) & (freqs <= 8.5)
    if spectrum[band].max() < 3 * np.median(spectrum[(freqs > 1) & (freqs < 20)]):
        return None
    return float(freqs[band][np.argmax(spectrum[band])]), float(np.sqrt(2) * c.std())


def main(manifest: str) -> None:
    base = Path(manifest).parent
    rates, depths, notes = [], [], 0
    for line in Path(manifest).read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        t = transcribe_melody_file(base / row["singing"])
        hop_s = float(t.times_s[1] - t.times_s[0])
        for note in t.melody.notes:
            if note.end_s - note.start_s < 0.6:
                continue
            seg = t.f0_hz[int(note.start_s / hop_s):int(note.end_s / hop_s)]
            if (seg <= 0).mean() > 0.1:
                continue
            notes += 1
            found = note_vibrato(1200 * np.log2(np.maximum(seg, 1.0) / 440.0), hop_s)
            if found:
                rates.append(found[0])
                depths.append(found[1])
    r, d = np.array(rates), np.array(depths)
    print(f"{len(r)} of {notes} long notes have vibrato: rate median {np.median(r):.2f} Hz "
          f"(quartiles {np.percentile(r, 25):.2f}-{np.percentile(r, 75):.2f}), depth median {np.median(d):.0f} cents "
          f"(quartiles {np.percentile(d, 25):.0f}-{np.percentile(d, 75):.0f})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/dev-data/manifest.jsonl")

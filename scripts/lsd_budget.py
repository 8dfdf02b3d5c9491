"""Where the LSD of speech -> singing comes from: level, spectral balance, timing (docs/results.md).

For each dev-data pair, the converter's output (the clips ``voxflip eval`` cached) against the real
singing, as the eval's ``lsd`` scores it (the output's frames stretched linearly onto the singing's),
and with one thing at a time given to the output from the singing itself (oracles, an upper bound on
what a converter could gain from each):

* **level**: the output scaled by the gain (a 1.5 dB grid, +-15 dB) that minimises its LSD;
* **spectral balance**: the output filtered by the difference of the two long-term spectra
  (smoothed over about 400 Hz), which any fixed or per-singer equaliser ("singer's formant",
  brightness) can at best approach;
* **timing**: the output's frames matched to the singing's by dynamic time warping on the cepstral
  envelope (30 coefficients), so that only the spectra differ, not when they happen.

Run from the repository root with the eval extra installed, after ``voxflip eval --system psola
... --out eval/devdata/to_singing.md``::

    python scripts/lsd_budget.py --manifest ../shared/dev-data/manifest.jsonl --clips eval/devdata/to_singing_clips/psola
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter1d

from voxflip.engine.audio_io import read_audio
from voxflip.trainer.eval.metrics import resample
from voxflip.trainer.eval.to_singing_metrics import log_power_spectrogram, lsd

GAINS_DB = np.arange(-15.0, 15.01, 1.5)
CEPSTRA = 30


def long_term_db(x: np.ndarray, n: int = 512) -> np.ndarray:
    """Mean power spectrum (dB) of the frames within 30 dB of the loudest."""
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[:: n // 4] * np.hanning(n)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    energy = power.sum(axis=1)
    return 10.0 * np.log10(power[energy > energy.max() * 1e-3].mean(axis=0) + 1e-20)


def balanced(sung: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out`` filtered (zero phase, by FFT) by the smoothed difference of the two long-term spectra."""
    diff = uniform_filter1d(long_term_db(sung) - long_term_db(out), 9)
    spectrum = np.fft.rfft(out)
    gain_db = np.interp(np.linspace(0.0, 1.0, spectrum.shape[0]), np.linspace(0.0, 1.0, diff.shape[0]), diff)
    return np.fft.irfft(spectrum * 10.0 ** (gain_db / 20.0), out.shape[0])


def _cepstrum(log_spectra: np.ndarray) -> np.ndarray:
    """The first :data:`CEPSTRA` cepstral coefficients of each frame: its envelope, not its harmonics."""
    return np.fft.irfft(log_spectra, axis=1)[:, :CEPSTRA]


def warped_lsd(sung: np.ndarray, out: np.ndarray, rate: int) -> float:
    """LSD with the output's frames matched to the singing's by DTW on the cepstral envelope."""
    import librosa

    ref, est = log_power_spectrogram(sung, rate), log_power_spectrogram(out, rate)
    _, path = librosa.sequence.dtw(_cepstrum(ref).T, _cepstrum(est).T, metric="euclidean")
    total, count = np.zeros(ref.shape[0]), np.zeros(ref.shape[0])
    for i, j in path:
        total[i] += np.sqrt(np.mean((ref[i] - est[j]) ** 2))
        count[i] += 1
    return float(np.mean(total / np.maximum(count, 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--clips", required=True, help="a folder of converted clips, ID.wav")
    args = parser.parse_args()
    root = Path(args.manifest).parent
    rows = []
    for line in Path(args.manifest).read_text().splitlines():
        entry = json.loads(line)
        out_path = Path(args.clips) / f"{entry['id']}.wav"
        if not out_path.is_file():
            continue
        out, rate = read_audio(out_path)
        sung, sung_rate = read_audio(root / entry["singing"])
        if sung_rate != rate:
            sung = resample(sung, sung_rate, rate)
        base = lsd(sung, out, rate)
        level = min(lsd(sung, out * 10.0 ** (g / 20.0), rate) for g in GAINS_DB)
        rows.append((base, level, lsd(sung, balanced(sung, out), rate), warped_lsd(sung, out, rate)))
        print(f"{entry['id']:40s} " + "  ".join(f"{v:5.1f}" for v in rows[-1]), flush=True)
    table = np.array(rows)
    names = ("as scored", "best level", "long-term spectrum of the singing", "timing of the singing (DTW)")
    for name, column in zip(names, table.T, strict=True):
        print(f"{name:36s} {column.mean():5.2f} dB  (n = {column.shape[0]})")


if __name__ == "__main__":
    main()

"""Where real singing's long-term spectrum differs from the same singer's speech, and from ``psola``'s song.

Issue 14 asks for a singer's-formant and brightness shaping whose defaults real singing decides. For
every dev-data pair this takes the long-term average spectrum of the active frames (within 40 dB of
the loudest) of the singing, of the singer's reading, and of ``psola`` singing that reading on the
notes transcribed from the singing; each is smoothed over a third of an octave and its mean level over
300-2000 Hz taken away (the level is not the question, the shape is). It prints, per third-octave
band from 100 Hz to 12.5 kHz, the mean over the pairs of singing minus reading and singing minus
``psola``, with 95% intervals over pairs, and the number of pairs above zero.

With ``--shape``, each song is also shaped by the variants in :data:`VARIANTS` (``ShapingConfig``:
the singer's-formant peak and the brightness shelf, applied to the finished song at the reading's rate;
the converter applies them at its own rate before the output is resampled, the same filter up to the
resampler) and every version is scored as ``voxflip eval`` scores speech -> singing: Whisper base
CER against the lyric, DNSMOS, LSD and speaker similarity against the real singing, and the mean
absolute band difference from the singing's spectrum (100 Hz-12.5 kHz); each variant paired against
the unshaped song.

    python scripts/sung_spectrum_probe.py --manifest ../shared/dev-data/manifest.jsonl [--shape]

About a minute on two cores, fifteen with ``--shape``. Nothing is written.
"""

from __future__ import annotations

from multiprocessing import Pool
from pathlib import Path

import numpy as np

#: the common rate every recording is compared at (Hz): bands up to 12.5 kHz
RATE = 32000
#: the band each spectrum's level is taken from (Hz)
LEVEL_BAND_HZ = (300.0, 2000.0)
#: third-octave band centres (Hz), 100 Hz to 12.5 kHz
CENTRES = 1000.0 * 2.0 ** (np.arange(-10, 12) / 3.0)
#: the shaping variants ``--shape`` scores: name -> ShapingConfig fields
VARIANTS = {
    "brightness -4.5 dB": {"brightness_db": -4.5},
    "brightness -2.5 dB": {"brightness_db": -2.5},
    "brightness +3 dB": {"brightness_db": 3.0},
    "brightness +6 dB": {"brightness_db": 6.0},
    "singer's formant +3 dB": {"formant_db": 3.0},
    "singer's formant +6 dB": {"formant_db": 6.0},
}


def band_levels(audio: np.ndarray, rate: int) -> np.ndarray:
    """The third-octave levels (dB) of ``audio``'s long-term spectrum, relative to its 300-2000 Hz level."""
    from speaker_eq_probe import fractional_octave_smooth, long_term_spectrum

    from voxflip.trainer.eval.metrics import resample

    freqs, db = long_term_spectrum(resample(np.asarray(audio, np.float64), rate, RATE), RATE, n_fft=2048)
    smooth = fractional_octave_smooth(freqs, db, 3)
    band = (freqs >= LEVEL_BAND_HZ[0]) & (freqs <= LEVEL_BAND_HZ[1])
    return np.interp(CENTRES, freqs, smooth) - smooth[band].mean()


def _song(row: dict, root: Path) -> tuple[np.ndarray, int]:
    """``psola`` (the default method) singing the reading on the notes transcribed from the singing."""
    from speaker_eq_probe import _mono

    from voxflip.engine.melody_audio import transcribe_melody_file
    from voxflip.engine.registry import make_converter
    from voxflip.streaming.streamer import Streamer

    reading, rate = _mono(root / row["speech"])
    melody = transcribe_melody_file(root / row["singing"]).melody
    streamer = Streamer(make_converter("singing", None, melody=melody), rate, rate)
    song = np.concatenate([streamer.process(reading.astype(np.float32)), streamer.flush()]).astype(np.float64)
    return song, rate


def _scores(row: dict, root: Path) -> np.ndarray:
    """Per version (unshaped, then each variant): CER, DNSMOS, LSD, speaker similarity, band distance."""
    from speaker_eq_probe import _mono

    from voxflip.engine.vocoder.shaping import Shaper, ShapingConfig
    from voxflip.trainer.eval.asr import capped, score_transcript
    from voxflip.trainer.eval.metrics import resample
    from voxflip.trainer.eval.quality import dnsmos, speaker_similarity
    from voxflip.trainer.eval.to_singing_metrics import lsd
    from voxflip.trainer.eval.whisper import transcribe

    singing, sung_rate = _mono(root / row["singing"])
    song, rate = _song(row, root)
    reference = resample(singing, sung_rate, rate)
    target = band_levels(singing, sung_rate)
    versions = [song]
    for fields in VARIANTS.values():
        shaper = Shaper(ShapingConfig(**fields), rate)
        versions.append(shaper(song, shaper.init_state()))
    rows = []
    for audio in versions:
        audio = audio / max(1.0, float(np.abs(audio).max()) * 1.001)
        text = transcribe(audio, rate, language=row["language"])
        rows.append([capped(score_transcript(row["text"], text, row["language"])["cer"]), dnsmos(audio, rate)["ovrl"],
                     lsd(reference, audio, rate), speaker_similarity(audio, rate, singing, sung_rate),
                     float(np.mean(np.abs(target - band_levels(audio, rate))))])
    return np.array(rows)


def _levels(row: dict, root: Path) -> np.ndarray:
    from speaker_eq_probe import _mono

    singing, sung_rate = _mono(root / row["singing"])
    reading, rate = _mono(root / row["speech"])
    song, _ = _song(row, root)
    return np.stack([band_levels(singing, sung_rate), band_levels(reading, rate), band_levels(song, rate)])


def main() -> None:
    from devdata_args import parse

    from voxflip.trainer.eval.metrics import confidence_interval

    args, rows = parse(__doc__.split("\n\n")[0], lambda p: p.add_argument("--shape", action="store_true"))
    if args.shape:
        _shape(rows, args)
        return
    with Pool(args.workers) as pool:
        levels = np.array(pool.starmap(_levels, [(row, args.manifest.parent) for row in rows]))
    sung, read, song = levels[:, 0], levels[:, 1], levels[:, 2]
    print(f"{len(rows)} pairs; dB, each spectrum's 300-2000 Hz level taken away; mean ± 95% interval (pairs above 0)")
    print("| band Hz | singing - reading | singing - psola |")
    print("| --- | --- | --- |")
    for k, centre in enumerate(CENTRES):
        cells = []
        for diff in (sung[:, k] - read[:, k], sung[:, k] - song[:, k]):
            mean, half, n = confidence_interval(diff)
            cells.append(f"{mean:+.1f} ± {half:.1f} ({int(np.sum(diff > 0))}/{n})")
        print(f"| {centre:.0f} | {cells[0]} | {cells[1]} |")


def _shape(rows: list[dict], args) -> None:  # type: ignore[no-untyped-def]
    from voxflip.trainer.eval.metrics import confidence_interval

    with Pool(args.workers) as pool:
        table = np.array(pool.starmap(_scores, [(row, args.manifest.parent) for row in rows]))
    names = ["psola as shipped", *VARIANTS]
    columns = ("CER", "DNSMOS", "LSD dB", "speaker sim.", "band distance dB")
    print(f"{len(rows)} pairs; paired against the unshaped song: mean ± 95% interval (pairs up)")
    print("| version | " + " | ".join(columns) + " |")
    print("|" + " --- |" * (len(columns) + 1))
    for k, name in enumerate(names):
        cells = []
        for c in range(len(columns)):
            if k == 0:
                cells.append(f"{table[:, 0, c].mean():.3f}")
                continue
            diff = table[:, k, c] - table[:, 0, c]
            mean, half, n = confidence_interval(diff)
            cells.append(f"{mean:+.3f} ± {half:.3f} ({int(np.sum(diff > 0))}/{n})")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

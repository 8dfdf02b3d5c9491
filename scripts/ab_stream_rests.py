"""psola-stream with silent rests (its default) against rests that play the speech's pauses.

Each dev-data pair's speech is sung on the notes transcribed from its real singing, both ways, and
both songs are scored as ``voxflip eval`` scores them (Whisper base CER, capped at 1; DNSMOS; LSD
against the real singing). Prints the means and the paired differences with 95% intervals.

    python scripts/ab_stream_rests.py --manifest ../shared/dev-data/manifest.jsonl

About 6 minutes on two cores. Nothing is written.
"""

from __future__ import annotations

from multiprocessing import Pool
from pathlib import Path

import numpy as np


def _score(row: dict, root: Path) -> list[float]:
    from voxflip.engine.audio_io import read_audio
    from voxflip.engine.converters.psola_to_singing import PsolaStreamToSingingConverter
    from voxflip.engine.melody_audio import transcribe_melody_file
    from voxflip.streaming.streamer import Streamer
    from voxflip.trainer.eval.asr import capped, score_transcript
    from voxflip.trainer.eval.metrics import resample
    from voxflip.trainer.eval.quality import dnsmos
    from voxflip.trainer.eval.to_singing_metrics import lsd
    from voxflip.trainer.eval.whisper import transcribe

    melody = transcribe_melody_file(root / row["singing"]).melody
    speech, rate = read_audio(root / row["speech"])
    singing, singing_rate = read_audio(root / row["singing"])
    reference = resample(singing, singing_rate, rate)
    text = row["text"].replace("<AP>", " ").replace("<SP>", " ")
    scores = []
    for rest_pauses in (False, True):
        streamer = Streamer(PsolaStreamToSingingConverter(melody, rest_pauses=rest_pauses), rate, rate)
        song = np.concatenate([streamer.process(speech), streamer.flush()])
        song = song / max(1.0, float(np.abs(song).max()) * 1.001)
        cer = capped(score_transcript(text, transcribe(song, rate, language=row["language"]), row["language"])["cer"])
        scores += [cer, dnsmos(song, rate)["ovrl"], lsd(reference, song, rate)]
    return scores


def main() -> None:
    from devdata_args import parse

    from voxflip.trainer.eval.metrics import confidence_interval

    args, rows = parse(__doc__.split("\n\n")[0])
    with Pool(args.workers) as pool:
        table = np.array(pool.starmap(_score, [(row, args.manifest.parent) for row in rows]))
    for k, name in enumerate(("CER", "DNSMOS", "LSD dB")):
        silent, pauses = table[:, k], table[:, 3 + k]
        mean, half, n = confidence_interval(pauses - silent)
        print(f"{name}: silent rests {silent.mean():.3f}, rests of pauses {pauses.mean():.3f}, "
              f"paired {mean:+.3f} ± {half:.3f} (n={n}; higher in {int(np.sum(pauses - silent > 0.005))}, "
              f"lower in {int(np.sum(pauses - silent < -0.005))})")


if __name__ == "__main__":
    main()

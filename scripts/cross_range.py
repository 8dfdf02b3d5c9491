"""psola on a melody out of the speaker's range: sung as written, or octaves lower (``--melody-octave``).

dev-data pairs a singer's speech with their own song, so its melodies always suit the voice. Here each
speech of a low voice (tenor, bass) is sung on the melody transcribed from a high voice's singing
(soprano) in the same language, and the reverse: 16 cross pairs. Each is rendered by ``psola`` with
``melody_octave="auto"`` (its default: a melody lying more than 14 semitones above the speaker's
median F0 is sung as many octaves lower as it takes) and ``"keep"``, and scored as ``voxflip eval``
scores: Whisper base CER against the speech's own text, DNSMOS, RCA against the notes actually given
(octave-blind, so the same notes either way). Prints the pairs that "auto" moved and the paired
differences, with 95% intervals.

    python scripts/cross_range.py --manifest ../shared/dev-data/manifest.jsonl

About a minute on two cores. Nothing is written.
"""

from __future__ import annotations

from multiprocessing import Pool
from pathlib import Path

import numpy as np

LOW, HIGH = ("Tenor", "Bass"), ("Soprano", "Alto")


def _pairs(rows: list[dict]) -> list[tuple[dict, dict]]:
    """(speech of one voice, singing of the other), low with high and high with low, per language."""
    out = []
    for language in sorted({row["language"] for row in rows}):
        low = [r for r in rows if r["language"] == language and r["singer"] and any(v in r["singer"] for v in LOW)]
        high = [r for r in rows if r["language"] == language and r["singer"] and any(v in r["singer"] for v in HIGH)]
        for a, b in zip(low, high, strict=False):
            out += [(a, b), (b, a)]
    return out


def _score(speaker: dict, singer: dict, root: Path) -> list[float]:
    from voxflip.engine.audio_io import read_audio
    from voxflip.engine.melody_audio import transcribe_melody_file
    from voxflip.engine.registry import make_converter
    from voxflip.streaming.streamer import Streamer
    from voxflip.trainer.eval.asr import capped, score_transcript
    from voxflip.trainer.eval.quality import dnsmos
    from voxflip.trainer.eval.to_singing_metrics import melody_contour, rca
    from voxflip.trainer.eval.whisper import transcribe

    melody = transcribe_melody_file(root / singer["singing"]).melody
    speech, rate = read_audio(root / speaker["speech"])
    times, f0 = melody_contour(melody)
    out: list[float] = []
    for octave in ("keep", "auto"):
        converter = make_converter("singing", "psola", melody=melody, melody_octave=octave)
        streamer = Streamer(converter, rate, rate)
        song = np.concatenate([streamer.process(speech), streamer.flush()])
        song = song / max(1.0, float(np.abs(song).max()) * 1.001)
        text = transcribe(song, rate, language=speaker["language"])
        out += [converter.report(streamer.state).stats["octaves_down"],
                capped(score_transcript(speaker["text"], text, speaker["language"])["cer"]),
                dnsmos(song, rate)["ovrl"], rca(song, rate, f0, times)]
    return out


def main() -> None:
    from devdata_args import parse

    from voxflip.trainer.eval.metrics import confidence_interval

    args, rows = parse(__doc__.split("\n\n")[0])
    pairs = _pairs(rows)
    with Pool(args.workers) as pool:
        table = np.array(pool.starmap(_score, [(a, b, args.manifest.parent) for a, b in pairs]))
    moved = table[:, 4] > 0
    print(f"{len(pairs)} cross pairs; 'auto' sang {int(moved.sum())} of them lower: "
          + ", ".join(f"{a['id']} on {b['id']}" for (a, b), m in zip(pairs, moved, strict=True) if m))
    for k, name in ((1, "CER"), (2, "DNSMOS"), (3, "RCA")):
        keep, auto = table[moved, k], table[moved, 4 + k]
        mean, half, n = confidence_interval(auto - keep)
        print(f"{name}: as written {keep.mean():.3f}, octave(s) lower {auto.mean():.3f}, paired {mean:+.3f} ± {half:.3f} (n={n})")


if __name__ == "__main__":
    main()

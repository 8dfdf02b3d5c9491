"""Where a speech -> singing converter loses raw chroma accuracy: pitch, or voicing, and which part of a note.

For every dev-data pair, the converter sings the speech on the notes transcribed from the real singing
(as ``voxflip eval`` does). Every note frame (10 ms) of those notes is then put in one of four classes
by Praat's F0 of the output: within 50 cents of the note modulo octaves (what RCA counts), unvoiced,
off by 50-150 cents, off by more. For ``psola`` and ``world`` each note frame is also labelled with
the part of the sung syllable that made it (onset consonant, nucleus, coda, held melisma, rest).

    python scripts/rca_voicing.py --manifest ../shared/dev-data/manifest.jsonl [--method psola]

About 15 s for 25 pairs on one core. Prints one table per class; nothing is written.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np


def _labelled(converter, labels: list[str]) -> None:
    """Make ``converter`` append the part of the syllable behind each output frame to ``labels``."""
    sing_frame, rest_frame = converter._sing_frame, converter._rest_frame

    def sing(slot, pos, s):
        result = sing_frame(slot, pos, s)
        unit, length = slot.unit, slot.end - slot.start
        if unit is None:
            labels.append("silence")
        elif slot.held:
            labels.append("held")
        else:
            onset = min(unit.nucleus - unit.onset, int(converter.config.max_onset_fraction * length))
            coda = min(unit.end - unit.coda, max(0, int(0.6 * length) - onset))
            labels.append("onset" if pos < onset else "coda" if pos >= length - coda else "nucleus")
        return result

    def rest(s):
        labels.append("rest")
        return rest_frame(s)

    converter._sing_frame, converter._rest_frame = sing, rest


def main() -> None:
    import mir_eval

    from voxflip.engine.audio_io import read_audio
    from voxflip.engine.melody_audio import transcribe_melody_file
    from voxflip.engine.registry import make_converter
    from voxflip.streaming.streamer import Streamer
    from voxflip.trainer.eval.to_singing_metrics import melody_contour, praat_f0

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--method", default="psola")
    args = parser.parse_args()
    root = args.manifest.parent
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()]
    classes: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    unvoiced_parts: Counter[str] = Counter()
    off_parts: Counter[str] = Counter()
    for row in rows:
        melody = transcribe_melody_file(root / row["singing"]).melody
        converter = make_converter("singing", args.method, melody=melody)
        labels: list[str] = []
        if hasattr(converter, "_sing_frame"):
            _labelled(converter, labels)
        audio, rate = read_audio(root / row["speech"])
        streamer = Streamer(converter, rate, rate)
        sung = np.concatenate([streamer.process(audio), streamer.flush()])
        times, f0 = melody_contour(melody)
        ref_voicing, ref_cent, est_voicing, est_cent = mir_eval.melody.to_cent_voicing(times, f0, *praat_f0(sung, rate))
        frame_s = getattr(converter, "_frame_s", 0.005)
        for i in np.flatnonzero(ref_voicing > 0):
            octaves = np.abs(ref_cent[i] - est_cent[i]) / 1200.0
            cents = 1200.0 * abs(octaves - round(octaves))
            kind = ("unvoiced" if est_voicing[i] <= 0 else "within 50 cents" if cents <= 50
                    else "50-150 cents off" if cents <= 150 else "more than 150 cents off")
            classes[kind] += 1
            if labels:
                k = int(round(times[i] / frame_s))
                part = labels[k] if k < len(labels) else "after the end"
                parts[part] += 1
                unvoiced_parts[part] += kind == "unvoiced"
                off_parts[part] += kind.endswith("off")
    total = sum(classes.values())
    print(f"{args.method}: {total} note frames of {len(rows)} pairs")
    for kind, count in classes.most_common():
        print(f"  {kind:24s} {count / total:.3f}")
    if parts:
        print("  part of the syllable      share   unvoiced   off pitch (shares of all note frames)")
        for part, count in parts.most_common():
            print(f"  {part:24s} {count / total:.3f}   {unvoiced_parts[part] / total:.3f}      "
                  f"{off_parts[part] / total:.3f}")


if __name__ == "__main__":
    main()

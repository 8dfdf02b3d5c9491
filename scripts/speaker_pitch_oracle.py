"""Would knowing the singer's speaking pitch raise ``psola-tsm``'s speaker similarity? An oracle says.

Issue 13 asks singing -> speech for a speaker similarity of 0.80 to the singer's own reading; the
shipped ``psola-tsm`` reaches 0.70 and the singing itself 0.72. ``psola-tsm`` speaks at the sung
median moved down a fixed 7.5 semitones, which lands within 3 semitones of the speaking voice on
average but errs by up to 7 on single clips (basses, a low song). Before building an estimator of the
speaking range, this measures what a perfect one would give: ``oracle-pitch`` is ``psola-tsm`` with
each clip's ``speaking_shift_semitones`` set so that its output's median F0 lands on the reading's (the
shipped shift minus the offset ``psola-tsm`` measured on that clip), scored by ``voxflip eval``'s
runner and paired against ``psola-tsm`` (F0 offset, CER with ``--asr-draws`` readings, DNSMOS,
speaker similarity). The spectral counterpart is ``scripts/speaker_eq_probe.py --own``.

Run from the repository root with the eval extra installed (about 12 minutes on two cores with
``--asr-draws 5``)::

    python scripts/speaker_pitch_oracle.py --manifest ../shared/dev-data/manifest.jsonl --out eval/speaker_pitch_oracle
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

SYSTEM = "psola-tsm"
ORACLE = "oracle-pitch"


def _register_oracle(clips: Path) -> None:
    from voxflip.engine.converters.psola_to_speech import PsolaToSpeechConverter
    from voxflip.engine.converters.world_speech_timing import WorldSpeechTimingConfig
    from voxflip.engine.direction import Direction
    from voxflip.trainer.eval import systems

    shipped = WorldSpeechTimingConfig()
    offsets = {p.stem: json.loads(p.read_text())["scores"]["f0_offset_st"] for p in clips.glob("*.json")}

    def run(entry, options):  # type: ignore[no-untyped-def]
        shift = shipped.intonation.speaking_shift_semitones - offsets[entry.id]
        config = replace(shipped, intonation=replace(shipped.intonation, speaking_shift_semitones=shift))
        return systems._convert(entry.singing, PsolaToSpeechConverter(config, shorten=True))

    systems.register(systems.System(ORACLE, Direction.TO_SPEECH, f"{SYSTEM}, each clip's median F0 on the reading's",
                                    run, ("singing",)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument("--out", default=Path("eval/speaker_pitch_oracle"), type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--asr-draws", type=int, default=5, help="readings per clip (voxflip eval --asr-draws)")
    args = parser.parse_args()

    from voxflip.trainer.eval.runner import evaluate

    report = args.out / "report.md"
    clips = args.out / "report_clips" / SYSTEM
    evaluate(["input", SYSTEM], args.manifest, report, workers=args.workers, asr_draws=args.asr_draws)
    _register_oracle(clips)
    result = evaluate(["input", SYSTEM, ORACLE], args.manifest, report, workers=args.workers,
                      asr_draws=args.asr_draws)
    print(f"\n| {ORACLE} paired against {SYSTEM} | mean | paired |\n| --- | --- | --- |")
    summary = json.loads(report.with_suffix(".json").read_text())["summary"]
    for metric in ("f0_offset_st", "cer", "dnsmos_ovrl", "spk_sim"):
        paired = result.paired(metric, SYSTEM)[ORACLE]
        print(f"| {metric} | {summary[SYSTEM][metric]['mean']:.3f} -> {summary[ORACLE][metric]['mean']:.3f} | "
              f"{paired['mean']:+.3f} ± {paired['ci95']:.3f} |")


if __name__ == "__main__":
    main()

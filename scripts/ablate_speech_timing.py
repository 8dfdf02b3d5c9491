"""The speech-timing ablations of docs/results.md ("Ablations of the speech timing", "Which step costs
the words"), on real pairs.

Each variant is the shipped converter (``psola-tsm``/``psola-nodur``, or ``world-tsm``) with one
setting changed, scored by ``voxflip eval``'s runner against the same Whisper ruler. Run from the
repository root with the eval extra installed (about 1.2 minutes per variant on two cores)::

    python scripts/ablate_speech_timing.py --manifest ../shared/dev-data/manifest.jsonl --out eval/ablations

``--asr-draws 5`` reads each clip five times (about 4 minutes per variant). It prints one line per
variant (paired CER against the input singing, duration ratio, DNSMOS, held pitch) and writes the full report to OUT/report.md; ``--against psola-tsm`` adds each variant paired
against that system (CER, DNSMOS, speaker similarity; CER per language).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from voxflip.engine.converters.intonation import IntonationConfig
from voxflip.engine.converters.psola_to_speech import PsolaToSpeechConverter
from voxflip.engine.converters.speech_timing import SpeechTimingConfig
from voxflip.engine.converters.world_speech_timing import WorldSpeechTimingConfig, WorldSpeechTimingConverter
from voxflip.engine.direction import Direction
from voxflip.engine.vocoder.psola import PsolaSynth
from voxflip.trainer.eval import systems
from voxflip.trainer.eval.runner import evaluate

SHIPPED = WorldSpeechTimingConfig()
PLAIN = replace(SHIPPED, intonation=IntonationConfig())      # the rule-based contour without the tune
MILD = SpeechTimingConfig(steady_db=7.0, vowel_keep_ms=120.0, vowel_rate=0.25)
#: the shipped keep and rate, reached by a rate falling from 1 over vowel_ease_ms (120 ms: shipped since 2026-12-07)
EASE120 = SpeechTimingConfig(vowel_keep_ms=80.0, vowel_ease_ms=120.0, vowel_rate=0.15)
#: the same keep and rate reached at once (shipped until 2026-12-07)
NO_EASE = SpeechTimingConfig(vowel_keep_ms=80.0, vowel_ease_ms=0.0, vowel_rate=0.15)
EASE160 = SpeechTimingConfig(vowel_keep_ms=60.0, vowel_ease_ms=160.0, vowel_rate=0.10)

#: name -> (synthesis, shorten, config)
VARIANTS = {
    "abl-world-mild-mw0": ("world", True, replace(PLAIN, timing=MILD)),
    "abl-world-mw0": ("world", True, PLAIN),
    "abl-world-mild-sung": ("world", True, replace(PLAIN, timing=MILD, pitch="sung")),
    "abl-psola-copy": ("psola", False, replace(SHIPPED, pitch="sung")),
    "abl-psola-nodur-shifted": ("psola", False, replace(SHIPPED, pitch="sung-shifted")),
    "abl-psola-shifted": ("psola", True, replace(SHIPPED, pitch="sung-shifted")),
    "abl-psola-mw0": ("psola", True, PLAIN),
    "abl-psola-mw05": ("psola", True, SHIPPED),
    "abl-psola-mw1": ("psola", True, replace(SHIPPED, intonation=IntonationConfig(melody_weight=1.0))),
    "abl-psola-wide": ("psola-wide", True, SHIPPED),
    "abl-psola-nodur-wide": ("psola-wide", False, SHIPPED),
    "abl-psola-peaks": ("psola-peaks", True, SHIPPED),
    "abl-psola-nodur-peaks": ("psola-peaks", False, SHIPPED),
    "abl-psola-shifted-peaks": ("psola-peaks", False, replace(SHIPPED, pitch="sung-shifted")),
    "abl-psola-nodur-formant106": ("psola-formant1.06", False, SHIPPED),
    "abl-psola-nodur-formant112": ("psola-formant1.12", False, SHIPPED),
    "abl-psola-mild": ("psola", True, replace(SHIPPED, timing=MILD)),
    # the reference pitch shifter (GPL; the separate `rubberband` program, never a voxflip dependency):
    # the sung F0 lowered as `abl-psola-nodur-shifted` lowers it, formants kept (-F), R3 engine (--fine)
    "abl-rubberband-shifted": ("rubberband", False, replace(SHIPPED, pitch="sung-shifted")),
    "abl-psola-ease120": ("psola", True, replace(SHIPPED, timing=EASE120)),
    "abl-psola-ease160": ("psola", True, replace(SHIPPED, timing=EASE160)),
    "abl-psola-no-ease": ("psola", True, replace(SHIPPED, timing=NO_EASE)),
}


def _rubberband(singing: Path, semitones: float):
    """The singing through the ``rubberband`` program, pitch moved by ``semitones``, formants kept."""
    import shutil
    import subprocess
    import tempfile

    from voxflip.engine.audio_io import read_audio

    if shutil.which("rubberband") is None:
        raise SystemExit("abl-rubberband-*: the rubberband program is not installed (apt install rubberband-cli)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        subprocess.run(["rubberband", "--fine", "-F", "-p", f"{semitones:g}", str(singing), str(out)],
                       check=True, capture_output=True)
        return read_audio(out)


def _register(name: str, synthesis: str, shorten: bool, config: WorldSpeechTimingConfig) -> None:
    def run(entry, options):  # type: ignore[no-untyped-def]
        if synthesis == "rubberband":
            return _rubberband(entry.singing, config.intonation.speaking_shift_semitones)
        if synthesis.startswith("psola"):
            converter = PsolaToSpeechConverter(config, shorten=shorten)
            if synthesis == "psola-wide":
                converter.psola = PsolaSynth(replace(converter.psola.config, wide_lowered=True))
            elif synthesis == "psola-peaks":
                converter.psola = PsolaSynth(replace(converter.psola.config, peak_marks=True))
            elif synthesis.startswith("psola-formant"):
                scale = float(synthesis.removeprefix("psola-formant"))
                converter.psola = PsolaSynth(replace(converter.psola.config, formant_scale=scale))
        else:
            converter = WorldSpeechTimingConverter(config)
        return systems._convert(entry.singing, converter)

    systems.register(systems.System(name, Direction.TO_SPEECH, name, run, ("singing",)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out", default="eval/ablations")
    parser.add_argument("--only", default=None, help="comma-separated variant names (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--asr-draws", type=int, default=1, help="readings per clip (voxflip eval --asr-draws)")
    parser.add_argument("--against", default=None, metavar="SYSTEM",
                        help="also score this eval system (e.g. psola-tsm) and give each variant's CER, DNSMOS and "
                             "speaker similarity paired against it, overall and per language")
    args = parser.parse_args()
    chosen = list(VARIANTS) if args.only is None else [n.strip() for n in args.only.split(",")]
    for name in chosen:
        _register(name, *VARIANTS[name])
    extra = [args.against] if args.against and args.against not in chosen else []
    result = evaluate(["input", *extra, *chosen], args.manifest, Path(args.out) / "report.md", workers=args.workers,
                      asr_draws=args.asr_draws)
    report = json.loads((Path(args.out) / "report.json").read_text())
    for name in chosen:
        paired = report["paired_cer"]["overall"][name]
        summary = report["summary"][name]
        print(f"{name:24s} paired CER {paired['mean']:+.3f} ± {paired['ci95']:.3f}  duration "
              f"{summary['duration_ratio']['mean']:.2f}  DNSMOS {summary['dnsmos_ovrl']['mean']:.2f}  "
              f"held pitch {summary['held_pitch']['mean']:.3f}")
    if args.against:
        languages = sorted(set(result.languages.values()))
        for name in chosen:
            if name == args.against:
                continue
            cells = []
            for metric in ("cer", "dnsmos_ovrl", "spk_sim"):
                p = result.paired(metric, args.against).get(name)
                if p:
                    cells.append(f"{metric} {p['mean']:+.3f} ± {p['ci95']:.3f}")
            by_language = [f"{lang} {result.paired('cer', args.against, lang)[name]['mean']:+.3f}"
                           for lang in languages if name in result.paired("cer", args.against, lang)]
            print(f"{name:24s} - {args.against}: " + ", ".join(cells) + " | CER " + ", ".join(by_language))
    if result.failures:
        print("failures:", {k: len(v) for k, v in result.failures.items()})


if __name__ == "__main__":
    main()

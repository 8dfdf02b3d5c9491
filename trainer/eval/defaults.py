"""Which converter the real-pair evaluation supports as a direction's default, and why.

The rule (docs/results.md), applied to the JSON report of ``voxflip eval`` on real pairs:

0. for singing -> speech, only converters that sound spoken compete, where any does: held-pitch
   fraction at most the real readings' + :data:`HELD_PITCH_OVER_REAL`, duration within
   :data:`DURATION_RATIO` of the reading (issue 13's goal; a converter that keeps the sung
   timing does not sound spoken however many words it keeps);
1. intelligibility must hold: the converter's CER, paired per clip against the baseline (the
   input singing for singing -> speech, the paired real singing for speech -> singing), may be
   at most :data:`CER_MARGIN` higher on average (singing -> speech: no higher at all);
2. among those that hold it, the most speech-like (lowest held-pitch fraction) for singing ->
   speech, the closest to the sung contour (highest ``rca_sung``) for speech -> singing;
3. if none holds it, the one that loses the fewest words (lowest paired CER), and the reason
   says that none keeps the words.

Decisions use the overall means: per-language means of 4-7 clips are too noisy to choose by.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from voxflip.engine.direction import Direction
from voxflip.engine.registry import converters

CER_MARGIN = {Direction.TO_SPEECH: 0.0, Direction.TO_SINGING: 0.05}
HELD_PITCH_OVER_REAL = 0.05
DURATION_RATIO = (0.8, 1.25)
#: the likeness measure of step 2 and whether higher is better
LIKENESS = {Direction.TO_SPEECH: ("held_pitch", False), Direction.TO_SINGING: ("rca_sung", True)}


@dataclass(frozen=True)
class DefaultChoice:
    name: str
    keeps_words: bool
    reason: str


def choose_default(report: dict) -> DefaultChoice:
    """The default a report supports (``report``: the JSON ``voxflip eval`` writes next to its table)."""
    direction = Direction.parse(report["direction"])
    paired = report["paired_cer"]["overall"]
    summary = report["summary"]
    candidates = [spec.name for spec in converters(direction) if spec.name in paired]
    if not candidates:
        raise ValueError(f"the report has no {direction.value} converter paired against {report['paired_cer']['baseline']}")
    spoken = ""
    if direction is Direction.TO_SPEECH:
        like = [n for n in candidates if sounds_spoken(summary, n)]
        if like:
            candidates = like
            spoken = "of those that sound spoken, "
    margin = CER_MARGIN[direction]
    keeping = [n for n in candidates if paired[n]["mean"] <= margin]
    if keeping:
        metric, higher = LIKENESS[direction]
        best = sorted(keeping, key=lambda n: summary[n][metric]["mean"] * (-1 if higher else 1))[0]
        return DefaultChoice(best, True, f"{spoken}CER within +{margin:g} of {report['paired_cer']['baseline']} "
                                         f"({paired[best]['mean']:+.3f}), and the best {metric} of those that are")
    best = min(candidates, key=lambda n: paired[n]["mean"])
    return DefaultChoice(best, False, f"no converter keeps the words (CER within +{margin:g} of "
                                      f"{report['paired_cer']['baseline']}); {spoken}{best} loses the fewest "
                                      f"({paired[best]['mean']:+.3f})")


def sounds_spoken(summary: dict, name: str) -> bool:
    """Step 0: held pitch and duration ratio within the goal (a criterion the report lacks is not applied)."""
    row = summary.get(name, {})
    real = summary.get("real", {}).get("held_pitch")
    held = row.get("held_pitch")
    if real is not None and held is not None and held["mean"] > real["mean"] + HELD_PITCH_OVER_REAL:
        return False
    ratio = row.get("duration_ratio")
    lo, hi = DURATION_RATIO
    return ratio is None or lo <= ratio["mean"] <= hi


def choose_default_from(path: str | Path) -> DefaultChoice:
    return choose_default(json.loads(Path(path).read_text()))

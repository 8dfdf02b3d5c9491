"""The defaults follow the measurement: the rule of trainer/eval/defaults.py, and the registry held to it
by the real-pair reports committed in docs/results/ (written by `voxflip eval` on ../shared/dev-data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxflip.engine.direction import Direction
from voxflip.engine.registry import default_converter
from voxflip.trainer.eval.defaults import choose_default

REPORTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def _report(direction: str, paired: dict[str, float], likeness: dict[str, float]) -> dict:
    metric = "held_pitch" if direction == "speech" else "rca_sung"
    return {"direction": direction, "paired_cer": {"baseline": "input", "overall": {
                k: {"mean": v, "ci95": 0.01, "n": 25} for k, v in paired.items()}},
            "summary": {k: {metric: {"mean": v, "ci95": 0.01, "n": 25}} for k, v in likeness.items()}}


def test_the_most_speech_like_of_those_that_keep_the_words_wins():
    choice = choose_default(_report("speech", {"world-nodur": 0.01, "world-dur": 0.015, "flow-dur": 0.3},
                                    {"world-nodur": 0.02, "world-dur": 0.01, "flow-dur": 0.0}))
    assert choice.name == "world-dur" and choice.keeps_words


def test_when_none_keeps_the_words_the_one_losing_fewest_wins_and_says_so():
    choice = choose_default(_report("speech", {"world-nodur": 0.04, "world-dur": 0.07, "flow-dur": 0.3},
                                    {"world-nodur": 0.02, "world-dur": 0.01, "flow-dur": 0.0}))
    assert choice.name == "world-nodur" and not choice.keeps_words
    assert choice.reason.startswith("no converter keeps the words")


@pytest.mark.parametrize("direction", list(Direction), ids=lambda d: d.value)
def test_the_registry_default_is_the_one_the_real_pair_report_supports(direction):
    path = REPORTS / f"devdata_to_{direction.value}.json"
    choice = choose_default(json.loads(path.read_text()))
    assert default_converter(direction).name == choice.name, choice.reason

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
    choice = choose_default(_report("speech", {"world-nodur": -0.01, "world-dur": -0.005, "flow-dur": 0.3},
                                    {"world-nodur": 0.02, "world-dur": 0.01, "flow-dur": 0.0}))
    assert choice.name == "world-dur" and choice.keeps_words


def test_when_none_keeps_the_words_the_one_losing_fewest_wins_and_says_so():
    choice = choose_default(_report("speech", {"world-nodur": 0.04, "world-dur": 0.07, "flow-dur": 0.3},
                                    {"world-nodur": 0.02, "world-dur": 0.01, "flow-dur": 0.0}))
    assert choice.name == "world-nodur" and not choice.keeps_words
    assert choice.reason.startswith("no converter keeps the words")


def test_a_converter_keeping_the_sung_timing_loses_to_one_that_sounds_spoken():
    report = _report("speech", {"psola-nodur": 0.003, "psola-tsm": 0.009, "world-nodur": 0.036},
                     {"psola-nodur": 0.02, "psola-tsm": 0.02, "world-nodur": 0.01, "real": 0.19})
    for name, ratio in (("psola-nodur", 1.76), ("psola-tsm", 1.03), ("world-nodur", 1.70), ("real", 1.0)):
        report["summary"][name]["duration_ratio"] = {"mean": ratio, "ci95": 0.1, "n": 25}
    choice = choose_default(report)
    assert choice.name == "psola-tsm" and not choice.keeps_words
    assert "of those that sound spoken, psola-tsm loses the fewest" in choice.reason
    # Nothing sounds spoken: the rule falls back to every converter.
    for name in ("psola-tsm",):
        report["summary"][name]["duration_ratio"]["mean"] = 1.5
    assert choose_default(report).name == "psola-nodur"


@pytest.mark.parametrize("direction", list(Direction), ids=lambda d: d.value)
def test_the_registry_default_is_the_one_the_real_pair_report_supports(direction):
    path = REPORTS / f"devdata_to_{direction.value}.json"
    choice = choose_default(json.loads(path.read_text()))
    assert default_converter(direction).name == choice.name, choice.reason


def test_the_singing_to_speech_default_holds_when_each_clip_is_read_five_times():
    """The same rule on the report read five times per clip (voxflip eval --asr-draws 5): the choice does not
    rest on one reading that Whisper might have made the other way."""
    report = json.loads((REPORTS / "devdata_to_speech_draws5.json").read_text())
    choice = choose_default(report)
    assert choice.name == default_converter(Direction.TO_SPEECH).name == "psola-tsm", choice.reason

"""Eval pictures: one figure per clip and a summary chart per table, as valid PNGs, drawn quickly."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from eval_clips import FAILURE, MISSING, SAMPLE_RATE, make_eval, tone

from voxflip.engine.direction import Direction
from voxflip.engine.errors import MissingDependencyError
from voxflip.trainer.eval.plots import (
    DPI,
    FIGURE_WIDTH_IN,
    MEL_BANDS,
    clip_plot_path,
    clip_sides,
    key_score_label,
    log_mel_db,
    safe_name,
    summary_plot_path,
    write_plots,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from the PNG's IHDR chunk; fails on anything that is not a PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR" and data[-8:-4] == b"IEND", f"{path} is not a complete PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(params=list(Direction), ids=lambda d: d.value)
def evaluation(request, tmp_path: Path):
    return make_eval(tmp_path / "eval", request.param)


@pytest.fixture
def needs_matplotlib():
    pytest.importorskip("matplotlib", reason="the eval extra is needed")
    pytest.importorskip("parselmouth", reason="the eval extra is needed")


def test_one_png_per_clip_then_one_summary_chart_per_table(needs_matplotlib, evaluation, tmp_path: Path):
    result, entries, clip_dir = evaluation
    plots = tmp_path / "plots"
    written = write_plots(result, entries, clip_dir, plots)
    clips = [clip_plot_path(plots, e.id) for e in entries]
    charts = [summary_plot_path(plots), summary_plot_path(plots, "en"), summary_plot_path(plots, "ja")]
    assert written == clips + charts
    for path in clips:                     # 4 panels: input, sys-a, sys-b (one not produced), reference
        width, height = png_size(path)
        assert width == FIGURE_WIDTH_IN * DPI and 500 <= height <= 900, (path, width, height)
        assert 30_000 < path.stat().st_size < 2_000_000, path
    for path in charts:
        width, height = png_size(path)
        assert 600 <= width <= 2000 and 250 <= height <= 1000, (path, width, height)
        assert 10_000 < path.stat().st_size < 1_000_000, path


def test_one_language_gets_the_overall_chart_only(needs_matplotlib, tmp_path: Path):
    result, entries, clip_dir = make_eval(tmp_path / "eval", Direction.TO_SINGING)
    result.languages = {i: "en" for i in result.languages}
    written = write_plots(result, entries, clip_dir, tmp_path / "plots")
    assert [p.name for p in written] == ["en-1.png", "ja-1.png", "en-2.png", "summary.png"]


def test_entries_outside_the_evaluation_are_not_drawn(needs_matplotlib, tmp_path: Path):
    result, entries, clip_dir = make_eval(tmp_path / "eval", Direction.TO_SPEECH)
    del result.languages["en-2"]
    written = write_plots(result, entries, clip_dir, tmp_path / "plots")
    assert [p.name for p in written if p.parent.name == "clips"] == ["en-1.png", "ja-1.png"]


def test_an_unreadable_output_does_not_stop_the_figure(needs_matplotlib, tmp_path: Path):
    result, entries, clip_dir = make_eval(tmp_path / "eval", Direction.TO_SPEECH)
    (clip_dir / "sys-a" / "en-1.wav").write_bytes(b"RIFF not really a wave file")
    written = write_plots(result, entries[:1], clip_dir, tmp_path / "plots")
    png_size(written[0])


def test_each_output_is_labelled_with_its_key_score_or_why_there_is_none(evaluation):
    result, entries, clip_dir = evaluation
    by_id = {e.id: e for e in entries}
    sides = clip_sides(result, by_id["en-1"], clip_dir)
    source, target = result.direction.source, result.direction.value
    assert [s.name for s in sides] == [f"input ({source})", "sys-a", "sys-b", f"reference ({target})"]
    assert sides[0].path == getattr(by_id["en-1"], source) and sides[-1].path == getattr(by_id["en-1"], target)
    key = "CER 0.100" if result.direction is Direction.TO_SPEECH else "RCA 0.800"
    assert key_score_label(result.direction, sides[1]) == key
    assert key_score_label(result.direction, sides[0]) == ""          # input and reference carry no score
    system, entry_id = MISSING
    missing = next(s for s in clip_sides(result, by_id[entry_id], clip_dir) if s.system == system)
    assert missing.path is None and missing.problem == f"not produced: {FAILURE}"


def test_an_output_without_a_record_is_labelled_not_scored(tmp_path: Path):
    result, entries, clip_dir = make_eval(tmp_path / "eval", Direction.TO_SINGING)
    del result.clips["sys-a"]["en-1"]
    side = clip_sides(result, entries[0], clip_dir)[1]
    assert side.path is not None and key_score_label(result.direction, side, "scoring failed") == \
        "not scored: scoring failed"


def test_missing_matplotlib_is_one_line_with_the_install_hint(monkeypatch, evaluation, tmp_path: Path):
    result, entries, clip_dir = evaluation
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)   # import fails as if not installed
    with pytest.raises(MissingDependencyError, match=r'pip install "voxflip\[eval\]"') as info:
        write_plots(result, entries, clip_dir, tmp_path / "plots")
    assert "\n" not in str(info.value) and "matplotlib" in str(info.value)
    assert not (tmp_path / "plots").exists()


def test_log_mel_has_80_bands_a_frame_per_10_ms_and_an_80_db_range():
    audio = tone(220.0, 1.0)
    db, fmax = log_mel_db(audio, SAMPLE_RATE)
    assert db.shape == (MEL_BANDS, 101) and fmax == SAMPLE_RATE / 2
    assert np.isclose(db.max() - db.min(), 80.0)
    assert np.argmax(db[:, 50]) < MEL_BANDS // 4                     # the energy is in the low bands


@pytest.mark.parametrize("name, safe", [("en-1", "en-1"), ("a.b_c", "a.b_c")])
def test_plain_ids_are_their_own_file_names(name, safe):
    assert safe_name(name) == safe


def test_other_ids_become_distinct_plain_file_names():
    names = ["a/b", "a_b", "a b", "a:b", "../up", "日本", "", "x" * 120, "x" * 121]
    safe = [safe_name(name) for name in names]
    assert len(set(safe)) == len(names), safe
    for name in safe:
        assert name and "/" not in name and not name.startswith(".") and len(name) <= 100

"""Tests of trainer.data.check: each problem kind is found, and filter_entries drops exactly those."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import DEV_DATA

from voxflip.trainer.data.check import PROBLEM_KINDS, CheckReport, check_manifest, filter_entries
from voxflip.trainer.data.manifest import ManifestEntry, NoteSpan, PhoneSpan, read_manifest, write_manifest


def _audio(path: Path, seconds: float, sample_rate: int = 16_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(round(seconds * sample_rate))
    sf.write(str(path), (0.1 * np.sin(np.arange(frames) * 0.05)).astype(np.float32), sample_rate)
    return path


def _truncated(path: Path) -> Path:
    _audio(path, 0.5)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header still declares the full data size
    return path


def _manifest(tmp_path: Path) -> tuple[Path, dict[str, str | None]]:
    """A manifest with one entry per problem kind (and good ones); returns it and the expected kind per id."""
    a = tmp_path / "audio"
    sung, spoken = _audio(a / "sung.flac", 1.0), _audio(a / "spoken.wav", 0.6)
    garbage = a / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    empty = a / "empty.wav"
    empty.write_bytes(b"")
    no_samples = a / "no_samples.wav"
    sf.write(str(no_samples), np.zeros(0, np.float32), 16_000)
    long_recording = _audio(a / "recording.flac", 3.0)
    phones = [PhoneSpan("AH", 0.0, 0.5), PhoneSpan("N", 0.5, 0.98)]
    cases: list[tuple[ManifestEntry, str | None]] = [
        (ManifestEntry("good", "la", singing=sung, speech=spoken, singing_phones=phones), None),
        (ManifestEntry("singing_only_segment", "la", singing=long_recording,
                       extra={"singing_start_s": 1.0, "singing_end_s": 2.5}), None),
        (ManifestEntry("speech_only", "la", speech=spoken), None),
        (ManifestEntry("missing", "la", singing=a / "nope.wav", speech=spoken), "missing"),
        (ManifestEntry("corrupt", "la", singing=sung, speech=garbage), "corrupt"),
        (ManifestEntry("truncated", "la", singing=_truncated(a / "truncated.wav"), speech=spoken), "corrupt"),
        (ManifestEntry("zero_bytes", "la", singing=empty, speech=spoken), "zero_length"),
        (ManifestEntry("zero_samples", "la", singing=no_samples, speech=spoken), "zero_length"),
        (ManifestEntry("low_rate", "la", singing=_audio(a / "low.wav", 1.0, 8_000), speech=spoken), "sample_rate"),
        (ManifestEntry("mismatch", "la", singing=long_recording, speech=_audio(a / "short.wav", 0.1)),
         "duration_mismatch"),
        (ManifestEntry("speech_longer", "la", singing=_audio(a / "blip.wav", 0.1), speech=long_recording),
         "duration_mismatch"),
        (ManifestEntry("late_phones", "la", singing=sung, speech=spoken,
                       speech_phones=[PhoneSpan("AH", 0.0, 0.5), PhoneSpan("N", 0.5, 0.9)]), "phones_beyond_end"),
        (ManifestEntry("late_notes", "la", singing=sung, notes=[NoteSpan(0.5, 1.4, 60)]), "phones_beyond_end"),
        (ManifestEntry("segment_past_end", "la", singing=long_recording,
                       extra={"singing_start_s": 2.0, "singing_end_s": 3.5}), "bad_segment"),
    ]
    path = write_manifest(tmp_path / "manifest.jsonl", [entry for entry, _ in cases])
    return path, {entry.id: kind for entry, kind in cases}


def test_check_finds_each_problem_kind(tmp_path):
    path, expected = _manifest(tmp_path)
    report = check_manifest(path)
    found = {p.entry_id: p.kind for p in report.problems}
    assert found == {entry_id: kind for entry_id, kind in expected.items() if kind}
    assert len(report.problems) == len(found)  # one problem each
    assert report.ok_ids == ["good", "singing_only_segment", "speech_only"]
    assert report.counts == {"missing": 1, "corrupt": 2, "zero_length": 2, "sample_rate": 1, "bad_segment": 1,
                             "duration_mismatch": 2, "phones_beyond_end": 2}
    assert set(report.counts) == set(PROBLEM_KINDS)
    assert all("\n" not in p.detail for p in report.problems)
    details = {p.entry_id: p.detail for p in report.problems}
    assert "does not exist" in details["missing"] and "ratio 30.00" in details["mismatch"]
    assert "'N' at 0.900 s" in details["late_phones"] and "8000 Hz" in details["low_rate"]


def test_filter_entries_drops_exactly_the_problem_entries_and_says_so(tmp_path, caplog):
    path, expected = _manifest(tmp_path)
    entries = read_manifest(path)
    with caplog.at_level(logging.WARNING):
        kept = filter_entries(entries, check_manifest(path))
    assert [e.id for e in kept] == [entry_id for entry_id, kind in expected.items() if kind is None]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipping 11 of 14 entries" in warnings[0] and "corrupt: 2" in warnings[0]


def test_filter_entries_refuses_a_report_of_another_manifest(tmp_path):
    path, _ = _manifest(tmp_path)
    stranger = ManifestEntry("not_in_report", "la", singing=tmp_path / "x.wav")
    with pytest.raises(ValueError, match="does not cover 1 entries .*'not_in_report'"):
        filter_entries([stranger], check_manifest(path))


def test_format_lists_counts_first_then_a_few_examples(tmp_path):
    path, _ = _manifest(tmp_path)
    text = check_manifest(path).format(max_examples=1)
    lines = text.splitlines()
    assert lines[0].endswith("14 entries, 3 usable, 11 with problems")
    assert lines[1:8] == ["  missing: 1", "  corrupt: 2", "  zero_length: 2", "  sample_rate: 1", "  bad_segment: 1",
                          "  duration_mismatch: 2", "  phones_beyond_end: 2"]
    assert "corrupt (2):" in lines and "  ... and 1 more" in lines
    clean = CheckReport(path, 2, [], ["a", "b"])
    assert clean.ok and clean.format() == f"{path}: 2 entries, 2 usable, 0 with problems"


def test_parallel_check_matches_serial_and_reports_progress(tmp_path):
    path, _ = _manifest(tmp_path)
    calls: list[tuple[int, int]] = []
    serial = check_manifest(path)
    parallel = check_manifest(path, workers=2, progress=lambda done, total: calls.append((done, total)))
    assert parallel.problems == serial.problems and parallel.ok_ids == serial.ok_ids
    assert calls[-1] == (14, 14)


def test_duration_ratio_and_sample_rate_limits_are_settable(tmp_path):
    path, _ = _manifest(tmp_path)
    loose = check_manifest(path, max_duration_ratio=50.0, min_sample_rate_hz=8_000)
    assert loose.counts["duration_mismatch"] == 0 and loose.counts["sample_rate"] == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"max_duration_ratio": 0.5}, "max_duration_ratio"),
    ({"max_duration_ratio": float("inf")}, "max_duration_ratio"),
    ({"workers": 0}, "workers"),
    ({"min_sample_rate_hz": 48_000, "max_sample_rate_hz": 16_000}, "min_sample_rate_hz"),
    ({"tolerance_s": -1.0}, "tolerance_s"),
])
def test_check_rejects_bad_arguments(tmp_path, kwargs, match):
    path, _ = _manifest(tmp_path)
    with pytest.raises(ValueError, match=match):
        check_manifest(path, **kwargs)


@pytest.mark.devdata
def test_dev_data_pairs_all_pass():
    manifest = DEV_DATA / "manifest.jsonl"
    if not manifest.exists():
        pytest.skip(f"development recordings not found at {DEV_DATA}")
    report = check_manifest(manifest)  # default ratio 5
    assert report.total == 25 and report.ok, report.format()
    # At ratio 4 one real pair would be flagged (an operatic line sung 4.1x longer than spoken),
    # which is why the default is 5.
    strict = check_manifest(manifest, max_duration_ratio=4.0)
    assert [(p.entry_id, p.kind) for p in strict.problems] == [("fr_tenor_1_vibrato", "duration_mismatch")]

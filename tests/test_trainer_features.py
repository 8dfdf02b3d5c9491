"""`voxflip corpus features`: engine features per frame, cached by configuration, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxflip.trainer.data.features import FeatureConfig, compute_features, frame_labels, load_features
from voxflip.trainer.data.manifest import ManifestEntry, PhoneSpan, write_manifest


@pytest.fixture
def tiny_manifest(tmp_path: Path, example_speech) -> Path:
    audio, rate = example_speech
    sf.write(tmp_path / "a.speech.wav", audio[: rate], rate)
    sf.write(tmp_path / "a.sing.wav", np.tile(audio[: rate], 2), rate)
    sf.write(tmp_path / "b.speech.wav", audio[rate : 2 * rate], rate)
    entries = [
        ManifestEntry(id="a", text="and you", singing=tmp_path / "a.sing.wav", speech=tmp_path / "a.speech.wav",
                      speech_phones=[PhoneSpan("ae", 0.0, 0.2), PhoneSpan("n", 0.2, 0.5), PhoneSpan("d", 0.5, 1.0)]),
        ManifestEntry(id="b", text="always", speech=tmp_path / "b.speech.wav"),
    ]
    return write_manifest(tmp_path / "manifest.jsonl", entries)


def test_features_have_the_engine_shapes_and_phone_labels(tiny_manifest: Path):
    report = compute_features(tiny_manifest)
    assert report.computed == 2 and not report.failed
    feats = load_features(report.folder, "a")
    frames = feats["speech_mel"].shape[0]
    assert feats["speech_mel"].shape == (frames, 80) and frames == 100  # 1 s at 16 kHz, 10 ms hop: centres 0..990 ms
    assert feats["singing_mel"].shape[0] == 200
    for key in ("f0_hz", "energy", "rhythm", "phones"):
        assert feats[f"speech_{key}"].shape == (frames,)
    phones = json.loads((report.folder / "phones.json").read_text())
    assert phones == ["ae", "d", "n"]
    labels = feats["speech_phones"]
    assert labels[0] == 0 and labels[30] == 2 and labels[70] == 1  # ae, n, d by frame centre
    assert np.all(feats["singing_phones"] == -1)  # no sung phones in the manifest
    assert (feats["speech_f0_hz"] > 0).mean() > 0.2  # real speech is partly voiced
    assert "singing_mel" not in load_features(report.folder, "b")


def test_a_second_run_reuses_the_cache_and_a_new_config_gets_a_new_folder(tiny_manifest: Path):
    first = compute_features(tiny_manifest)
    again = compute_features(tiny_manifest)
    assert (again.computed, again.cached) == (0, 2) and again.folder == first.folder
    other = compute_features(tiny_manifest, config=FeatureConfig.preset("to_singing"))
    assert other.folder != first.folder and other.computed == 2
    assert load_features(other.folder, "a")["speech_mel"].shape[0] == 188  # 24 kHz, hop 128


def test_an_interrupted_run_resumes_and_failures_are_reported(tiny_manifest: Path, tmp_path: Path):
    report = compute_features(tiny_manifest)
    (report.folder / "a.npz").unlink()
    (tmp_path / "b.speech.wav").write_bytes(b"not audio")
    again = compute_features(tiny_manifest)
    assert (again.computed, again.cached, again.failed) == (1, 1, {})  # 'a' redone; b's features were cached
    (again.folder / "b.npz").unlink()
    third = compute_features(tiny_manifest)
    assert "b" in third.failed and "not a recognised audio file" in third.failed["b"]


def test_frame_labels_follow_the_frame_centres():
    labels = frame_labels([PhoneSpan("x", 0.0, 0.025), PhoneSpan("y", 0.025, 0.05)], 6, 0.01, {"x": 0, "y": 1})
    assert labels.tolist() == [0, 0, 0, 1, 1, -1]


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="not one of to_speech, to_singing"):
        FeatureConfig.preset("xyz")


def test_the_old_preset_names_still_read():
    assert FeatureConfig.preset("s2s") == FeatureConfig.preset("to_speech")
    assert FeatureConfig.preset("sts") == FeatureConfig.preset("to_singing")

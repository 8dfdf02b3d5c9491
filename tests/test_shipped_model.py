"""The S2S flow model shipped in the package: present, small, loadable, and run without torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from voxflip.engine.registry import default_flow_model

pytest.importorskip("onnxruntime", reason="flow models run on onnxruntime (the train extra)")

MODEL = default_flow_model()
pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason="no flow model is shipped in this checkout")


def test_the_shipped_artifact_is_complete_and_a_few_megabytes():
    manifest = json.loads(MODEL.read_text())
    files = [MODEL.parent / name for name in manifest["files"].values()]
    assert all(f.is_file() for f in files)
    total = sum(f.stat().st_size for f in files) + MODEL.stat().st_size
    assert total < 10 * 2**20, f"{total / 2**20:.1f} MB"
    assert manifest["model_config"]["duration_smoothing"] == 9


def test_flow_renders_speech_from_the_command_line_without_torch(tmp_path: Path, example_speech_path: Path):
    from helpers import cli_heavy_imports

    out = tmp_path / "spoken.wav"
    heavy = cli_heavy_imports(["render", str(example_speech_path), "-o", str(out), "--to", "speech", "--method", "flow",
                               "-q"], ("torch", "onnx", "tensorrt"))
    assert heavy == []
    import soundfile as sf

    audio, rate = sf.read(out)
    source = sf.info(example_speech_path)
    assert rate == source.samplerate and np.all(np.isfinite(audio))
    assert np.sqrt(np.mean(audio**2)) > 1e-3                  # it speaks: not silence

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
    # what docs/models.md measured: the residual model, decoding the prior mean
    assert manifest["residual"] is True and manifest["noise_scale"] == 0.0


def test_flow_renders_speech_from_the_command_line_without_torch(tmp_path: Path, example_speech_path: Path):
    from helpers import cli_heavy_imports

    from voxflip.engine.registry import default_method

    assert default_method("speech") == "flow"     # the shipped model is the default (docs/results.md)
    out = tmp_path / "spoken.wav"
    heavy = cli_heavy_imports(["render", str(example_speech_path), "-o", str(out), "--to", "speech", "-q"],
                              ("torch", "onnx", "tensorrt"))
    assert heavy == []
    import soundfile as sf

    audio, rate = sf.read(out)
    source = sf.info(example_speech_path)
    assert rate == source.samplerate and np.all(np.isfinite(audio))
    assert np.sqrt(np.mean(audio**2)) > 1e-3                  # it speaks: not silence


def test_the_shipped_model_is_a_starting_point_for_fine_tuning():
    """train.init_from = "shipped" reads the packaged export back into torch; it converts as shipped."""
    torch = pytest.importorskip("torch", reason="fine-tuning needs the train extra (torch)")
    from voxflip.engine.backends.onnx_step import OnnxStepModel
    from voxflip.trainer.config import RunConfig, TrainConfig
    from voxflip.trainer.export import load_exported, torch_step_reference

    assert RunConfig(train=TrainConfig(init_from="shipped")).init_path() == MODEL
    model, fresh = load_exported(MODEL)
    assert {k.split(".")[0] for k in fresh} == {"phone", "flow"}
    rng = np.random.default_rng(1)
    mel = rng.normal(-4.0, 2.0, (1, 80, 24)).astype(np.float32)
    noise = rng.standard_normal((1, 80, 24)).astype(np.float32)
    reference = torch_step_reference(model, mel, noise, chunk=2)[0].T
    onnx = OnnxStepModel(MODEL)
    state, outs = onnx.init_state(), []
    for i in range(0, 24, 2):
        out, _, _, _, state = onnx.step(mel[0, :, i : i + 2].T, noise[0, :, i : i + 2].T, state)
        outs.append(out)
    assert np.max(np.abs(np.concatenate(outs) - reference)) < 1e-4
    assert isinstance(model, torch.nn.Module)

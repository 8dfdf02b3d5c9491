"""The S2S flow model shipped in the package: present, small, loadable, and run without torch.

The default converter of each direction and the flow converter stream the same at any block
size, and the flow model's chunked inference equals its inference in one long chunk, here in
the default test run, with no torch: ONNX Runtime and the shipped export only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import CHUNK_SIZES, assert_allclose_report_first_mismatch, stream_in_blocks

from voxflip.engine.registry import (
    Direction,
    default_converter,
    default_flow_model,
    get_converter,
    make_converter,
)
from voxflip.streaming.streamer import Streamer

pytest.importorskip("onnxruntime", reason="flow models run on ONNX Runtime (the cpu or gpu extra)")

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

    out = tmp_path / "spoken.wav"
    heavy = cli_heavy_imports(["render", str(example_speech_path), "-o", str(out), "--to", "speech", "--method",
                               "flow", "-q"], ("torch", "onnx", "tensorrt"))
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


@pytest.fixture(scope="module")
def tune():
    from importlib.resources import files

    return Path(str(files("voxflip") / "data" / "tune.mid"))


#: the default of each direction, and the flow converter of the shipped model
STREAMED = sorted({default_converter(d).name for d in Direction} | {"flow-dur"})


def _build(name: str, tune: Path):
    spec = get_converter(name)
    options = {"melody": tune} if spec.direction is Direction.TO_SINGING else {}
    return make_converter(spec.direction, name, **options)


@pytest.fixture(scope="module")
def whole(short_voice, tune):
    """Each converter's output for the 1 s voice given in one block."""
    return {name: stream_in_blocks(Streamer(_build(name, tune), 24_000), short_voice, 10**9) for name in STREAMED}


@pytest.mark.parametrize("name", STREAMED)
@pytest.mark.parametrize("block", CHUNK_SIZES)
def test_the_default_and_flow_converters_output_does_not_depend_on_the_block_size(short_voice, tune, whole, name,
                                                                                   block):
    out = stream_in_blocks(Streamer(_build(name, tune), 24_000), short_voice, block)
    assert np.sqrt(np.mean(out**2)) > 1e-3, f"{name} is silent"
    assert_allclose_report_first_mismatch(out, whole[name], 1e-6, f"{name} block={block}")


@pytest.mark.parametrize("method", ["flow-dur", "flow-nodur"])
def test_the_shipped_models_chunked_inference_equals_one_long_chunk(example_speech, method):
    """20 ms chunks (two frames per ONNX call, state carried) against 1 s chunks of the same stream."""
    audio, rate = example_speech
    chunked = stream_in_blocks(Streamer(make_converter("speech", method, chunk_ms=20), rate), audio, 4096)
    long = stream_in_blocks(Streamer(make_converter("speech", method, chunk_ms=1000), rate), audio, 4096)
    n = min(chunked.shape[0], long.shape[0])
    assert abs(chunked.shape[0] - long.shape[0]) <= rate // 100, (chunked.shape, long.shape)  # the last chunk's pad
    assert np.sqrt(np.mean(chunked**2)) > 1e-3
    assert_allclose_report_first_mismatch(chunked[:n], long[:n], 1e-4, method)

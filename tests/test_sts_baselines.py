"""The AlignSTS paper's baselines (issue #18): the linear stretch on known cases, what each model reads,
padding, chunked equals whole, ONNX parity through the engine's runner, exact resuming, the eval systems."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_training_resumes_exactly, sts_batch

torch = pytest.importorskip("torch")

from voxflip.engine.converters.alignsts_model import f0_classes  # noqa: E402
from voxflip.engine.errors import ConfigError  # noqa: E402
from voxflip.trainer.models.alignsts import AlignSTSConfig  # noqa: E402
from voxflip.trainer.models.sts_baselines import (  # noqa: E402
    ParekhSTS,
    SpeechSplit2STS,
    build_model,
    stretch_gather,
    stretch_weights,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PAREKH = AlignSTSConfig(architecture="parekh", decoder="conv", window_mode="absolute", hidden=32,
                        content_bottleneck=8, decoder_layers=2, timbre_layers=1, baseline_layers=2)
SPLIT = replace(PAREKH, architecture="speechsplit2")
SPLIT_SE = replace(SPLIT, ss_rhythm_input="target")
VARIANTS = {"parekh": PAREKH, "speechsplit2": SPLIT, "speechsplit2-se": SPLIT_SE}


def _batch(seed: int = 0, t=(120, 90), n=(30, 22), m=(110, 80)):
    return sts_batch(seed, t, n, m)


def _infer(model, batch, **kw):
    extra = {"target_mel": batch["mel"]} if model.cfg.ss_rhythm_input == "target" and isinstance(
        model, SpeechSplit2STS) else {}
    return model.infer(batch["content"], batch["content_len"], batch["f0_bins"], batch["mel_len"],
                       batch["timbre_mel"], batch["timbre_len"], **extra, **kw)


# -- the stretch ----------------------------------------------------------------------------------
def test_stretch_weights_on_a_known_case():
    # 6 target frames on 4 content frames (3 real), half a content frame per target frame
    w = stretch_weights(6, torch.tensor([3]), 4, torch.tensor([0.5]), torch.tensor([0.0]), torch.tensor([0.0]))[0]
    assert w.shape == (6, 4)
    want = [[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 1, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 1, 0], [0, 0, 1, 0]]
    assert torch.allclose(w, torch.tensor(want, dtype=torch.float32))   # the last row clipped to the last real frame
    assert torch.allclose(w.sum(-1), torch.ones(6))
    # a slice: target frames from 4 on, content frames from 1 on, read the same absolute positions
    part = stretch_weights(2, torch.tensor([2]), 2, torch.tensor([0.5]), torch.tensor([2.0]), torch.tensor([1.0]))[0]
    assert torch.allclose(part, w[2:4, 1:3])


def test_stretch_gather_is_linear_interpolation():
    x = torch.tensor([[[0.0, 10.0, 20.0, 30.0, 99.0]]])               # 4 real frames, one padded
    got = stretch_gather(x, torch.tensor([4]), 8, torch.tensor([0.5]), torch.tensor([0.0]))[0, 0]
    assert torch.allclose(got, torch.tensor([0.0, 5, 10, 15, 20, 25, 30, 30]))
    shifted = stretch_gather(x, torch.tensor([4]), 3, torch.tensor([0.5]), torch.tensor([3.0]))[0, 0]
    assert torch.allclose(shifted, got[3:6])
    rng = np.random.default_rng(0)
    y = rng.standard_normal(37).astype(np.float32)
    pos = np.arange(50) * 0.7
    want = np.interp(np.minimum(pos, 36), np.arange(37), y)
    got = stretch_gather(torch.from_numpy(y)[None, None], torch.tensor([37]), 50, torch.tensor([0.7]),
                         torch.tensor([0.0]))[0, 0]
    assert np.allclose(got.numpy(), want, atol=1e-5)


# -- the models -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
def test_every_part_learns_and_the_losses_are_finite(name):
    torch.manual_seed(0)
    model = build_model(VARIANTS[name])
    assert isinstance(model, ParekhSTS if name == "parekh" else SpeechSplit2STS)
    out = model(**_batch())
    assert set(out) >= {"loss", "mae", "ssim"} and "rhythm_ce" not in out
    assert all(torch.isfinite(out[k]) for k in ("loss", "mae", "ssim"))
    out["loss"].backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert no_grad == []


@pytest.mark.parametrize("name", VARIANTS)
def test_what_each_model_reads(name):
    """Parekh hears the speech's spectrogram, not the content features; SpeechSplit hears the content, and its
    rhythm from the speech's envelope (w/o SE) or the singing's (w/ SE)."""
    torch.manual_seed(0)
    model = build_model(VARIANTS[name]).eval()
    batch = _batch(t=(120,), n=(30,), m=(110,))
    base = _infer(model, batch)["mel"]

    def moved(key: str) -> bool:
        other = dict(batch)
        other[key] = batch[key] + torch.randn_like(batch[key])
        return not torch.allclose(_infer(model, other)["mel"], base, atol=1e-5)

    assert moved("timbre_mel")
    assert moved("content") == (name != "parekh")
    assert moved("mel") == (name == "speechsplit2-se")     # the target's mel only for the oracle
    other = dict(batch, f0_bins=(batch["f0_bins"] + 7) % 256)
    assert not torch.allclose(_infer(model, other)["mel"], base, atol=1e-5)
    # its attention output is the stretch: each target frame on t * N / T
    attention = _infer(model, batch)["attention"][0]
    assert attention.shape == (120, 30) and torch.allclose(attention.sum(-1), torch.ones(120))
    assert int(attention[60].argmax()) == 15


@pytest.mark.parametrize("name", VARIANTS)
def test_padding_does_not_change_an_utterance(name):
    torch.manual_seed(0)
    model = build_model(VARIANTS[name]).eval()
    batch = _batch()
    both = _infer(model, batch)["mel"]
    short = {k: v[1:2] for k, v in batch.items()}
    short["content"], short["f0_bins"] = short["content"][:, :, :22], short["f0_bins"][:, :90]
    short["timbre_mel"], short["mel"] = short["timbre_mel"][:, :, :80], short["mel"][:, :, :90]
    alone = _infer(model, short)["mel"]
    assert torch.allclose(both[1, :, :90], alone[0], atol=1e-4)
    assert torch.all(both[1, :, 90:] == 0)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_equals_whole(name, chunk):
    from voxflip.trainer.alignsts_infer import infer_streamed

    torch.manual_seed(0)
    model = build_model(VARIANTS[name]).eval()
    batch = _batch(t=(150,), n=(37,), m=(139,))
    whole = _infer(model, batch)["mel"]
    extra = {"target_mel": batch["mel"]} if name == "speechsplit2-se" else {}
    streamed = infer_streamed(model, batch["content"], batch["f0_bins"], batch["timbre_mel"], chunk_frames=chunk,
                              **extra)
    assert torch.allclose(streamed, whole, atol=1e-5)


def test_config_errors_are_one_line():
    for bad, word in (({"architecture": "autovc"}, "architecture"),
                      ({"architecture": "parekh"}, "decoder"),                     # diffusion by default
                      ({"architecture": "parekh", "decoder": "conv"}, "absolute"),  # relative windows by default
                      ({"decoder": "conv"}, "baselines' decoder"),
                      ({**{"architecture": "speechsplit2", "decoder": "conv", "window_mode": "absolute"},
                        "ss_rhythm_input": "singing"}, "ss_rhythm_input"),
                      ({"architecture": "parekh", "decoder": "conv", "window_mode": "absolute",
                        "baseline_kernel": 4}, "odd")):
        with pytest.raises(ConfigError, match=word) as info:
            AlignSTSConfig(**bad)
        assert "\n" not in str(info.value)


# -- the engine's runner ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
def test_engine_runner_sings_what_the_torch_model_sings(tmp_path, name):
    """Exported, the baselines run in the ``alignsts`` converter's runner chunk by chunk, and every chunking
    gives the torch model's whole-utterance mel."""
    pytest.importorskip("onnxruntime")
    from voxflip.engine.converters.alignsts_model import AlignSTSModel
    from voxflip.trainer.alignsts_export import export_model

    torch.manual_seed(0)
    model = build_model(VARIANTS[name]).eval()
    manifest = json.loads(export_model(model, tmp_path / "alignsts.onnx").read_text())
    assert manifest["decoder"] == "conv" and manifest["stream_context"]["content_frames"] == 2
    assert ("target_mel" in manifest["inputs"]) == (name == "speechsplit2-se")
    engine = AlignSTSModel(tmp_path)
    assert engine.streams and engine.needs_target_mel == (name == "speechsplit2-se")
    assert VARIANTS[name].architecture in engine.describe()
    rng = np.random.default_rng(3)
    t, n, m = 230, 41, 150
    content = rng.standard_normal((n, 512)).astype(np.float32)
    f0 = np.where(np.arange(t) % 50 < 40, 220.0 * 2 ** (np.arange(t) // 50 / 12), 0.0).astype(np.float32)
    timbre = (rng.standard_normal((m, 80)) - 4.0).astype(np.float32)
    sung = (rng.standard_normal((t, 80)) - 4.0).astype(np.float32)
    extra = {"target_mel": torch.from_numpy(sung.T.copy())[None]} if engine.needs_target_mel else {}
    want = model.infer(torch.from_numpy(content.T.copy())[None], torch.tensor([n]),
                       torch.from_numpy(f0_classes(f0))[None], torch.tensor([t]),
                       torch.from_numpy(timbre.T.copy())[None], torch.tensor([m]), **extra)["mel"][0].T.numpy()
    for chunk in (512, 7, 64):
        got = engine.sing(content, f0, timbre, chunk_frames=chunk, target_mel=sung)
        assert np.max(np.abs(got - want)) < 1e-4, f"chunks of {chunk}"
    if engine.needs_target_mel:
        with pytest.raises(ConfigError, match="real singing's envelope"):
            engine.sing(content, f0, timbre)


def test_a_baseline_manifest_without_its_input_is_one_line(tmp_path):
    pytest.importorskip("onnxruntime")
    from voxflip.engine.converters.alignsts_model import AlignSTSModel
    from voxflip.trainer.alignsts_export import export_model

    path = export_model(build_model(SPLIT_SE).eval(), tmp_path / "alignsts.onnx")
    manifest = json.loads(path.read_text())
    manifest["inputs"] = manifest["inputs"][:-1]
    path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="target_mel") as info:
        AlignSTSModel(tmp_path)
    assert "\n" not in str(info.value)
    manifest["model_config"]["architecture"] = "autovc"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="architecture"):
        AlignSTSModel(tmp_path)


# -- training and the eval systems -------------------------------------------------------------------
_TINY = ['model.decoder="conv"', 'model.window_mode="absolute"', "model.baseline_layers=1"]


@pytest.mark.parametrize("name", VARIANTS)
def test_tiny_training_resumes_exactly(pair_manifest, tmp_path, name):
    from voxflip.trainer.alignsts_train import load_alignsts_config

    cfg = VARIANTS[name]
    overrides = [f"data.manifest={json.dumps(str(pair_manifest))}", f"model.architecture={json.dumps(cfg.architecture)}",
                 f"model.ss_rhythm_input={json.dumps(cfg.ss_rhythm_input)}", *_TINY]
    config = load_alignsts_config(CONFIGS / "alignsts_tiny.toml", overrides)
    model, payload = assert_training_resumes_exactly(config, tmp_path, "out.weight")
    assert payload["step"] == 4
    assert model.cfg.architecture == cfg.architecture and model.cfg.ss_rhythm_input == cfg.ss_rhythm_input


@pytest.fixture(scope="module")
def split_se_checkpoint(pair_manifest, tmp_path_factory) -> Path:
    from voxflip.trainer.alignsts_train import load_alignsts_config, train_alignsts

    overrides = [f"data.manifest={json.dumps(str(pair_manifest))}", "train.max_steps=1",
                 'model.architecture="speechsplit2"', 'model.ss_rhythm_input="target"', *_TINY]
    return train_alignsts(load_alignsts_config(CONFIGS / "alignsts_tiny.toml", overrides),
                          tmp_path_factory.mktemp("ssrun"), progress=False)


def test_eval_systems_of_the_baselines(split_se_checkpoint, pair_manifest):
    """``ref:speechsplit2-se`` sings the real singing's F0 with its envelope; the oracle has no notes-only system."""
    import soundfile as sf

    from voxflip.trainer.data.manifest import read_manifest
    from voxflip.trainer.eval.systems import SYSTEMS, get_system

    entry = read_manifest(pair_manifest)[0]
    options = {"alignsts_models": {"speechsplit2-se": str(split_se_checkpoint)}}
    audio, rate = get_system("ref:speechsplit2-se").run(entry, options)
    assert rate == sf.info(str(entry.speech)).samplerate and np.all(np.isfinite(audio))
    assert abs(audio.shape[0] / rate - 1.2) < 0.02                 # the reference singing's length
    assert "speechsplit2-se" not in SYSTEMS and {"parekh", "speechsplit2", "ref:parekh"} <= set(SYSTEMS)
    with pytest.raises(ConfigError, match="--alignsts parekh=EXPORT_DIR"):
        get_system("parekh").run(entry, options)

"""The AlignSTS model (issue #18): F0 classes, windows and masks, the guided attention loss on known
cases, the rhythm VQ, both decoders, and a tiny training run on real Whisper content that resumes exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import assert_training_resumes_exactly, sts_batch

torch = pytest.importorskip("torch")

from voxflip.engine.converters.alignsts_model import f0_classes  # noqa: E402
from voxflip.engine.errors import ConfigError  # noqa: E402
from voxflip.trainer.models.alignsts import (  # noqa: E402
    AlignSTS,
    AlignSTSConfig,
    RhythmVQ,
    cosine_schedule,
    guided_attention_loss,
    ssim_loss,
    window_mask,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = AlignSTSConfig(hidden=32, content_bottleneck=8, diffusion_channels=32, decoder_layers=1, timbre_layers=1)


def test_f0_classes():
    f0 = np.array([0.0, 50.0, 1100.0, 5000.0, 20.0, 220.0, 440.0])
    q = f0_classes(f0)
    assert q.dtype.kind == "i"
    assert q[0] == 0                                  # unvoiced
    assert q[1] == 1 and q[4] == 1                    # the floor, and below it clipped to it
    assert q[2] == 255 and q[3] == 255                # the ceiling, and above it
    assert 1 < q[5] < q[6] < 255
    # uniform on the mel scale, which is nearly linear below 700 Hz: 220 -> 440 moves about twice 110 -> 220
    q110, q220, q440 = f0_classes(np.array([110.0, 220.0, 440.0]))
    assert 1.6 < (q440 - q220) / (q220 - q110) < 2.1


def test_window_mask_on_a_known_case():
    # 10 queries on 5 keys of an utterance of 8 queries and 4 keys: centre t * 0.5, half-width 1
    mask = window_mask(torch.tensor([8]), torch.tensor([4]), 10, 5, centre_ratio=torch.tensor([0.5]),
                       half_width=torch.tensor([1.0]))[0]
    assert mask.shape == (10, 5)
    assert mask[0].tolist() == [True, True, False, False, False]
    assert mask[4].tolist() == [False, True, True, True, False]      # centre 2
    assert mask[7].tolist() == [False, False, True, True, False]     # centre 3.5: keys 3 (real) and 2.5..4.5
    assert not mask[:, 4].any()                                      # key 4 is padding
    assert mask[9].tolist() == [False, False, True, True, False]     # centre clipped to the last real key
    assert mask.any(dim=1).all()                                     # every query sees a key


def _reference_guided(attn: np.ndarray, g: float) -> float:
    t_size, n_size = attn.shape
    t = np.arange(t_size)[:, None] / t_size
    n = np.arange(n_size)[None, :] / n_size
    return float((attn * (1 - np.exp(-((n - t) ** 2) / (2 * g * g)))).sum() / (t_size * n_size))


def test_guided_attention_loss_on_known_cases():
    t_len, n_len = torch.tensor([6]), torch.tensor([6])
    diagonal = torch.eye(6)[None]
    assert float(guided_attention_loss(diagonal, t_len, n_len)) == pytest.approx(0.0, abs=1e-7)
    anti = torch.flip(torch.eye(6), dims=[1])[None]
    # row t attends to n = 5 - t: |n/N - t/T| = |5 - 2t| / 6
    expected = sum(1 - math.exp(-(((5 - 2 * t) / 6) ** 2) / (2 * 0.01)) for t in range(6)) / 36
    assert float(guided_attention_loss(anti, t_len, n_len)) == pytest.approx(expected, rel=1e-5)
    uniform = torch.full((1, 8, 5), 1 / 5)
    assert float(guided_attention_loss(uniform, torch.tensor([8]), torch.tensor([5]))) == pytest.approx(
        _reference_guided(uniform[0].numpy(), 0.1), rel=1e-5)
    # padding: the same utterance padded to (12, 9) with garbage outside gives the same value
    padded = torch.rand(1, 12, 9)
    padded[0, :8, :5] = uniform[0]
    assert float(guided_attention_loss(padded, torch.tensor([8]), torch.tensor([5]))) == pytest.approx(
        _reference_guided(uniform[0].numpy(), 0.1), rel=1e-5)
    # a batch is the mean of its utterances
    both = torch.zeros(2, 8, 6)
    both[0, :6, :6] = anti[0]
    both[1, :8, :5] = uniform[0]
    assert float(guided_attention_loss(both, torch.tensor([6, 8]), torch.tensor([6, 5]))) == pytest.approx(
        (expected + _reference_guided(uniform[0].numpy(), 0.1)) / 2, rel=1e-5)


def test_rhythm_vq_quantises_commits_and_follows_its_data():
    torch.manual_seed(0)
    vq = RhythmVQ(6, 4, decay=0.5)
    mask = torch.tensor([[True] * 5 + [False] * 2])
    z = torch.randn(1, 7, 4, requires_grad=True)
    q, idx, commit = vq(z, mask)
    assert q.shape == (1, 7, 4) and idx.shape == (1, 7)
    assert int(idx.min()) >= 0 and int(idx.max()) < 6
    assert torch.all(q[0, 5:] == 0)                                         # padding stays zero
    q.sum().backward()                                                      # straight through
    assert torch.equal(z.grad[0, :5], torch.ones(5, 4)) and torch.all(z.grad[0, 5:] == 0)
    # commitment: zero when every vector is a code
    vq.eval()
    codes = vq.codebook[torch.tensor([[0, 3, 5]])]
    _, idx, commit = vq(codes.clone(), torch.ones(1, 3, dtype=torch.bool))
    assert idx.tolist() == [[0, 3, 5]] and float(commit) == pytest.approx(0.0, abs=1e-10)
    # EMA: in training the used code moves towards its vectors; in eval nothing moves
    before = vq.codebook.clone()
    far = torch.full((1, 5, 4), 3.0)
    vq(far, torch.ones(1, 5, dtype=torch.bool))
    assert torch.equal(vq.codebook, before)
    vq.train()
    _, idx, _ = vq(far, torch.ones(1, 5, dtype=torch.bool))
    k = int(idx[0, 0])
    assert float((vq.codebook[k] - 3.0).abs().max()) < float((before[k] - 3.0).abs().max())


def test_cosine_schedule_and_ssim():
    a = cosine_schedule(4)
    assert a.shape == (4,) and torch.all(a[1:] < a[:-1]) and 0 < float(a[-1]) < float(a[0]) < 1
    x = torch.randn(2, 80, 50)
    mask = torch.ones(2, 50, dtype=torch.bool)
    assert float(ssim_loss(x, x, mask)) == pytest.approx(0.0, abs=1e-5)
    assert float(ssim_loss(x, torch.randn(2, 80, 50), mask)) > 0.5
    # frames past the length do not count
    y = x.clone()
    y[:, :, 40:] = 5.0
    short = torch.tensor([[True] * 40 + [False] * 10] * 2)
    assert float(ssim_loss(x, y, short)) < float(ssim_loss(x, y, mask))


def _batch(seed: int = 0, t=(120, 90), n=(30, 22), m=(70, 50)):
    return sts_batch(seed, t, n, m)


@pytest.mark.parametrize("decoder", ["diffusion", "fs2"])
def test_every_part_learns_and_the_losses_are_finite(decoder):
    from dataclasses import replace

    torch.manual_seed(0)
    model = AlignSTS(replace(SMALL, decoder=decoder))
    out = model(**_batch())
    for key in ("loss", "mae", "ssim", "commit", "rhythm_ce", "guided"):
        assert torch.isfinite(out[key]), key
    assert 0 <= float(out["rhythm_acc"]) <= 1
    out["loss"].backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert no_grad == []


@pytest.mark.parametrize("decoder", ["diffusion", "fs2"])
def test_padding_does_not_change_an_utterance(decoder):
    """An utterance converted alone equals the same utterance in a batch with a longer one."""
    from dataclasses import replace

    torch.manual_seed(0)
    model = AlignSTS(replace(SMALL, decoder=decoder)).eval()
    batch = _batch()
    keys = ("content", "content_len", "f0_bins", "mel_len", "timbre_mel", "timbre_len")
    both = model.infer(*(batch[k] for k in keys))
    short = {k: batch[k][1:2] for k in keys}
    short["content"] = short["content"][:, :, :22]
    short["f0_bins"] = short["f0_bins"][:, :90]
    short["timbre_mel"] = short["timbre_mel"][:, :, :50]
    alone = model.infer(*(short[k] for k in keys))
    assert torch.allclose(both["mel"][1, :, :90], alone["mel"][0], atol=1e-4)
    assert torch.equal(both["codes"][1, :90], alone["codes"][0])
    assert torch.all(both["mel"][1, :, 90:] == 0)
    # the aligner's weights live inside the window and on real keys only
    attn = both["attention"][1, :90]
    assert torch.allclose(attn.sum(-1), torch.ones(90), atol=1e-5)
    assert float(attn[:, 22:].sum()) == 0.0


def test_absolute_windows_need_no_whole_lengths():
    """With ``window_mode = "absolute"`` and a given ratio the output's first frames do not depend on how
    long the target is."""
    from dataclasses import replace

    torch.manual_seed(0)
    model = AlignSTS(replace(SMALL, decoder="fs2", window_mode="absolute", window_frames=4,
                             decoder_context=8)).eval()
    batch = _batch(t=(120,), n=(30,), m=(70,))

    def run(t: int, relative: bool = False) -> torch.Tensor:
        m = model
        if relative:
            m = AlignSTS(replace(model.cfg, window_mode="relative")).eval()
            m.load_state_dict(model.state_dict())
        return m.infer(batch["content"], batch["content_len"], batch["f0_bins"][:, :t], torch.tensor([t]),
                       batch["timbre_mel"], batch["timbre_len"],
                       ratio=None if relative else torch.tensor([0.25]))["mel"]

    whole, part = run(120), run(80)
    # what a frame sees ahead: pitch encoder 6, rhythm predictor 4 + 2, aligner 2 x 4, decoder 8 + 4 = 32 frames
    assert torch.allclose(whole[:, :, :80 - 32], part[:, :, :80 - 32], atol=1e-5)
    assert not torch.allclose(whole[:, :, 70:80], part[:, :, 70:80], atol=1e-3)
    # with the paper's window (centre t * N / T) the output moves with T
    assert not torch.allclose(run(120, True)[:, :, :60], run(80, True)[:, :, :60], atol=1e-3)


def test_config_errors_are_one_line():
    for bad, word in (({"decoder": "wavenet"}, "decoder"), ({"window_mode": "free"}, "window_mode"),
                      ({"aligner_window": 0.0}, "aligner_window"), ({"hidden": 30, "aligner_heads": 4}, "hidden")):
        with pytest.raises(ConfigError, match=word) as info:
            AlignSTSConfig(**bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown key"):
        AlignSTSConfig.from_dict({"hiddn": 3})


# -- training on real Whisper content -------------------------------------------------------------
@pytest.mark.parametrize("decoder", ["diffusion", "fs2"])
def test_tiny_training_resumes_exactly(pair_manifest, tmp_path, decoder):
    """4 steps straight == 2 steps, stop, resume for 2 more (the fs2 decoder with its discriminator)."""
    from voxflip.trainer.alignsts_train import load_alignsts_config

    config = load_alignsts_config(CONFIGS / "alignsts_tiny.toml", [
        f"data.manifest={json.dumps(str(pair_manifest))}", f"model.decoder={json.dumps(decoder)}"])
    model, payload = assert_training_resumes_exactly(config, tmp_path, "rp_out.weight")
    assert payload["step"] == 4 and model.cfg.decoder == decoder


def test_zero_shot_mode_trains_on_singing_alone(pair_manifest, tmp_path):
    from voxflip.trainer.alignsts_train import load_alignsts_config, load_utterances, train_alignsts

    rows = [json.loads(line) for line in pair_manifest.read_text().splitlines()]
    for row in rows:
        row.pop("speech")
    singing_only = tmp_path / "manifest.jsonl"
    singing_only.write_text("".join(json.dumps({**r, "singing": str(pair_manifest.parent / r["singing"])}) + "\n"
                                    for r in rows))
    overrides = [f"data.manifest={json.dumps(str(singing_only))}", 'data.mode="zeroshot"', "train.max_steps=2"]
    config = load_alignsts_config(CONFIGS / "alignsts_tiny.toml", overrides)
    train, valid = load_utterances(config, progress=False)
    assert len(train) == 2 and len(valid) == 1
    # content and timbre come from the singing itself: 1.2 s at 20 ms, and its own mel
    assert train[0].content.shape == (60, 512) and train[0].timbre_mel.shape == train[0].mel.shape
    train_alignsts(config, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoints" / "step_00000002.pt").is_file()
    paired = load_alignsts_config(CONFIGS / "alignsts_tiny.toml", overrides[:1])
    with pytest.raises(ConfigError, match="no rows with speech and singing"):
        load_utterances(paired, progress=False)


def test_cli_trains_alignsts(pair_manifest, tmp_path, capsys):
    from voxflip.cli import main

    code = main(["train-alignsts", str(CONFIGS / "alignsts_tiny.toml"), "--run-dir", str(tmp_path / "r"),
                 "--set", f"data.manifest={json.dumps(str(pair_manifest))}", "--steps", "1"])
    assert code == 0
    assert "step_00000001.pt" in capsys.readouterr().out


# -- export and the eval systems ------------------------------------------------------------------
@pytest.mark.parametrize("decoder", ["diffusion", "fs2"])
def test_onnx_export_matches_torch(tmp_path, decoder):
    """The graph is traced on one set of lengths; ONNX Runtime on others matches torch (checked again here)."""
    from dataclasses import replace

    ort = pytest.importorskip("onnxruntime")
    from voxflip.trainer.alignsts_export import _example, export_model

    torch.manual_seed(0)
    model = AlignSTS(replace(SMALL, decoder=decoder)).eval()
    manifest = json.loads(export_model(model, tmp_path / "alignsts.onnx", trained_steps=7).read_text())
    assert manifest["model"] == "alignsts" and manifest["decoder"] == decoder and manifest["trained_steps"] == 7
    assert manifest["mel"]["sample_rate"] == 24_000 and manifest["content"]["dim"] == 512
    assert ("noise" in manifest["inputs"]) == (decoder == "diffusion")
    example = _example(model, 150, 31, 64, seed=5)   # offsets 35 and 10
    session = ort.InferenceSession(str(tmp_path / "alignsts.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy() for n, t in zip(manifest["inputs"], example, strict=True)})
    want = model.infer(*example[:6], noise=example[9] if decoder == "diffusion" else None, t_offset=example[6],
                       n_offset=example[7], ratio=example[8])
    assert np.max(np.abs(got[0] - want["mel"].numpy())) < 1e-4
    assert np.array_equal(got[1], want["codes"].numpy())
    assert got[2].shape == (1, 150, 31)


def test_export_refuses_a_bad_name(tmp_path):
    from voxflip.trainer.alignsts_export import export_model

    with pytest.raises(ConfigError, match=r"must end in \.onnx"):
        export_model(AlignSTS(SMALL), tmp_path / "model.bin")


@pytest.fixture(scope="module")
def tiny_checkpoint(pair_manifest, tmp_path_factory) -> Path:
    from voxflip.trainer.alignsts_train import load_alignsts_config, train_alignsts

    config = load_alignsts_config(CONFIGS / "alignsts_tiny.toml", [f"data.manifest={json.dumps(str(pair_manifest))}",
                                                                   "train.max_steps=1"])
    return train_alignsts(config, tmp_path_factory.mktemp("arun"), progress=False)


def test_cli_exports_a_checkpoint(tiny_checkpoint, tmp_path, capsys):
    from voxflip.cli import main

    assert main(["export-alignsts", str(tiny_checkpoint), "-o", str(tmp_path / "a.onnx")]) == 0
    assert "a.manifest.json" in capsys.readouterr().out
    assert json.loads((tmp_path / "a.manifest.json").read_text())["trained_steps"] == 1
    assert main(["export-alignsts", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "b.onnx")]) != 0


def test_cli_exports_the_step_graphs_of_a_model_with_absolute_windows(pair_manifest, tmp_path, capsys):
    """A checkpoint with absolute windows gets its step graphs beside the whole graph, named in the manifest
    and in what the command prints; the engine opens them."""
    from voxflip.cli import main
    from voxflip.engine.converters.alignsts_model import AlignSTSModel
    from voxflip.trainer.alignsts_train import load_alignsts_config, train_alignsts

    config = load_alignsts_config(CONFIGS / "alignsts_tiny.toml", [
        f"data.manifest={json.dumps(str(pair_manifest))}", "train.max_steps=1", 'model.window_mode="absolute"',
        "model.window_frames=5"])
    checkpoint = train_alignsts(config, tmp_path / "run", progress=False)
    assert main(["export-alignsts", str(checkpoint), "-o", str(tmp_path / "out" / "a.onnx")]) == 0
    printed = capsys.readouterr().out
    assert "step graphs a.content.onnx, a.timbre.onnx, a.step.onnx for alignsts-stream" in printed
    step = json.loads((tmp_path / "out" / "a.manifest.json").read_text())["step"]
    assert all((tmp_path / "out" / name).is_file() for name in step["files"].values())
    assert AlignSTSModel(tmp_path / "out").step_graphs().delay == step["delay"]


def test_eval_systems_sing_the_notes_or_the_reference_contour(tiny_checkpoint, pair_manifest):
    from voxflip.trainer.data.manifest import read_manifest
    from voxflip.trainer.eval.systems import get_system

    entry = read_manifest(pair_manifest)[0]
    options = {"alignsts_models": {"alignsts": str(tiny_checkpoint)}}
    speech_rate = sf.info(str(entry.speech)).samplerate
    audio, rate = get_system("ref:alignsts").run(entry, options)   # the checkpoint, exported on first use
    assert rate == speech_rate and np.all(np.isfinite(audio))
    assert abs(audio.shape[0] / rate - 1.2) < 0.02           # the reference singing's length
    audio, rate = get_system("alignsts").run(entry, options)  # the notes transcribed from the singing
    assert rate == speech_rate and 0.3 < audio.shape[0] / rate < 1.3
    with pytest.raises(ConfigError, match="--alignsts alignsts-gan=EXPORT_DIR"):
        get_system("alignsts-gan").run(entry, options)


def test_notes_f0_follows_the_notes():
    from voxflip.engine.converters.alignsts_model import notes_f0
    from voxflip.engine.notes import Melody, Note

    melody = Melody((Note(0.0, 0.5, 69.0), Note(0.5, 1.0, 72.0), Note(1.5, 2.0, 60.0)), "test")
    f0 = notes_f0(melody)
    frame_s = 128 / 24_000
    assert f0.shape == (int(np.ceil(2.0 / frame_s)),)
    assert f0[int(0.1 / frame_s)] == pytest.approx(440.0, rel=1e-6)           # before the vibrato starts
    assert f0[int(0.51 / frame_s)] < 523.0                                     # the glide into the legato note
    assert np.all(f0[int(1.01 / frame_s) : int(1.49 / frame_s)] == 0)          # the rest
    assert f0[int(1.6 / frame_s)] == pytest.approx(261.63, rel=1e-3)           # no glide after a rest


@pytest.mark.parametrize("decoder", ["diffusion", "fs2"])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_equals_whole_with_absolute_windows(decoder, chunk):
    """Each chunk from the slices AlignSTSContext names, at its absolute offsets, equals the whole utterance."""
    from dataclasses import replace

    from voxflip.engine.converters.alignsts_context import AlignSTSContext
    from voxflip.trainer.alignsts_infer import infer_streamed

    torch.manual_seed(0)
    cfg = replace(SMALL, decoder=decoder, window_mode="absolute", window_frames=5, decoder_context=6)
    model = AlignSTS(cfg).eval()
    t, n = 160, 40
    batch = _batch(seed=3, t=(t,), n=(n,), m=(50,))
    noise = torch.randn(cfg.diffusion_steps, 1, 80, t) if decoder == "diffusion" else None
    whole = model.infer(batch["content"], batch["content_len"], batch["f0_bins"], batch["mel_len"],
                        batch["timbre_mel"], batch["timbre_len"], noise=noise)["mel"]
    streamed = infer_streamed(model, batch["content"], batch["f0_bins"], batch["timbre_mel"], noise, chunk_frames=chunk)
    assert torch.allclose(streamed, whole, atol=1e-5)
    ctx = AlignSTSContext.of(cfg.to_dict())
    assert ctx.target_frames < t   # so the test reaches past the margins
    # the margins matter (they are an upper bound, summed along the layers): two frames are not enough
    short = AlignSTSContext(2, 2)
    a, b = 60, 61
    ta, tb, na, nb = short.slices(a, b, t, n, n / t)
    out = model.infer(batch["content"][:, :, na:nb], torch.tensor([nb - na]), batch["f0_bins"][:, ta:tb],
                      torch.tensor([tb - ta]), batch["timbre_mel"], batch["timbre_len"],
                      noise=None if noise is None else noise[..., ta:tb], t_offset=torch.tensor([float(ta)]),
                      n_offset=torch.tensor([float(na)]), ratio=torch.tensor([n / t]))["mel"][:, :, a - ta : b - ta]
    assert not torch.allclose(out, whole[:, :, a:b], atol=1e-5)


def test_relative_windows_refuse_to_stream():
    from voxflip.engine.converters.alignsts_context import AlignSTSContext

    with pytest.raises(ConfigError, match="window_mode"):
        AlignSTSContext.of(SMALL.to_dict())


# -- the engine's runner (ONNX Runtime, no torch) against the torch model --------------------------
@pytest.mark.parametrize(("decoder", "window_mode"), [("diffusion", "relative"), ("diffusion", "absolute"),
                                                      ("fs2", "absolute")])
def test_engine_runner_sings_what_the_torch_model_sings(tmp_path, decoder, window_mode):
    """AlignSTSModel prepares the inputs as training did (F0 classes, the seeded noise) and, for absolute
    windows, runs chunk by chunk: every chunking gives the torch model's whole-utterance mel."""
    from dataclasses import replace

    pytest.importorskip("onnxruntime")
    from voxflip.engine.converters.alignsts_model import AlignSTSModel
    from voxflip.trainer.alignsts_export import export_model

    torch.manual_seed(0)
    cfg = replace(SMALL, decoder=decoder, window_mode=window_mode, window_frames=5, decoder_context=6)
    model = AlignSTS(cfg).eval()
    export_model(model, tmp_path / "alignsts.onnx")
    engine = AlignSTSModel(tmp_path)
    assert engine.streams == (window_mode == "absolute")
    rng = np.random.default_rng(3)
    t, n, m = 230, 41, 60
    content = rng.standard_normal((n, 512)).astype(np.float32)
    f0 = np.where(np.arange(t) % 50 < 40, 220.0 * 2 ** (np.arange(t) // 50 / 12), 0.0).astype(np.float32)
    timbre = (rng.standard_normal((m, 80)) - 4.0).astype(np.float32)
    noise = np.random.default_rng(11).standard_normal((cfg.diffusion_steps, 1, 80, t), dtype=np.float32)
    with torch.no_grad():
        want = model.infer(torch.from_numpy(content.T.copy())[None], torch.tensor([n]),
                           torch.from_numpy(f0_classes(f0))[None], torch.tensor([t]),
                           torch.from_numpy(timbre.T.copy())[None], torch.tensor([m]),
                           noise=torch.from_numpy(noise) if decoder == "diffusion" else None)["mel"][0].T.numpy()
    for chunk in ((512, 7, 64) if engine.streams else (512,)):
        got = engine.sing(content, f0, timbre, seed=11, chunk_frames=chunk)
        assert got.shape == (t, 80)
        assert np.max(np.abs(got - want)) < 1e-4, f"chunks of {chunk}"

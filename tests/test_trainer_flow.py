"""The S2S flow model: training (resume, DDP), export (ONNX parity), and the flow converters."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch", reason="the train extra (torch) is needed")
pytest.importorskip("onnxruntime", reason="an ONNX runtime (the cpu or gpu extra) is needed")

from helpers import synth_from_plan, torchrun_two_processes  # noqa: E402

from voxflip.engine.registry import make_converter  # noqa: E402
from voxflip.trainer.config import load_config  # noqa: E402
from voxflip.trainer.data.manifest import ManifestEntry, PhoneSpan, write_manifest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _pair(i: int) -> tuple[list, list, list, list]:
    vowels = ["a", "i", "u", "e"]
    v1, v2 = vowels[i % 4], vowels[(i + 1) % 4]
    f = 180.0 + 20 * i
    speech = [("-", 0.05, 0), ("s", 0.06, 0), (v1, 0.15, f), ("s", 0.05, 0), (v2, 0.15, f * 0.9), ("-", 0.05, 0)]
    sung = [("-", 0.05, 0), ("s", 0.06, 0), (v1, 0.45, f * 1.5), ("s", 0.05, 0), (v2, 0.5, f * 1.6), ("-", 0.05, 0)]

    def phones(plan):
        spans, t = [], 0.0
        for kind, seconds, _ in plan:
            spans.append(PhoneSpan({"-": "sil", "s": "s"}.get(kind, kind), t, t + seconds))
            t += seconds
        return spans

    return speech, sung, phones(speech), phones(sung)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    entries = []
    for i in range(8):
        speech, sung, sp_ph, si_ph = _pair(i)
        sf.write(root / f"{i}.speech.wav", synth_from_plan(speech, seed=i), 24_000)
        sf.write(root / f"{i}.sing.wav", synth_from_plan(sung, seed=100 + i), 24_000)
        entries.append(ManifestEntry(id=f"p{i}", text=f"pair {i}", singing=root / f"{i}.sing.wav",
                                     speech=root / f"{i}.speech.wav", speech_phones=sp_ph, singing_phones=si_ph,
                                     split="valid" if i == 7 else "train"))
    return write_manifest(root / "manifest.jsonl", entries)


def _config(manifest: Path, *extra: str):
    return load_config(REPO / "configs" / "tiny.toml", [f'data.manifest="{manifest}"', *extra])


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_tiny_training_writes_checkpoints_config_and_curves(tiny_corpus: Path, tmp_path: Path):
    from voxflip.trainer.train import train

    ckpt = train(_config(tiny_corpus, "train.max_steps=6", "train.checkpoint_every=3"), tmp_path / "run",
                 progress=False)
    assert ckpt.name == "step_00000006.pt"
    payload = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert payload["step"] == 6 and payload["phones"] == ["a", "e", "i", "s", "sil", "u"]
    assert (tmp_path / "run" / "config.toml").read_text().count("[train]") == 1
    assert any((tmp_path / "run" / "tb").iterdir())
    assert all(torch.isfinite(v).all() for v in payload["model"].values() if v.is_floating_point())


def test_training_lowers_the_loss(tiny_corpus: Path):
    from voxflip.trainer.dataset import collate, load_pairs
    from voxflip.trainer.train import build_model

    config = _config(tiny_corpus)
    data = load_pairs(config.manifest_path())
    torch.manual_seed(0)
    model = build_model(config, data)
    batch = collate(data.train[:4])
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = float(model(**batch)["loss"])
    for _ in range(30):
        out = model(**batch)
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
    assert float(model(**batch)["loss"]) < 0.7 * first


def test_smoothed_duration_targets_keep_the_speech_length_and_expand_by_carrying_fractions():
    from voxflip.trainer.models.to_speech_flow import expand_counts, smooth_rate

    counts = torch.tensor([[1.0, 0, 0, 2, 0, 0, 0, 1, 1, 0, 3, 0, 0, 0, 0, 0]])
    mask = torch.ones_like(counts)
    mask[0, 12:] = 0
    counts = counts * mask
    rate = smooth_rate(counts, mask, 5)
    assert torch.all(rate[0, 12:] == 0) and float(rate.max()) < float(counts.max())
    assert abs(float(rate.sum()) - float(counts.sum())) < 0.25 * float(counts.sum())   # only the edges lose
    assert torch.equal(smooth_rate(counts, mask, 1), counts)
    # 0.4 frames per frame, five times over, is two whole frames, not five roundings to zero
    expanded = expand_counts(torch.log1p(torch.full((5,), 0.4)))
    assert expanded.tolist() == [0, 0, 1, 0, 1] and int(expanded.sum()) == 2
    with pytest.raises(ValueError, match="duration_smoothing=4"):     # ConfigError is a ValueError
        from voxflip.trainer.models.to_speech_flow import ToSpeechFlowConfig

        ToSpeechFlowConfig(duration_smoothing=4)


def test_duration_only_fine_tuning_changes_nothing_else(tiny_corpus: Path, tmp_path: Path):
    from voxflip.trainer.config import ConfigError
    from voxflip.trainer.train import train

    base = train(_config(tiny_corpus, "train.max_steps=4", "train.checkpoint_every=4"), tmp_path / "base",
                 progress=False)
    tuned = train(_config(tiny_corpus, "train.max_steps=6", "train.checkpoint_every=6", 'train.trainable="duration"',
                          f'train.init_from="{base}"'), tmp_path / "tuned", progress=False)
    before, after = _weights(base), _weights(tuned)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("duration.") for k in changed), changed
    with pytest.raises(ConfigError, match="set train.init_from"):
        _config(tiny_corpus, 'train.trainable="duration"')
    with pytest.raises(ConfigError, match="trainable='flow'"):
        _config(tiny_corpus, 'train.trainable="flow"', f'train.init_from="{base}"')


def test_a_killed_run_resumes_to_the_same_weights(tiny_corpus: Path, tmp_path: Path):
    """Kill a training process after its step-4 checkpoint; the resumed run ends bit-identical."""
    from voxflip.trainer.train import train

    config = _config(tiny_corpus, "train.max_steps=8", "train.checkpoint_every=2")
    reference = train(config, tmp_path / "straight", progress=False)

    run = tmp_path / "killed"
    code = (
        "import sys, time\n"
        "from voxflip.trainer.config import load_config\n"
        "from voxflip.trainer.train import train\n"
        f"config = load_config({str(REPO / 'configs' / 'tiny.toml')!r}, ['data.manifest=\"{tiny_corpus}\"', "
        "'train.max_steps=1000', 'train.checkpoint_every=2'])\n"
        f"train(config, {str(run)!r}, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "step_00000004.pt").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-800:]
        assert time.monotonic() < deadline, "no step-4 checkpoint within 2 minutes"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for later in sorted((run / "checkpoints").glob("step_*.pt")):
        if later.name > "step_00000004.pt":
            later.unlink()  # what the killed run wrote after step 4 is what a crash can lose
    resumed = train(config, run, progress=False)
    a, b = _weights(reference), _weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from an uninterrupted run"


def test_torchrun_with_two_processes_trains_without_code_changes(tiny_corpus: Path, tmp_path: Path):
    torchrun_two_processes("train", str(REPO / "configs" / "tiny.toml"), "--run-dir", str(tmp_path / "ddp"),
                           "--set", f'data.manifest="{tiny_corpus}"', "--set", "train.max_steps=4",
                           "--set", "train.checkpoint_every=2")
    assert (tmp_path / "ddp" / "checkpoints" / "step_00000004.pt").exists()


def _train_and_export(tiny_corpus: Path, run: Path, *extra: str) -> Path:
    from voxflip.trainer.export import export_onnx
    from voxflip.trainer.train import load_checkpoint, train

    ckpt = train(_config(tiny_corpus, "train.max_steps=10", "train.checkpoint_every=10", *extra), run, progress=False)
    model, _ = load_checkpoint(ckpt)
    export_onnx(model, run / "model.onnx")
    return run


@pytest.fixture(scope="module")
def exported(tiny_corpus: Path, tmp_path_factory) -> Path:
    return _train_and_export(tiny_corpus, tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def exported_residual(tiny_corpus: Path, tmp_path_factory) -> Path:
    return _train_and_export(tiny_corpus, tmp_path_factory.mktemp("run_residual"), "model.residual=true")


@pytest.fixture(scope="module")
def exported_low_latency(tiny_corpus: Path, tmp_path_factory) -> Path:
    """Residual, no lookahead, 25 ms mel windows: the shipped model's settings."""
    return _train_and_export(tiny_corpus, tmp_path_factory.mktemp("run_low_latency"), "model.residual=true",
                             "model.lookahead=0", "model.mel_window=400")


@pytest.fixture(params=["plain", "residual", "low-latency"])
def exported_each(request) -> Path:
    """The tiny export as the paper's model, with ``model.residual = true``, and residual with no
    lookahead and 25 ms mel windows."""
    return request.getfixturevalue({"plain": "exported", "residual": "exported_residual",
                                    "low-latency": "exported_low_latency"}[request.param])


# torch vs ONNX Runtime: one tolerance table for every backend (TensorRT adds its row on a GPU)
ATOL_BY_BACKEND = {"onnxruntime": 1e-4}


def test_onnx_step_matches_torch_and_chunked_matches_whole(exported_each: Path):
    from voxflip.engine.backends.onnx_step import OnnxStepModel
    from voxflip.trainer.export import torch_step_reference
    from voxflip.trainer.train import load_checkpoint

    exported = exported_each
    model, _ = load_checkpoint(exported / "checkpoints" / "step_00000010.pt")
    rng = np.random.default_rng(0)
    mel = (rng.standard_normal((1, 80, 37)) - 5).astype(np.float32)
    noise = rng.standard_normal((1, 80, 37)).astype(np.float32)
    reference = torch_step_reference(model, mel, noise, chunk=2)
    onnx = OnnxStepModel(exported / "model.onnx")
    state = onnx.init_state()
    outs = []
    for i in range(0, 37, 3):
        out, _, _, _, state = onnx.step(mel[0, :, i : i + 3].T, noise[0, :, i : i + 3].T, state)
        outs.append(out)
    assert np.max(np.abs(np.concatenate(outs).T - reference[0])) < ATOL_BY_BACKEND["onnxruntime"]
    # the whole utterance through the offline model, with the same noise, is the stream shifted by the lookahead
    look = model.cfg.lookahead
    padded_noise = torch.from_numpy(np.concatenate([noise, np.zeros((1, 80, look), np.float32)], axis=2))
    whole, _ = model.infer(torch.from_numpy(mel), noise=padded_noise)
    assert np.max(np.abs(whole.numpy()[0, :, : 37 - look] - reference[0, :, look:])) < 1e-4


def test_flow_converters_stream_the_same_at_any_block_size(exported_each: Path, example_speech):
    from helpers import stream_in_blocks

    from voxflip.streaming.streamer import Streamer

    exported = exported_each
    audio, rate = example_speech
    clip = audio[: rate]
    for method in ("flow-nodur", "flow-dur"):
        reference = stream_in_blocks(Streamer(make_converter("speech", method, model_path=exported / "model.onnx"), rate), clip, 10**9)
        for block in (7, 480):
            out = stream_in_blocks(Streamer(make_converter("speech", method, model_path=exported / "model.onnx"), rate), clip, block)
            assert out.shape == reference.shape and np.max(np.abs(out - reference)) < 1e-6, (method, block)
        if method == "flow-nodur":
            assert reference.shape == clip.shape


def test_a_mismatched_artifact_is_refused(exported: Path, tmp_path: Path):
    from voxflip.engine.backends.onnx_step import OnnxStepModel
    from voxflip.engine.errors import ArtifactMismatchError

    bad = tmp_path / "model"
    bad.mkdir()
    for f in exported.glob("model.*"):
        shutil.copy(f, bad / f.name)
    manifest = json.loads((bad / "model.manifest.json").read_text())
    manifest["mel"]["hop_samples"] = 200
    (bad / "model.manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactMismatchError, match="mel setup"):
        OnnxStepModel(bad / "model.onnx")
    manifest["format_version"] = 99
    (bad / "model.manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactMismatchError, match="Re-export"):
        OnnxStepModel(bad / "model.onnx")
    shutil.copy(exported / "model.manifest.json", bad / "model.manifest.json")
    (bad / "model.weights").unlink()
    with pytest.raises(ArtifactMismatchError, match="weights file 'model.weights' is missing"):
        OnnxStepModel(bad / "model.onnx")


def test_a_shorter_mel_window_is_the_models_and_shortens_the_latency(exported_residual: Path,
                                                                     exported_low_latency: Path, tmp_path: Path):
    from voxflip.engine.backends.onnx_step import OnnxStepModel
    from voxflip.engine.errors import ArtifactMismatchError

    manifest = json.loads((exported_low_latency / "model.manifest.json").read_text())
    assert manifest["mel"]["win_samples"] == 400 and manifest["model_config"]["mel_window"] == 400
    assert manifest["lookahead_frames"] == 0
    assert OnnxStepModel(exported_low_latency / "model.onnx").mel.win_samples == 400
    # at 16 kHz: the 10 ms chunk, half the longest window (the 70 Hz F0 tracker's 458 samples) and
    # the two lookahead frames of the other model (its 40 ms mel window is 640 samples)
    latency = {path.name: make_converter("speech", "flow-nodur", model_path=path / "model.onnx",
                                         chunk_ms=10).latency_samples
               for path in (exported_residual, exported_low_latency)}
    assert latency == {exported_residual.name: 160 + 320 + 321 + 1, exported_low_latency.name: 160 + 230 + 1}
    bad = tmp_path / "model"
    bad.mkdir()
    for f in exported_low_latency.glob("model.*"):
        shutil.copy(f, bad / f.name)
    for window in (100, 2048, "400"):
        manifest["mel"]["win_samples"] = window
        (bad / "model.manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ArtifactMismatchError, match="with win_samples in 160..1024"):
            OnnxStepModel(bad / "model.onnx")


def test_fine_tuning_to_another_mel_window_takes_the_new_frames_statistics(exported: Path, tiny_corpus: Path,
                                                                            tmp_path: Path, capsys):
    from voxflip.engine.errors import ConfigError
    from voxflip.trainer.train import train

    init = _weights(exported / "checkpoints" / "step_00000010.pt")
    same = _weights(train(_config(tiny_corpus, "train.max_steps=1", "train.checkpoint_every=1", "train.lr=1e-9",
                                  f'train.init_from="{exported / "model.onnx"}"'), tmp_path / "same", progress=False))
    short = _weights(train(_config(tiny_corpus, "train.max_steps=1", "train.checkpoint_every=1", "train.lr=1e-9",
                                   "model.mel_window=400", "model.lookahead=0",
                                   f'train.init_from="{exported / "model.onnx"}"'), tmp_path / "short", progress=False))
    assert "its mel window is 640 samples, this model's 400" in capsys.readouterr().err
    assert torch.equal(same["mel_mean"], init["mel_mean"])
    # this run's frames, of 400-sample windows (a shorter Hann window sums fewer samples and spreads a tone wider)
    from voxflip.trainer.dataset import load_pairs

    mean, std = load_pairs(tiny_corpus, mel_window=400).mel_stats()
    assert np.allclose(short["mel_mean"].numpy().ravel(), mean, atol=1e-5)
    assert np.allclose(short["mel_std"].numpy().ravel(), np.maximum(std, 1e-3), atol=1e-5)
    assert float((short["mel_mean"] - init["mel_mean"]).abs().max()) > 0.1
    assert torch.allclose(short["encoder.inp.weight"], init["encoder.inp.weight"], atol=1e-6)
    with pytest.raises(ConfigError, match=r"model.mel_window=1025 must be a whole number of samples in 160..1024"):
        _config(tiny_corpus, "model.mel_window=1025")


def test_an_export_reads_back_into_torch_and_fine_tunes(exported: Path, tiny_corpus: Path, tmp_path: Path):
    """What users without a checkpoint have (the shipped model) is a starting point for training."""
    from voxflip.engine.errors import ArtifactMismatchError, ConfigError
    from voxflip.trainer.export import load_exported
    from voxflip.trainer.train import load_checkpoint, train

    original, _ = load_checkpoint(exported / "checkpoints" / "step_00000010.pt")
    model, fresh = load_exported(exported / "model.manifest.json")
    assert {k.rsplit(".", 1)[0] for k in fresh} == {"phone", *(f"flow.couplings.{i}.net.res.1" for i in range(2))}
    want, got = original.state_dict(), model.state_dict()
    for key in want:
        if key not in fresh:
            assert torch.allclose(want[key].float(), got[key].float(), atol=1e-5), key
    # the read-back model converts like the original, noise and all
    mel = torch.randn(1, 80, 30) - 5
    noise = torch.randn(1, 80, 30 + original.cfg.lookahead)   # infer draws noise for the lookahead frames too
    assert torch.allclose(original.infer(mel, noise=noise)[0], model.infer(mel, noise=noise)[0], atol=1e-4)

    ckpt = train(_config(tiny_corpus, "train.max_steps=2", "train.checkpoint_every=2",
                         f'train.init_from="{exported / "model.onnx"}"', "train.lr=1e-9", "train.warmup_steps=1"),
                 tmp_path / "tuned", progress=False)
    tuned = _weights(ckpt)
    assert torch.allclose(tuned["encoder.inp.weight"], want["encoder.inp.weight"], atol=1e-6)
    other = tmp_path / "other"
    other.mkdir()
    for f in exported.glob("model.*"):
        shutil.copy(f, other / f.name)
    manifest = json.loads((other / "model.manifest.json").read_text())
    (other / "model.manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ArtifactMismatchError, match="format 99"):
        load_exported(other / "model.onnx")
    with pytest.raises(ConfigError, match=r"does not fit the \[model\] section: .* copy its model settings"):
        train(_config(tiny_corpus, "train.max_steps=1", "model.hidden=24",
                      f'train.init_from="{exported / "model.manifest.json"}"'), tmp_path / "bad", progress=False)


def test_the_encoder_graph_is_the_step_without_the_flow(exported_each: Path, tmp_path: Path):
    from voxflip.engine.backends.onnx_step import OnnxStepModel
    from voxflip.engine.errors import ArtifactMismatchError

    exported = exported_each
    model = OnnxStepModel(exported / "model.onnx")
    rng = np.random.default_rng(1)
    mel = (rng.standard_normal((9, 80)) - 5).astype(np.float32)
    _, mu, logs, log_dur, stepped = model.step(mel, np.zeros_like(mel), model.init_state())
    e_mu, e_logs, e_dur, skip, encoded = model.encode(mel, model.init_state())
    assert max(np.abs(a - b).max() for a, b in ((mu, e_mu), (logs, e_logs), (log_dur, e_dur))) < 1e-5
    assert all(np.allclose(encoded[n], stepped[n], atol=1e-5) for n in model.encoder_names)
    if model.residual:   # its skip frames are its input, late by the lookahead, to meet mu
        look = model.lookahead_frames
        assert skip.shape == mel.shape and np.array_equal(skip[look:], mel[: len(mel) - look]) and not skip[:look].any()
    else:
        assert skip is None
    # an artifact exported before the encoder graph existed runs the whole step instead (not a residual one)
    old = tmp_path / "old"
    old.mkdir()
    for f in exported.glob("model.*"):
        shutil.copy(f, old / f.name)
    manifest = json.loads((old / "model.manifest.json").read_text())
    del manifest["files"]["encoder"]
    (old / "model.manifest.json").write_text(json.dumps(manifest))
    if model.residual:
        with pytest.raises(ArtifactMismatchError, match="residual model needs its encoder graph"):
            OnnxStepModel(old / "model.onnx")
        return
    o_mu, _, _, _, _ = OnnxStepModel(old / "model.onnx").encode(mel, model.init_state())
    assert np.abs(o_mu - mu).max() < 1e-6


def test_the_two_graphs_store_the_flow_weights_once(exported: Path):
    import onnx

    def records(name: str) -> set[tuple]:
        graph = onnx.load(str(exported / name), load_external_data=False)
        assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.graph.initializer)
        return {tuple((e.key, e.value) for e in t.external_data) for t in graph.graph.initializer}

    step, decoder, encoder = records("model.onnx"), records("model.decoder.onnx"), records("model.encoder.onnx")
    assert decoder and decoder <= step        # every decoder weight is a record the step graph uses too
    assert encoder and encoder <= step
    manifest = json.loads((exported / "model.manifest.json").read_text())
    assert manifest["files"] == {"step": "model.onnx", "decoder": "model.decoder.onnx",
                                 "encoder": "model.encoder.onnx", "weights": "model.weights"}


def test_method_flow_is_flow_dur_and_renders_from_the_command_line(exported: Path, example_speech, tmp_path: Path):
    import soundfile as sf

    from voxflip.cli import main
    from voxflip.engine.registry import make_converter

    assert make_converter("speech", "flow", model_path=exported / "model.onnx").name == "flow-dur"
    audio, rate = example_speech
    src = tmp_path / "in.wav"
    sf.write(src, audio[: rate], rate)
    out = tmp_path / "out.wav"
    assert main(["render", str(src), "-o", str(out), "--to", "speech", "--method", "flow",
                 "--model", str(exported / "model.onnx")]) == 0
    rendered, out_rate = sf.read(out)
    assert out_rate == rate and rendered.size > 0 and np.all(np.isfinite(rendered))


def test_live_and_bench_run_the_flow_model(exported: Path, example_speech, tmp_path: Path):
    import soundfile as sf

    from voxflip.bench import run_bench
    from voxflip.cli import main

    pytest.importorskip("voxflip.streaming._ringbuffer")
    audio, rate = example_speech
    src, out, stats = tmp_path / "in.wav", tmp_path / "out.wav", tmp_path / "stats.json"
    sf.write(src, audio[: rate], rate)
    assert main(["live", "--to", "speech", "--method", "flow-nodur", "--model", str(exported / "model.onnx"),
                 "--input-file", str(src), "--output-file", str(out), "--fast", "-q",
                 "--stats-json", str(stats)]) == 0
    facts = json.loads(stats.read_text())
    assert sf.info(out).frames == rate + facts["declared_latency_samples"]
    assert facts["xruns"] == 0 and facts["worker_errors"] == 0
    (result,) = run_bench(["flow-dur"], [20], 16_000, 1.0, model=str(exported / "model.onnx"))
    assert result.chunk_ms == 10 and result.rtf_p50 > 0   # the live chunk


def test_an_untrained_residual_model_passes_the_singing_through():
    from voxflip.trainer.models.to_speech_flow import ToSpeechFlow, ToSpeechFlowConfig

    torch.manual_seed(0)
    model = ToSpeechFlow(ToSpeechFlowConfig(hidden=16, encoder_layers=2, flow_blocks=2, flow_hidden=8, flow_layers=1,
                                  residual=True)).eval()   # prior zero, flow the identity: no correction yet
    mel = torch.randn(1, 80, 30) - 5
    out, _ = model.infer(mel, noise_scale=0.0)
    assert torch.allclose(out, mel, atol=1e-5)
    out, index = model.infer(mel, dur=True, noise_scale=0.0)
    assert torch.allclose(out, mel[:, :, index], atol=1e-5)
    plain = ToSpeechFlow(ToSpeechFlowConfig(hidden=16, encoder_layers=2, flow_blocks=2, flow_hidden=8, flow_layers=1)).eval()
    assert not torch.allclose(plain.infer(mel, noise_scale=0.0)[0], mel, atol=1e-2)


def test_the_residual_decoder_graph_adds_the_singing_frames(exported_residual: Path):
    from voxflip.engine.backends.onnx_step import OnnxStepModel

    model = OnnxStepModel(exported_residual / "model.onnx")
    rng = np.random.default_rng(2)
    z = rng.standard_normal((6, 80)).astype(np.float32)
    skip = (rng.standard_normal((6, 80)) - 5).astype(np.float32)
    with_skip, _ = model.decode(z, model.init_decoder_state(), skip)
    without, _ = model.decode(z, model.init_decoder_state(), np.zeros_like(skip))
    assert np.abs(with_skip - without - skip).max() < 1e-4
    with pytest.raises(ValueError, match="skip frames shaped like z"):
        model.decode(z, model.init_decoder_state())


def test_init_fresh_keeps_the_named_parts_fresh(exported: Path, tiny_corpus: Path, tmp_path: Path):
    from voxflip.engine.errors import ConfigError
    from voxflip.trainer.train import train

    init = _weights(exported / "checkpoints" / "step_00000010.pt")
    ckpt = train(_config(tiny_corpus, "train.max_steps=1", "train.checkpoint_every=1", "train.lr=1e-9",
                         "train.warmup_steps=1", f'train.init_from="{exported / "checkpoints" / "step_00000010.pt"}"',
                         'train.init_fresh="flow,prior"', "model.residual=true"), tmp_path / "r", progress=False)
    got = _weights(ckpt)
    assert torch.allclose(got["encoder.inp.weight"], init["encoder.inp.weight"], atol=1e-6)
    assert torch.allclose(got["duration.out.weight"], init["duration.out.weight"], atol=1e-6)
    # fresh: the prior starts at zero, ActNorm from this run's first batch (residuals, not speech frames)
    assert got["prior.weight"].abs().max() < 1e-6 < init["prior.weight"].abs().max()
    assert not torch.allclose(got["flow.actnorms.0.log_scale"], init["flow.actnorms.0.log_scale"], atol=1e-2)
    with pytest.raises(ConfigError, match="has model.residual = false and the .model. section true"):
        train(_config(tiny_corpus, "train.max_steps=1", "model.residual=true",
                      f'train.init_from="{exported / "model.onnx"}"'), tmp_path / "mixed", progress=False)
    with pytest.raises(ConfigError, match=r"train.init_fresh='flow,decoder': decoder is not a part of the model"):
        _config(tiny_corpus, f'train.init_from="{exported / "model.onnx"}"', 'train.init_fresh="flow,decoder"')
    with pytest.raises(ConfigError, match="needs train.init_from"):
        _config(tiny_corpus, 'train.init_fresh="flow"')


def test_export_noise_scale_sets_the_prior_noise_of_both_paths(exported: Path, tmp_path: Path, capsys):
    from voxflip.cli import main
    from voxflip.engine.backends.onnx_step import OnnxStepModel

    ckpt = str(exported / "checkpoints" / "step_00000010.pt")
    assert main(["export", ckpt, "-o", str(tmp_path / "quiet" / "model.onnx"), "--noise-scale", "0"]) == 0
    model = OnnxStepModel(tmp_path / "quiet" / "model.onnx")
    assert model.manifest["noise_scale"] == 0.0     # what dur draws with
    rng = np.random.default_rng(3)
    mel = (rng.standard_normal((5, 80)) - 5).astype(np.float32)
    loud = rng.standard_normal((5, 80)).astype(np.float32)
    # nodur: the step graph ignores its noise input
    assert np.array_equal(model.step(mel, loud, model.init_state())[0],
                          model.step(mel, np.zeros_like(loud), model.init_state())[0])
    assert main(["export", ckpt, "-o", str(tmp_path / "bad" / "model.onnx"), "--noise-scale", "-1"]) != 0
    assert "--noise-scale -1.0 must be 0 or more" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_residual_export_reads_back_into_torch(exported_residual: Path):
    from voxflip.trainer.export import load_exported
    from voxflip.trainer.train import load_checkpoint

    original, _ = load_checkpoint(exported_residual / "checkpoints" / "step_00000010.pt")
    model, _ = load_exported(exported_residual / "model.manifest.json")
    assert model.cfg.residual
    mel = torch.randn(1, 80, 30) - 5
    noise = torch.randn(1, 80, 30 + original.cfg.lookahead)
    for dur in (False, True):
        assert torch.allclose(original.infer(mel, dur=dur, noise=noise)[0], model.infer(mel, dur=dur, noise=noise)[0],
                              atol=1e-4), dur


@pytest.mark.parametrize("seed", [0, 1, pytest.param(2, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow),
                                  pytest.param(4, marks=pytest.mark.slow), pytest.param(5, marks=pytest.mark.slow)])
def test_killed_at_a_random_moment_resumes_to_the_same_weights(tiny_corpus: Path, tmp_path: Path, seed: int):
    """kill -9 at a random moment -- mid-step, mid-checkpoint-write, before the first checkpoint --
    and train again in the same folder: the run ends bit-identical to one never interrupted. Nothing
    is cleaned up by hand: what the killed run left (a half-written temporary file included) is what
    the resumed run finds."""
    from voxflip.trainer.train import train

    steps = ["train.max_steps=12", "train.checkpoint_every=2"]
    reference = train(_config(tiny_corpus, *steps), tmp_path / "straight", progress=False)
    run = tmp_path / "killed"
    code = (
        "from voxflip.trainer.config import load_config\n"
        "from voxflip.trainer.train import train\n"
        f"config = load_config({str(REPO / 'configs' / 'tiny.toml')!r}, ['data.manifest=\"{tiny_corpus}\"', "
        f"{steps[0]!r}, {steps[1]!r}])\n"
        f"train(config, {str(run)!r}, progress=False)\n"
    )
    rng = np.random.default_rng(seed)
    after = int(rng.integers(0, 5))   # kill once the checkpoint of step 2*after is written (0: before the first)...
    pause = float(rng.uniform(0.0, 0.4))   # ...and this much later: within a step, or a checkpoint write
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (run.is_dir() if after == 0 else run.joinpath("checkpoints", f"step_{2 * after:08d}.pt").exists()):
        assert proc.poll() is None, proc.stderr.read().decode()[-800:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(pause)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = train(_config(tiny_corpus, *steps), run, progress=False)
    a, b = _weights(reference), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), f"seed {seed}: resumed weights differ"

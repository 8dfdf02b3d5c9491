"""The causal content student: frames, causality, streaming, augmentation, training, export, the engine's runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from voxflip.engine.errors import ConfigError
from voxflip.engine.features.content import content_frames
from voxflip.engine.features.content_student import (
    MEL_PER_CONTENT,
    STUDENT_MEL,
    content_positions,
    student_log_mel,
)

torch = pytest.importorskip("torch")

from voxflip.trainer.models.content_student import (  # noqa: E402
    ContentStudent,
    ContentStudentConfig,
    teacher_index,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = ContentStudentConfig(hidden=24, dilations=(1, 2, 4), lookahead=3, dropout=0.0)


def _model(cfg: ContentStudentConfig = SMALL, seed: int = 0) -> ContentStudent:
    torch.manual_seed(seed)
    model = ContentStudent(cfg).eval()
    model.set_stats(torch.full((80,), -6.0), torch.full((80,), 2.0), torch.randn(512), torch.rand(512) + 0.5)
    return model


@pytest.mark.parametrize("change, message", [
    ({"lookahead": -1}, r"model.lookahead=-1 must be in 0..50"),
    ({"dilations": ()}, r"model.dilations=\[\] must be"),
    ({"hidden": 8}, r"model.hidden=8 must be in 16..1024"),
    ({"kernel_size": 4}, r"model.kernel_size=4 must be 2, 3 or 5"),
])
def test_bad_model_settings_are_one_line(change, message):
    with pytest.raises(ConfigError, match=message):
        ContentStudentConfig(**change)


@pytest.mark.parametrize("lookahead", [0, 1, 4])
def test_a_content_frame_is_read_where_the_teacher_index_names_it(lookahead):
    index = teacher_index(200, lookahead).numpy()
    positions = content_positions(60, lookahead)
    assert np.array_equal(index[positions], np.arange(60))
    # each output frame stands for the newest Whisper frame whose two mel frames and lookahead it has seen
    for j in range(200):
        k = index[j]
        assert k == -1 or (MEL_PER_CONTENT * k + 1 + lookahead <= j < MEL_PER_CONTENT * (k + 1) + 1 + lookahead)


def test_the_mel_covers_every_content_frame_and_its_lookahead():
    x = np.random.default_rng(0).standard_normal(16_000 + 123) * 0.1
    count = content_frames(x.shape[0])
    mel = student_log_mel(x, 4)
    assert mel.shape == (content_positions(count, 4)[-1] + 1, STUDENT_MEL.n_mels)
    assert np.all(np.isfinite(mel))


def test_receptive_field_and_causality():
    model = _model()
    assert SMALL.receptive_frames == 1 + 2 * (1 + 1 + 2 + 4)
    mel = torch.randn(1, 80, 50) - 6.0
    changed = mel.clone()
    changed[:, :, 30:] += 3.0
    with torch.no_grad():
        a, b = model(mel), model(changed)
    assert torch.equal(a[:, :, :30], b[:, :, :30])            # nothing at or after frame 30 reaches before it
    assert not torch.allclose(a[:, :, 30:], b[:, :, 30:])
    early = mel.clone()
    early[:, :, : 30 - SMALL.receptive_frames] += 3.0           # beyond the receptive field of frame 29
    with torch.no_grad():
        assert torch.allclose(model(early)[:, :, 29], a[:, :, 29], atol=1e-5)


def test_steps_in_uneven_chunks_equal_the_whole():
    model = _model()
    mel = torch.randn(1, 80, 37) - 6.0
    with torch.no_grad():
        whole = model(mel)
        caches, pieces, start = model.init_cache(1), [], 0
        for size in (1, 5, 2, 11, 40):
            piece, caches = model.step(mel[:, :, start : start + size], caches)
            pieces.append(piece)
            start += size
    assert torch.allclose(torch.cat(pieces, dim=2), whole, atol=1e-5)


def test_the_noise_floor_of_the_augmentation_is_white_noise_as_the_mel_measures_it():
    from voxflip.engine.features.mel import MelAnalyzer
    from voxflip.trainer.content_train import Augment

    noise = np.random.default_rng(1).standard_normal(16_000 * 20)
    measured = np.exp(MelAnalyzer(STUDENT_MEL).log_mel(noise))[5:-5].mean(axis=0)   # frames clear of the ends
    assert np.allclose(Augment().noise_mel, measured, rtol=0.06)


def test_augmentation_is_drawn_from_the_generator_and_keeps_the_frames():
    from voxflip.trainer.content_train import Augment

    magnitude = np.exp(np.random.default_rng(0).normal(-4.0, 1.0, (40, 80))).astype(np.float32)
    augment = Augment()
    a = augment(magnitude, 0.1, np.random.default_rng([3, 0, 7]))
    b = augment(magnitude, 0.1, np.random.default_rng([3, 0, 7]))
    c = augment(magnitude, 0.1, np.random.default_rng([3, 0, 8]))
    assert a.shape == magnitude.shape and np.array_equal(a, b) and not np.array_equal(a, c)
    shift_db = 20 * np.log10(np.median(a / magnitude))
    assert -20.0 < shift_db < 20.0                          # gain and equaliser within their ranges


def test_the_lr_warms_up_then_falls_to_its_floor():
    from voxflip.trainer.content_train import ContentTrainConfig

    tc = ContentTrainConfig(lr=1e-3, warmup_steps=10, max_steps=110, final_lr_share=0.1)
    assert tc.lr_at(0) == pytest.approx(1e-4) and tc.lr_at(9) == pytest.approx(1e-3)
    assert tc.lr_at(60) == pytest.approx(0.55e-3) and tc.lr_at(110) == pytest.approx(1e-4)
    assert isinstance(tc.lr_at(50), float)


# -- training, export, the engine's runner ------------------------------------------------------------
def _tiny(pair_manifest, extra=()):
    from voxflip.trainer.content_train import load_content_config

    return load_content_config(CONFIGS / "content_student_tiny.toml",
                               [f"data.manifest={json.dumps(str(pair_manifest))}", *extra])


def test_tiny_training_resumes_exactly(pair_manifest, tmp_path):
    from voxflip.trainer.content_train import load_student, train_content

    config = _tiny(pair_manifest)
    straight, resumed = tmp_path / "a", tmp_path / "b"
    train_content(config, straight, progress=False)
    train_content(config, resumed, progress=False, stop_after=2)
    train_content(config, resumed, progress=False)
    a = torch.load(straight / "checkpoints" / "step_00000004.pt", weights_only=True)["model"]
    b = torch.load(resumed / "checkpoints" / "step_00000004.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    first = torch.load(straight / "checkpoints" / "step_00000002.pt", weights_only=True)["model"]
    assert not torch.equal(first["out.weight"], a["out.weight"])
    model, payload = load_student(straight / "checkpoints" / "step_00000004.pt")
    assert payload["step"] == 4 and model.cfg.lookahead == 2 and not model.training
    assert (straight / "tb").is_dir() and (straight / "config.toml").is_file()
    with pytest.raises(ConfigError, match="another student"):
        train_content(_tiny(pair_manifest, ["model.hidden=48"]), straight, progress=False)


def test_the_teacher_targets_line_up_with_the_cached_states(pair_manifest):
    from voxflip.trainer.content_train import draw_batch, load_data

    config = _tiny(pair_manifest, ["data.augment=false", "data.segment_frames=140"])
    train, held, real = load_data(config, progress=False)
    assert len(train) == 6 and not held and not real           # three pairs, both sides
    clip = train[0]
    mel, states, mask = draw_batch([clip], np.random.default_rng(0), 1, 140, 2, None)
    n = clip.magnitude.shape[0]
    assert np.allclose(mel[0, :, :n].numpy().T, np.log(np.maximum(clip.magnitude, STUDENT_MEL.log_floor)), atol=1e-5)
    j = content_positions(clip.states.shape[0], 2)
    assert np.array_equal(states[0, :, j].numpy().T, clip.states.astype(np.float32))
    assert mask[0, :3].sum() == 0 and mask[0, n:].sum() == 0      # before the first state and past the clip


def test_export_parity_and_the_engine_runner(tmp_path):
    pytest.importorskip("onnxruntime")
    from voxflip.engine.features.content_student import ContentStudentModel
    from voxflip.trainer.content_export import export_model

    model = _model(ContentStudentConfig(hidden=24, dilations=(1, 2, 4), lookahead=3))
    manifest = export_model(model, tmp_path / "content.onnx", trained_steps=7)
    written = json.loads(manifest.read_text())
    assert written["lookahead"] == 3 and written["trained_steps"] == 7 and written["graph"] == "content.onnx"
    runner = ContentStudentModel(tmp_path)
    audio = np.random.default_rng(2).standard_normal(24_000 + 77).astype(np.float32) * 0.1
    states = runner.states(audio, 24_000)
    assert states.shape == (content_frames(16_000 + 52), 512)
    log_mel = student_log_mel(np.asarray(__import__("scipy.signal").signal.resample_poly(audio, 2, 3)), 3)
    with torch.no_grad():
        want = model(torch.from_numpy(log_mel.T[None]))[0].numpy().T
    assert np.allclose(runner.run_mel(log_mel), want, atol=1e-4)
    state, pieces, start = runner.init_state(), [], 0
    for size in (4, 1, 9, 1000):
        piece, state = runner.step_mel(log_mel[start : start + size], state)
        pieces.append(piece)
        start += size
    assert np.allclose(np.concatenate(pieces), want, atol=1e-4)


def test_the_runner_refuses_what_is_not_a_student_in_one_line(tmp_path):
    pytest.importorskip("onnxruntime")
    from voxflip.engine.features.content_student import ContentStudentModel
    from voxflip.trainer.content_export import export_model

    with pytest.raises(ConfigError, match="has no content.manifest.json"):
        ContentStudentModel(tmp_path)
    manifest = export_model(_model(), tmp_path / "content.onnx")
    written = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**written, "kind": "vocoder"}))
    with pytest.raises(ConfigError, match="not a content student export"):
        ContentStudentModel(tmp_path)
    manifest.write_text(json.dumps({**written, "mel": {**written["mel"], "hop_samples": 128}}))
    with pytest.raises(ConfigError, match="another mel setup"):
        ContentStudentModel(tmp_path)
    with pytest.raises(ConfigError, match=r"must end in \.onnx"):
        export_model(_model(), tmp_path / "content.bin")


def test_cli_trains_and_exports_a_student(pair_manifest, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from voxflip.cli import main

    code = main(["train-content", str(CONFIGS / "content_student_tiny.toml"), "--run-dir", str(tmp_path / "r"),
                 "--set", f"data.manifest={json.dumps(str(pair_manifest))}", "--steps", "1"])
    assert code == 0
    assert "step_00000001.pt" in capsys.readouterr().out
    out = tmp_path / "exp" / "content.onnx"
    assert main(["export-content", str(tmp_path / "r" / "checkpoints" / "step_00000001.pt"), "-o", str(out)]) == 0
    assert "--content-model" in capsys.readouterr().out and (out.parent / "content.manifest.json").is_file()
    assert main(["export-content", str(tmp_path / "missing.pt"), "-o", str(out)]) != 0


def test_alignsts_sings_with_a_student_where_whisper_is_not_installed(monkeypatch, tmp_path):
    """``content_model`` (``--content-model``): the shipped AlignSTS reads the speech through the student,
    so the whisper extra is not needed; without it, the converter asks for Whisper in one line."""
    import importlib.util

    pytest.importorskip("onnxruntime")
    from voxflip.engine.errors import MissingDependencyError, OptionError
    from voxflip.engine.notes import Melody, Note
    from voxflip.engine.registry import get_converter, make_converter
    from voxflip.streaming.streamer import Streamer
    from voxflip.trainer.content_export import export_model

    if not get_converter("alignsts").ships_model():
        pytest.skip("no AlignSTS model is shipped in this checkout")
    export_model(_model(), tmp_path / "student" / "content.onnx")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("faster_whisper", "ctranslate2") else real(name, *a))
    tune = Melody(tuple(Note(0.25 * i, 0.25 * i + 0.22, 60.0 + (0, 2, 4, 5)[i]) for i in range(4)), "scale")
    with pytest.raises(MissingDependencyError, match=r"alignsts needs Whisper's encoder .* not installed"):
        make_converter("singing", "alignsts", melody=tune)
    converter = make_converter("singing", "alignsts", melody=tune, content_model=tmp_path / "student")
    assert "content student" in converter.describe()
    t = np.arange(24_000) / 24_000
    speech = (0.1 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    streamer = Streamer(converter, 24_000, 24_000)
    song = np.concatenate([streamer.process(speech), streamer.flush()])
    assert abs(song.shape[0] / 24_000 - 1.0) < 0.05 and np.all(np.isfinite(song)) and np.max(np.abs(song)) > 0
    with pytest.raises(OptionError, match="is not a content student") as info:
        make_converter("singing", "alignsts", melody=tune, content_model=tmp_path)
    assert "\n" not in str(info.value)


def test_the_stream_gives_the_whole_recordings_frames_whatever_the_blocks(tmp_path):
    pytest.importorskip("onnxruntime")
    from voxflip.engine.features.content_student import ContentStudentModel
    from voxflip.trainer.content_export import export_model

    export_model(_model(), tmp_path / "content.onnx")
    runner = ContentStudentModel(tmp_path)
    audio = np.random.default_rng(4).standard_normal(16_000 + 999) * 0.1
    whole = runner.states(audio, 16_000)
    for blocks in ((160,), (1, 77, 320, 5000), (16_999,)):
        stream, got, start, k = runner.stream(), [], 0, 0
        while start < audio.shape[0]:
            size = blocks[k % len(blocks)]
            got.append(stream.push(audio[start : start + size]))
            start, k = start + size, k + 1
        early = sum(g.shape[0] for g in got)
        got.append(stream.flush())
        streamed = np.concatenate(got)
        assert streamed.shape == whole.shape and np.allclose(streamed, whole, atol=1e-4)
        # all but the frames within the window and lookahead of the end are out before the flush
        assert early >= whole.shape[0] - (runner.lookahead + 3) // 2 - 1
    assert runner.latency_s == pytest.approx((3 * 160 + 200) / 16_000)


def test_init_from_starts_from_a_students_weights(pair_manifest, tmp_path):
    from voxflip.trainer.content_train import train_content

    first = train_content(_tiny(pair_manifest, ["train.max_steps=2"]), tmp_path / "a", progress=False)
    again = train_content(_tiny(pair_manifest, ["train.max_steps=2", "train.lr=1e-12",
                                                f"train.init_from={json.dumps(str(first))}"]),
                          tmp_path / "b", progress=False)
    a = torch.load(first, weights_only=True)["model"]
    b = torch.load(again, weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)     # it moved by nothing from where it started
    with pytest.raises(ConfigError, match="a student of another shape"):
        train_content(_tiny(pair_manifest, ["model.hidden=40", f"train.init_from={json.dumps(str(first))}"]),
                      tmp_path / "c", progress=False)


def test_torchrun_with_two_processes_trains_a_student(pair_manifest, tmp_path):
    from helpers import torchrun_two_processes

    torchrun_two_processes("train-content", str(CONFIGS / "content_student_tiny.toml"), "--run-dir", str(tmp_path / "ddp"),
                           "--set", f"data.manifest={json.dumps(str(pair_manifest))}")
    weights = torch.load(tmp_path / "ddp" / "checkpoints" / "step_00000004.pt", weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in weights.values())

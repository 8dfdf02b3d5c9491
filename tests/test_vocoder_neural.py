"""Neural vocoders (issue #17): causal streaming generators, their losses, a resumable tiny training
run, the ONNX export with state, the engine's runner, and the flow converters with ``--vocoder``."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from voxflip.engine.errors import ConfigError, OptionError  # noqa: E402
from voxflip.engine.features.mel import MelAnalyzer, MelConfig  # noqa: E402
from voxflip.engine.vocoder.neural import NeuralVocoder, check_manifest  # noqa: E402
from voxflip.trainer.models.vocoder import VARIANTS, VocoderConfig, build_generator  # noqa: E402
from voxflip.trainer.train import _save  # noqa: E402
from voxflip.trainer.vocoder_export import export_vocoder  # noqa: E402
from voxflip.trainer.vocoder_train import (  # noqa: E402
    SpectralLosses,
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
    load_vocoder_config,
    train_vocoder,
)

HOP = 160
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _inputs(frames: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    mel = torch.randn(1, 80, frames, generator=gen) - 4.0
    f0 = torch.where(torch.rand(1, frames, generator=gen) > 0.3, 90 + 250 * torch.rand(1, frames, generator=gen), 0.0)
    noise = torch.randn(1, 1, frames * HOP, generator=gen)
    return mel, f0, noise


def _config(preset: str) -> VocoderConfig:
    """A preset, ``hifigan-tiny-repeat`` (the tiny HiFi-GAN with repetition upsampling) or
    ``hn-tiny-pulse`` / ``hn-tiny-comb`` (the tiny harmonic-plus-noise generator with pulsed noise / with
    its noise combed at the harmonics, from a 60 Hz floor)."""
    if preset == "hifigan-tiny-repeat":
        return replace(VARIANTS["hifigan-tiny"], upsample="repeat")
    if preset == "hn-tiny-pulse":
        return replace(VARIANTS["hn-tiny"], hn_noise_pulse=3.0)
    if preset == "hn-tiny-comb":
        return replace(VARIANTS["hn-tiny"], hn_noise_comb=60.0)
    return VARIANTS[preset]


@pytest.mark.parametrize("preset", ["hifigan-tiny", "pwg-tiny", "hifigan-tiny-repeat", "hn-tiny", "hn-tiny-pulse", "hn-tiny-comb"])
def test_chunked_equals_whole_in_torch(preset):
    g = build_generator(_config(preset)).eval()
    mel, f0, noise = _inputs(37)
    with torch.no_grad():
        whole = g(mel, f0, noise)
        states, pieces, a = g.init_states(1), [], 0
        for b in (1, 3, 4, 11, 37):
            y, states = g.step(mel[:, :, a:b], f0[:, a:b], noise[:, :, a * HOP : b * HOP], states)
            pieces.append(y)
            a = b
    assert whole.shape == (1, 1, 37 * HOP)
    np.testing.assert_allclose(torch.cat(pieces, 2).numpy(), whole.numpy(), atol=1e-5)


@pytest.mark.parametrize("preset", ["hifigan-tiny", "pwg-tiny", "hifigan-tiny-repeat", "hn-tiny", "hn-tiny-pulse", "hn-tiny-comb"])
def test_generators_are_causal(preset):
    """Output block j depends on frames <= j only: changing frame 20 leaves every earlier sample."""
    g = build_generator(_config(preset)).eval()
    mel, f0, noise = _inputs(30)
    mel2, f02 = mel.clone(), f0.clone()
    mel2[:, :, 20] += 3.0
    f02[:, 20] = 200.0
    with torch.no_grad():
        a, b = g(mel, f0, noise), g(mel2, f02, noise)
    diff = (a - b).abs()[0, 0].numpy()
    assert diff[: 20 * HOP].max() == 0.0
    assert diff[20 * HOP :].max() > 1e-6


def test_harmonic_source_phase_is_continuous_across_chunks():
    from voxflip.trainer.models.vocoder import HarmonicSource

    src = HarmonicSource(1, 16_000, HOP)
    with torch.no_grad():
        src.merge.weight.fill_(10.0)
        src.merge.bias.zero_()
        f0 = torch.full((1, 50), 200.0)
        whole, _ = src.step(f0, [torch.zeros(1, 1, 1)])
        first, st = src.step(f0[:, :7], [torch.zeros(1, 1, 1)])
        second, _ = src.step(f0[:, 7:], st)
    np.testing.assert_allclose(torch.cat([first, second], 2).numpy(), whole.numpy(), atol=1e-5)
    # a 200 Hz sine through tanh: its spectrum peaks at 200 Hz
    spec = np.abs(np.fft.rfft(whole[0, 0].numpy()))
    assert abs(np.argmax(spec) * 16_000 / whole.shape[2] - 200.0) < 2.0


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="multiply to hop_samples=160"):
        VocoderConfig(upsample_rates=(5, 4, 4))
    with pytest.raises(ConfigError, match="model.kind='wavenet'"):
        VocoderConfig(kind="wavenet")
    with pytest.raises(ConfigError, match="model.upsample='linear' must be 'transposed' or 'repeat'"):
        VocoderConfig(upsample="linear")
    with pytest.raises(ConfigError, match="model.preset='hifigan-v9' must be one of"):
        load_vocoder_config(CONFIGS / "vocoder_tiny.toml", ['model.preset="hifigan-v9"'])
    with pytest.raises(ConfigError, match=r"train.mel_jitter=-1.0 must be in 0..2"):
        load_vocoder_config(CONFIGS / "vocoder_tiny.toml", ["train.mel_jitter=-1.0"])
    with pytest.raises(ConfigError, match="model.hn_jump_ratio=1.0 must be above 1"):
        VocoderConfig(kind="hn", source_harmonics=0, hn_jump_ratio=1.0)
    with pytest.raises(ConfigError, match=r"model.hn_smoothing_hz=-5.0 must be in 0..1000 \(0: no smoothing\)"):
        VocoderConfig(kind="hn", source_harmonics=0, hn_smoothing_hz=-5.0)
    with pytest.raises(ConfigError, match=r"model.hn_noise_pulse=30.0 must be in 0..20 \(0: steady noise\)"):
        VocoderConfig(kind="hn", source_harmonics=0, hn_noise_pulse=30.0)
    with pytest.raises(ConfigError, match=r"model.hn_noise_comb=5.0 must be 0 \(no comb\) or an F0 floor in 20..500 Hz"):
        VocoderConfig(kind="hn", source_harmonics=0, hn_noise_comb=5.0)
    with pytest.raises(ConfigError, match=r"\[model\] has unknown key\(s\) hidden"):
        load_vocoder_config(CONFIGS / "vocoder_tiny.toml", ["model.hidden=3"])


def test_torch_log_mel_is_the_engines():
    """The mel loss reads the frames the engine computes (MelAnalyzer), so the vocoder learns the converters' mel."""
    rng = np.random.default_rng(1)
    t = np.arange(8000) / 16_000
    x = (0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    engine = MelAnalyzer(MelConfig.for_to_speech()).log_mel(x)
    mine = SpectralLosses(MelConfig.for_to_speech()).log_mel(torch.from_numpy(x)[None, None])[0].T.numpy()
    n = min(engine.shape[0], mine.shape[0])
    assert abs(engine.shape[0] - mine.shape[0]) <= 1
    np.testing.assert_allclose(mine[:n], engine[:n], atol=2e-3)


def test_gan_losses_on_known_cases():
    perfect_real = [(torch.ones(2, 5), [torch.ones(2, 3)])]
    perfect_fake = [(torch.zeros(2, 5), [torch.zeros(2, 3)])]
    assert float(discriminator_loss(perfect_real, perfect_fake)) == 0.0
    assert float(discriminator_loss(perfect_fake, perfect_real)) == 2.0
    assert float(generator_adv_loss(perfect_fake)) == 1.0
    assert float(feature_matching_loss(perfect_real, perfect_fake)) == 1.0
    losses = SpectralLosses(MelConfig.for_to_speech())
    x = torch.randn(1, 1, 4000)
    assert float(losses.stft(x, x)) < 1e-6
    assert float(losses.stft(0.5 * x, x)) > 0.3


@pytest.fixture(scope="module")
def voice_manifest(tmp_path_factory) -> Path:
    """Four short clips of a voice-like signal (harmonics under a moving formant, noise bursts)."""
    folder = tmp_path_factory.mktemp("vocdata")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        t = np.arange(16_000) / 16_000
        f0 = 140 + 60 * np.sin(2 * np.pi * (0.5 + i * 0.2) * t)
        phase = 2 * np.pi * np.cumsum(f0) / 16_000
        voice = sum(np.sin(k * phase) / k for k in range(1, 20)) * 0.1
        voice[6000:7000] = 0.05 * rng.standard_normal(1000)
        for side in ("speech", "singing"):
            sf.write(folder / f"c{i}.{side}.wav", voice.astype(np.float32), 16_000)
        rows.append({"id": f"c{i}", "text": "x", "speech": f"c{i}.speech.wav", "singing": f"c{i}.singing.wav"})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "manifest.jsonl"


def _weights(run: Path, step: int) -> dict:
    return torch.load(run / "checkpoints" / f"step_{step:08d}.pt", weights_only=True)["generator"]


@pytest.mark.parametrize("preset", ["hifigan-tiny", "pwg-tiny", "hn-tiny"])
def test_tiny_training_resumes_exactly(voice_manifest, tmp_path, preset):
    """6 steps straight == 3 steps, stop, resume for 3 more (the discriminator joins at step 2)."""
    overrides = [f"data.manifest={json.dumps(str(voice_manifest))}", f"model.preset={json.dumps(preset)}",
                 "train.adversarial_from=2"]
    if preset.startswith("hn"):     # its discriminators join only when asked; jittered input frames resume too
        overrides += ["train.adv_weight=1.0", "train.mel_jitter=0.3"]
    config = load_vocoder_config(CONFIGS / "vocoder_tiny.toml", overrides)
    straight, resumed = tmp_path / "a", tmp_path / "b"
    train_vocoder(config, straight, progress=False)
    train_vocoder(config, resumed, progress=False, stop_after=3)
    assert sorted(p.name for p in (resumed / "checkpoints").glob("*.pt")) == ["step_00000003.pt"]
    train_vocoder(config, resumed, progress=False)
    a, b = _weights(straight, 6), _weights(resumed, 6)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(_weights(straight, 3)[next(iter(a))], a[next(iter(a))])   # it did train
    assert (straight / "tb").is_dir() and (straight / "config.toml").is_file()


def _export_fresh(folder: Path, cfg: VocoderConfig) -> Path:
    torch.manual_seed(3)
    g = build_generator(cfg)
    _save(folder / "g.pt", {"kind": "vocoder", "generator": g.state_dict(), "model_config": cfg.to_dict(), "step": 0})
    export_vocoder(folder / "g.pt", folder / "export" / "vocoder.onnx")
    return folder


def _shipped_flow_window() -> int:
    from importlib.resources import files

    manifest = files("voxflip") / "data" / "models" / "s2s_flow" / "model.manifest.json"
    return int(json.loads(manifest.read_text())["mel"]["win_samples"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """Fresh (untrained) tiny generators of both kinds, exported, reading the shipped flow model's mel frames."""
    return {preset: _export_fresh(tmp_path_factory.mktemp(preset),
                                  replace(_config(preset), mel_window=_shipped_flow_window()))
            for preset in ("hifigan-tiny", "pwg-tiny", "hn-tiny", "hn-tiny-pulse", "hn-tiny-comb")}


@pytest.mark.parametrize("preset", ["hifigan-tiny", "pwg-tiny", "hn-tiny", "hn-tiny-pulse", "hn-tiny-comb"])
def test_onnx_runner_streams_like_torch(exported, preset):
    from voxflip.trainer.vocoder_export import load_generator

    g, _ = load_generator(exported[preset] / "g.pt")
    voc = NeuralVocoder(exported[preset] / "export", seed=5)
    mel, f0, _ = _inputs(40, seed=2)
    log_mel, hz = mel[0].T.numpy(), f0[0].numpy()
    state, pieces, a = voc.init_state(), [], 0
    for b in (2, 4, 9, 10, 40):
        y, state = voc.step(log_mel[a:b], hz[a:b], state)
        assert y.shape == ((b - a - (a == 0)) * HOP,)     # the first call: one frame of lookahead less
        pieces.append(y)
        a = b
    streamed = np.concatenate(pieces)
    # the same noise the runner drew (PWG, hn), through torch on the whole input
    rng = np.random.default_rng(5)
    noise = torch.from_numpy(np.concatenate([rng.standard_normal((1, 1, n * HOP), dtype=np.float32)
                                             for n in (2, 2, 5, 1, 30)], axis=2))
    with torch.no_grad():
        whole = g(mel, f0, noise)[0, 0].numpy()
    np.testing.assert_allclose(streamed, whole[HOP:], atol=1e-4)   # sample 0 is frame 0's centre
    assert voc.lookahead_frames == 1
    assert voc(log_mel, hz).shape == (40 * HOP,)


def test_manifest_checks_are_one_line(exported):
    folder = exported["hifigan-tiny"] / "export"
    manifest = json.loads((folder / "vocoder.manifest.json").read_text())
    path = folder / "vocoder.manifest.json"
    check_manifest(manifest, path)
    for change, message in (({"lookahead_frames": 99}, "lookahead_frames=99 must be a whole number in 0..8"),
                            ({"kind": "wavenet"}, "kind='wavenet' must be one of hifigan, pwg, hn"),
                            ({"files": {"graph": "../../etc/passwd"}}, "must be a relative path inside"),
                            ({"inputs": ["f0", "mel"]}, "must list 'mel' first"),
                            ({"colour": 1}, "unknown field 'colour'")):
        with pytest.raises(ConfigError, match=message) as info:
            check_manifest({**manifest, **change}, path)
        assert "\n" not in str(info.value)


def _render(path: Path, out: Path, method: str, block_size: int = 65536, **options) -> np.ndarray:
    from voxflip.engine.registry import Direction, make_converter
    from voxflip.render import render_file

    render_file(str(path), str(out), make_converter(Direction.TO_SPEECH, method, **options), block_size=block_size)
    audio, _ = sf.read(out, dtype="float32")
    return audio


def test_flow_converter_takes_a_neural_vocoder(exported, example_speech_path, tmp_path):
    """Same length and latency as with the DSP vocoder, streaming equals offline at any block size."""
    from voxflip.engine.registry import Direction, make_converter

    folder = str(exported["hifigan-tiny"] / "export")
    dsp = make_converter(Direction.TO_SPEECH, "flow-nodur")
    neural = make_converter(Direction.TO_SPEECH, "flow-nodur", vocoder=folder)
    assert neural.latency_samples == dsp.latency_samples
    assert "hifigan" in neural.describe()
    a = _render(example_speech_path, tmp_path / "a.wav", "flow-nodur", vocoder=folder)
    b = _render(example_speech_path, tmp_path / "b.wav", "flow-nodur", vocoder=folder, block_size=1000)
    c = _render(example_speech_path, tmp_path / "c.wav", "flow-nodur")
    assert a.shape == b.shape == c.shape
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.max(np.abs(a - c)) > 1e-3          # it is another vocoder
    d = _render(example_speech_path, tmp_path / "d.wav", "flow-dur", vocoder=folder)
    e = _render(example_speech_path, tmp_path / "e.wav", "flow-dur")
    assert d.shape == e.shape                   # the same durations, the same flush at the end


def test_vocoder_option_errors(tmp_path):
    from voxflip.engine.registry import Direction, make_converter, shipped_vocoder

    with pytest.raises(OptionError, match="does not apply to world-nodur"):
        make_converter(Direction.TO_SPEECH, "world-nodur", vocoder="dsp")
    with pytest.raises(OptionError, match="must be dsp, hifigan, pwg, hn or the folder"):
        make_converter(Direction.TO_SPEECH, "flow-nodur", vocoder=str(tmp_path / "nowhere"))
    if not shipped_vocoder("pwg").is_dir():
        with pytest.raises(OptionError, match="is not shipped with this installation"):
            make_converter(Direction.TO_SPEECH, "flow-nodur", vocoder="pwg")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="holds 0 manifests"):
        make_converter(Direction.TO_SPEECH, "flow-nodur", vocoder=str(empty))


def test_a_vocoder_with_other_lookahead_is_refused(exported, tmp_path):
    from voxflip.engine.registry import Direction, make_converter

    folder = tmp_path / "look2"
    shutil.copytree(exported["hifigan-tiny"] / "export", folder)
    path = folder / "vocoder.manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "lookahead_frames": 2}))
    with pytest.raises(ConfigError, match="looks 2 frames ahead; the flow converters take vocoders of 1 frame"):
        make_converter(Direction.TO_SPEECH, "flow-nodur", vocoder=str(folder))


def test_a_vocoder_of_another_mel_window_is_refused_naming_the_window(tmp_path):
    from voxflip.engine.registry import Direction, make_converter

    folder = _export_fresh(tmp_path, VARIANTS["hifigan-tiny"])      # the 16 kHz setup's own 640-sample window
    assert NeuralVocoder(folder / "export").mel == MelConfig.for_to_speech()
    window = _shipped_flow_window()
    with pytest.raises(ConfigError, match=f"640-sample windows; this flow model makes 16000 Hz, hop 160, {window}-sample "
                                          f"windows \\(train one with model.mel_window = {window}\\)"):
        make_converter(Direction.TO_SPEECH, "flow-nodur", vocoder=str(folder / "export"))
    with pytest.raises(ConfigError, match="model.mel_window=100 must be 0"):
        replace(VARIANTS["hifigan-tiny"], mel_window=100)


def test_cli_train_and_export_vocoder(voice_manifest, tmp_path, capsys):
    from voxflip.cli import main

    run = tmp_path / "run"
    assert main(["train-vocoder", str(CONFIGS / "vocoder_tiny.toml"), "--run-dir", str(run),
                 "--set", f"data.manifest={json.dumps(str(voice_manifest))}", "--steps", "2"]) == 0
    checkpoint = run / "checkpoints" / "step_00000002.pt"
    assert checkpoint.is_file()
    assert main(["export-vocoder", str(checkpoint), "-o", str(tmp_path / "v" / "vocoder.onnx")]) == 0
    assert "--vocoder" in capsys.readouterr().out
    assert NeuralVocoder(tmp_path / "v").manifest["trained_steps"] == 2
    assert main(["export-vocoder", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "x.onnx")]) != 0


def test_torchrun_with_two_processes(voice_manifest, tmp_path):
    """Two processes share each batch (DistributedDataParallel, gloo); rank 0 caches the features first."""
    from helpers import torchrun_two_processes

    manifest = tmp_path / "m.jsonl"      # a fresh folder: no feature cache yet, both ranks start together
    shutil.copy(voice_manifest, manifest)
    for wav in voice_manifest.parent.glob("*.wav"):
        shutil.copy(wav, tmp_path / wav.name)
    done = torchrun_two_processes(
        "train-vocoder", str(CONFIGS / "vocoder_tiny.toml"), "--run-dir", str(tmp_path / "ddp"),
        "--set", f"data.manifest={json.dumps(str(manifest))}", "--set", "train.max_steps=2", "--set", "train.batch_size=4")
    assert (tmp_path / "ddp" / "checkpoints" / "step_00000002.pt").exists()
    assert done.stdout.count("checkpoint:") == 1


def test_a_24khz_vocoder_trains_exports_and_is_refused_by_the_flow_converters(voice_manifest, tmp_path):
    """The speech -> singing mel (24 kHz, hop 128): features, training, export and the runner follow it."""
    from voxflip.engine.registry import Direction, make_converter
    from voxflip.trainer.eval.copy_synthesis import synthesise

    config = load_vocoder_config(CONFIGS / "vocoder_tiny.toml", [f"data.manifest={json.dumps(str(voice_manifest))}",
                                                                 'model.preset="hifigan-tiny-24k"', "train.max_steps=2"])
    checkpoint = train_vocoder(config, tmp_path / "run", progress=False)
    export_vocoder(checkpoint, tmp_path / "v" / "vocoder.onnx")
    voc = NeuralVocoder(tmp_path / "v")
    assert (voc.mel.sample_rate, voc.hop) == (24_000, 128)
    mel = np.random.default_rng(0).standard_normal((30, 80)).astype(np.float32) - 4.0
    assert voc(mel, np.full(30, 150.0)).shape == (30 * 128,)
    audio, rate = synthesise("v24", str(tmp_path / "v"), voice_manifest.parent / "c0.speech.wav")
    assert rate == 16_000 and abs(audio.shape[0] - 16_000) < 200
    with pytest.raises(ConfigError, match="reads 24000 Hz mel frames of hop 128, 512-sample windows; this flow model makes 16000 Hz"):
        make_converter(Direction.TO_SPEECH, "flow-nodur", vocoder=str(tmp_path / "v"))
    with pytest.raises(ConfigError, match="none of the engine's mel setups"):
        VocoderConfig(sample_rate=22_050, hop_samples=256, upsample_rates=(8, 8, 4))


def test_eval_system_puts_the_named_vocoder_behind_the_flow_converter(exported, example_speech_path):
    from voxflip.trainer.data.manifest import ManifestEntry
    from voxflip.trainer.eval.systems import get_system

    entry = ManifestEntry(id="a", text="x", singing=example_speech_path)
    folder = str(exported["hifigan-tiny"] / "export")
    neural, rate = get_system("hifigan:flow-nodur").run(entry, {"vocoders": {"hifigan": folder}})
    dsp, _ = get_system("flow-nodur").run(entry, {})
    assert rate == 16_000 and neural.shape == dsp.shape
    assert np.max(np.abs(neural - dsp)) > 1e-3
    from voxflip.engine.registry import shipped_vocoder

    if not shipped_vocoder("pwg").is_dir():      # no folder given and none shipped: the one-line error
        with pytest.raises(OptionError, match="is not shipped with this installation"):
            get_system("pwg:flow-nodur").run(entry, {})


def test_bench_runs_the_flow_converter_with_a_neural_vocoder(exported):
    from voxflip.bench import format_table, run_bench
    from voxflip.cli import main

    folder = str(exported["hifigan-tiny"] / "export")
    results = run_bench(["flow-nodur"], [20.0], 48_000, 1.0, core=None, vocoder=folder)
    assert results[0].vocoder == folder and results[0].rtf_p50 > 0
    assert f"({folder} vocoder)" in format_table(results)
    assert main(["bench", "--converters", "world-nodur", "--vocoder", folder]) != 0     # no converter of it takes one
    assert main(["bench", "--offline", "--converters", "flow-nodur", "--vocoder", folder]) != 0


def test_repeat_upsampling_leaves_no_frame_rate_comb():
    """A steady input through the untrained generators: the transposed convolutions' output repeats
    its per-position pattern every hop (a comb at 100 Hz), repetition upsampling's does not vary
    inside a block beyond what its convolutions smooth."""
    from dataclasses import replace

    torch.manual_seed(0)
    mel = torch.full((1, 80, 60), -3.0)
    f0 = torch.zeros(1, 60)
    out = {}
    for upsample in ("transposed", "repeat"):
        torch.manual_seed(0)
        g = build_generator(replace(VARIANTS["hifigan-tiny"], upsample=upsample, source_harmonics=0)).eval()
        with torch.no_grad():
            y = g(mel, f0)[0, 0, 30 * HOP :].numpy()
        y = y - y.mean()
        spectrum = np.abs(np.fft.rfft(y)) ** 2
        freqs = np.fft.rfftfreq(y.size, 1 / 16_000)
        comb = spectrum[np.isclose(freqs % 100.0, 0.0) & (freqs > 0)].sum()
        out[upsample] = comb / max(spectrum.sum(), 1e-30)
    assert out["transposed"] > 0.5          # the steady-state output is almost all frame-rate harmonics
    assert out["repeat"] < 0.5 * out["transposed"]


def test_minimum_phase_matrix_gives_a_known_filters_phase():
    """``M @ log|H|`` of a minimum-phase FIR (zeros inside the unit circle) is its phase; a
    maximum-phase one (its time reverse, same magnitude) gets the same, minimum, phase."""
    from voxflip.trainer.models.vocoder import minimum_phase_matrix

    n = 512
    m = minimum_phase_matrix(n)
    h = np.array([1.0, -0.9, 0.3])                       # zeros at 0.45 +- 0.3j, |z| = 0.55
    spectrum = np.fft.rfft(h, n)
    phase = m @ np.log(np.abs(spectrum))
    np.testing.assert_allclose(np.angle(np.exp(1j * (phase - np.angle(spectrum)))), 0.0, atol=1e-9)
    reverse = np.fft.rfft(h[::-1], n)
    assert np.max(np.abs(np.angle(np.exp(1j * (phase - np.angle(reverse)))))) > 0.5


def test_noise_bank_sums_to_a_delay_and_splits_the_band():
    from voxflip.trainer.models.vocoder import noise_filter_bank

    bank = noise_filter_bank(16, 63, 16_000)
    delta = np.zeros(63)
    delta[31] = 1.0
    np.testing.assert_allclose(bank.sum(0), delta, atol=1e-12)
    # each band passes its own part of the spectrum: band centres rise with the band index
    centres = [np.argmax(np.abs(np.fft.rfft(h, 1024))) for h in bank]
    assert centres == sorted(centres) and centres[0] < centres[-1]


def test_harmonic_noise_generator_makes_the_f0_harmonics_at_the_mels_level():
    """Untrained, the harmonic-plus-noise generator already vocodes: a steady voiced input (harmonics
    of 200 Hz under a falling envelope) gives peaks at multiples of 200 Hz, no frame-rate comb between
    them, and the input's level within 3 dB (unsmoothed: smoothing a line spectrum over 200 Hz lowers
    its peaks by an amount that depends on F0, which training takes up); unvoiced frames give noise
    without harmonics."""
    from voxflip.trainer.models.vocoder import HarmonicNoiseGenerator

    sr, frames = 16_000, 80
    t = np.arange(frames * HOP) / sr
    x = sum(np.cos(2 * np.pi * 200 * k * t) / k for k in range(1, 30)).astype(np.float32) * 0.05
    cfg = replace(VARIANTS["hn"], hn_smoothing_hz=0.0)
    mel = torch.from_numpy(MelAnalyzer(cfg.mel()).log_mel(x)[:frames].T.copy()).float()[None]
    g = build_generator(cfg).eval()
    assert isinstance(g, HarmonicNoiseGenerator)
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 1, frames * HOP), dtype=np.float32))
    with torch.no_grad():
        voiced = g(mel, torch.full((1, frames), 200.0), noise)[0, 0, 20 * HOP :].numpy()
        unvoiced = g(mel, torch.zeros(1, frames), noise)[0, 0, 20 * HOP :].numpy()
    spectrum = np.abs(np.fft.rfft(voiced * np.hanning(voiced.size))) ** 2
    freqs = np.fft.rfftfreq(voiced.size, 1 / sr)
    on_harmonics = spectrum[np.abs((freqs + 100) % 200 - 100) < 15].sum()
    assert on_harmonics > 0.9 * spectrum.sum()
    level = 20 * np.log10(np.std(voiced) / np.std(x[20 * HOP :]))
    assert abs(level) < 3.0, level
    spectrum_u = np.abs(np.fft.rfft(unvoiced * np.hanning(unvoiced.size))) ** 2
    assert spectrum_u[np.abs((freqs + 100) % 200 - 100) < 15].sum() < 0.5 * spectrum_u.sum()
    assert np.std(unvoiced) > 0.01 * np.std(voiced)


def test_harmonic_noise_generator_cross_fades_where_f0_jumps():
    """F0 jumping between 200 and 300 Hz every 20 frames (as an F0 tracker's errors do): gliding would
    sweep each harmonic across the spectrum within 10 ms, a click; the cross-fade keeps the energy
    around each jump on the two series' harmonics (multiples of 100 Hz)."""
    cfg = VARIANTS["hn"]
    t = np.arange(100 * HOP) / 16_000
    x = sum(np.cos(2 * np.pi * 200 * k * t) / k for k in range(1, 30)).astype(np.float32) * 0.05
    mel = torch.from_numpy(MelAnalyzer(cfg.mel()).log_mel(x)[:100].T.copy()).float()[None]
    f0 = torch.where((torch.arange(100) // 20) % 2 == 0, 200.0, 300.0)[None]
    off_line = {}
    for ratio in (1.25, 1000.0):
        torch.manual_seed(0)
        g = build_generator(replace(cfg, hn_jump_ratio=ratio)).eval()
        with torch.no_grad():
            y = g(mel, f0)[0, 0].numpy()
        total = off = 0.0
        for jump in (20, 40, 60, 80):                     # block `jump` runs from frame jump - 1 to jump
            seg = y[(jump - 2) * HOP : (jump + 3) * HOP]
            spectrum = np.abs(np.fft.rfft(seg * np.hanning(seg.size), 8192)) ** 2
            freqs = np.fft.rfftfreq(8192, 1 / 16_000)
            total += spectrum.sum()
            off += spectrum[np.abs((freqs + 50) % 100 - 50) > 30].sum()
        off_line[ratio] = off / total
    assert off_line[1.25] < 0.5 * off_line[1000.0], off_line


def test_eval_vocoder_scores_copy_synthesis_and_caches_it(voice_manifest, tmp_path):
    pytest.importorskip("faster_whisper")
    from voxflip.trainer.eval.copy_synthesis import evaluate_vocoders

    out = tmp_path / "voc.json"
    report = evaluate_vocoders(voice_manifest, {"clip": None, "dsp": None}, out, sides=("speech",), limit=1)
    clip, dsp = (report["summary"][n]["speech"] for n in ("clip", "dsp"))
    assert clip["lsd"]["mean"] == 0.0 and clip["spk_sim"]["mean"] > 0.99
    assert dsp["lsd"]["mean"] > 1.0 and dsp["cer"]["n"] == 1
    assert (tmp_path / "voc_clips" / "dsp" / "speech" / "c0.wav").is_file()
    assert "| dsp |" in out.with_suffix(".md").read_text()
    record = tmp_path / "voc_clips" / "dsp" / "speech" / "c0.json"
    stamp = record.stat().st_mtime_ns
    evaluate_vocoders(voice_manifest, {"dsp": None}, out, sides=("speech",), limit=1)
    assert record.stat().st_mtime_ns == stamp          # cached: not synthesised or scored again


def test_dsp_flow_reference_vocodes_the_flow_models_frames(voice_manifest):
    """``dsp-flow`` is the DSP vocoder on frames of the shipped flow model's mel window (what the flow
    converters hand it), so a neural vocoder trained on that window is compared on the same frames."""
    from voxflip.engine.vocoder.mel_vocoder import MelVocoder, MelVocoderConfig
    from voxflip.trainer.eval.copy_synthesis import _analyse, synthesise

    clip = voice_manifest.parent / "c0.speech.wav"
    flow, rate = synthesise("dsp-flow", None, clip)
    plain, _ = synthesise("dsp", None, clip)
    mel = replace(MelConfig.for_to_speech(), win_samples=_shipped_flow_window())
    _, log_mel, f0 = _analyse(clip, mel)
    np.testing.assert_allclose(flow, MelVocoder(MelVocoderConfig(mel=mel))(log_mel, f0), atol=1e-6)
    assert rate == 16_000 and flow.shape == plain.shape
    if mel.win_samples != MelConfig.for_to_speech().win_samples:
        assert np.max(np.abs(flow - plain)) > 1e-3



def test_harmonic_noise_generator_smoothing_voices_another_pitchs_mel_without_its_ridges():
    """The residual flow model's mel keeps the singing's harmonics, and the speech F0 voices it at another
    pitch. Untrained, a mel of 200 Hz harmonics voiced at 150 Hz: read bin by bin, the envelope's 200 Hz
    ridges make 150 Hz's 4th harmonic (600 Hz, on a ridge) louder than its 2nd and 3rd (between ridges),
    a spectrum that no longer falls and is heard at another pitch; smoothed over 200 Hz (as the DSP mel
    vocoder does) the harmonics fall with the envelope."""
    sr, frames = 16_000, 80
    t = np.arange(frames * HOP) / sr
    x = sum(np.cos(2 * np.pi * 200 * k * t) / k for k in range(1, 30)).astype(np.float32) * 0.05
    peaks = {}
    for smoothing in (0.0, 200.0):
        cfg = replace(VARIANTS["hn"], hn_smoothing_hz=smoothing)
        mel = torch.from_numpy(MelAnalyzer(cfg.mel()).log_mel(x)[:frames].T.copy()).float()[None]
        torch.manual_seed(0)
        with torch.no_grad():
            y = build_generator(cfg).eval()(mel, torch.full((1, frames), 150.0))[0, 0, 20 * HOP :].numpy()
        spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2
        freqs = np.fft.rfftfreq(y.size, 1 / sr)
        peaks[smoothing] = np.array([10 * np.log10(spectrum[np.abs(freqs - 150 * k) < 5].max()) for k in range(1, 9)])
    ridged, smooth = peaks[0.0], peaks[200.0]
    assert ridged[3] > max(ridged[1], ridged[2]) + 5.0, ridged - ridged[0]    # measured +9 and +13 dB
    assert np.all(np.diff(smooth[:6]) < 0.5), smooth - smooth[0]              # measured -1.9 .. -3.5 dB a step


def test_shipped_hn_vocodes_real_speech_at_the_pitch_it_is_given(example_speech, example_speech_path, tmp_path):
    """The shipped ``hn`` (trained on the synthetic corpus only) on the bundled ARCTIC sentence, real
    speech it never heard: its copy synthesis is closer to the recording than the DSP vocoder's on the
    same frames (measured LSD 7.9 against 9.9 dB), and voiced at 220 Hz, an octave-odd pitch for this
    voice, it sounds at 220 Hz (off by more than 50 cents on 2.7% of the frames; the version without
    the envelope smoothing: 16%, its harmonics following the recording's ridges). ``--vocoder hn``
    runs it in the flow converters."""
    from voxflip.engine.features.pitch import estimate_f0
    from voxflip.engine.registry import resolve_vocoder, shipped_vocoder
    from voxflip.engine.vocoder.mel_vocoder import MelVocoder, MelVocoderConfig
    from voxflip.trainer.eval.to_singing_metrics import lsd

    if not shipped_vocoder("hn").is_dir():
        pytest.skip("no hn vocoder is shipped with this installation")
    audio, rate = example_speech
    voc = NeuralVocoder(resolve_vocoder("hn"), seed=0)
    mel = MelAnalyzer(voc.mel).log_mel(audio)
    f0 = estimate_f0(audio, rate, HOP)[: mel.shape[0]]
    copy, dsp = voc(mel, f0), MelVocoder(MelVocoderConfig(mel=voc.mel))(mel, f0)
    n = min(copy.size, dsp.size, audio.size)
    assert lsd(audio[:n], copy[:n], rate) < lsd(audio[:n], dsp[:n], rate) - 1.0
    voiced = f0 > 0
    out = voc(mel, np.where(voiced, 220.0, 0.0))
    got = estimate_f0(out, rate, HOP)[: mel.shape[0]]
    both = (got > 0) & voiced
    assert both.sum() > 0.8 * voiced.sum()
    assert np.mean(np.abs(1200 * np.log2(got[both] / 220.0)) > 50) < 0.08
    neural, plain = _render(example_speech_path, tmp_path / "h.wav", "flow-nodur", vocoder="hn"), \
        _render(example_speech_path, tmp_path / "d.wav", "flow-nodur")
    assert neural.shape == plain.shape and np.max(np.abs(neural - plain)) > 1e-3


def test_harmonic_noise_generator_pulses_the_noise_of_voiced_frames_with_each_period():
    """With ``hn_noise_pulse`` and the network's mix at 1, a voiced frame's noise comes in a burst at the
    start of each period of the fundamental (here 200 Hz: 80 samples); steady noise has no such rhythm,
    and unvoiced frames are never pulsed."""
    frames, period = 60, 80
    mel = torch.full((1, 80, frames), -4.0)
    energy = {}
    for pulse, voiced in ((3.0, True), (0.0, True), (3.0, False)):
        torch.manual_seed(0)
        g = build_generator(replace(VARIANTS["hn-tiny"], hn_noise_pulse=pulse)).eval()
        with torch.no_grad():
            g.harmonic_gain.fill_(-50.0)            # the noise alone
            if pulse:
                g.head.bias[-1] = 20.0              # mix 1
            f0 = torch.full((1, frames), 200.0 if voiced else 0.0)
            y = g(mel, f0, torch.randn(1, 1, frames * HOP, generator=torch.Generator().manual_seed(1)))[0, 0]
        folded = (y[10 * HOP : 10 * HOP + 40 * HOP].numpy() ** 2).reshape(-1, period).mean(0)
        energy[pulse, voiced] = folded[np.r_[0:8, 72:80]].mean() / folded[32:48].mean()   # period start / middle
    assert energy[3.0, True] > 20.0, energy
    assert 0.5 < energy[0.0, True] < 2.0 and 0.5 < energy[3.0, False] < 2.0, energy


def test_harmonic_noise_generator_combs_the_noise_of_voiced_frames_at_the_harmonics():
    """With ``hn_noise_comb`` and the network's comb share at 1, a voiced frame's noise sits at the harmonics
    of its F0 (here 200 Hz) with little between them; without the comb, or unvoiced, it is flat."""
    frames = 120
    mel = torch.full((1, 80, frames), -4.0)
    ratio = {}
    for comb, voiced in ((60.0, True), (0.0, True), (60.0, False)):
        torch.manual_seed(0)
        g = build_generator(replace(VARIANTS["hn-tiny"], hn_noise_comb=comb)).eval()
        with torch.no_grad():
            g.harmonic_gain.fill_(-50.0)            # the noise alone
            if comb:
                bands = g.cfg.hn_noise_bands
                g.head.bias[g.bins + bands : g.bins + 2 * bands] = 20.0     # every band combed
            f0 = torch.full((1, frames), 200.0 if voiced else 0.0)
            y = g(mel, f0, torch.randn(1, 1, frames * HOP, generator=torch.Generator().manual_seed(1)))[0, 0]
        x = y[10 * HOP :].numpy()
        spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
        hz = np.fft.rfftfreq(x.size, 1 / 16_000)
        at = np.mean([spectrum[np.abs(hz - 200.0 * h) < 15].mean() for h in range(3, 30)])
        between = np.mean([spectrum[np.abs(hz - 200.0 * h - 100.0) < 15].mean() for h in range(3, 30)])
        ratio[comb, voiced] = at / between
    assert ratio[60.0, True] > 20.0, ratio
    assert 0.5 < ratio[0.0, True] < 2.0 and 0.5 < ratio[60.0, False] < 2.0, ratio

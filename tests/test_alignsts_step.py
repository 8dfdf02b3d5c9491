"""AlignSTS's step graphs (trainer/models/alignsts_step.py, engine/converters/alignsts_step.py).

Tiny untrained models: what is tested is that carrying the state gives the whole song's frames at
any chunk size, in torch and through ONNX Runtime, and that a bad ``step`` section is one line.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from voxflip.engine.converters.alignsts_model import AlignSTSModel, BlockNoise  # noqa: E402
from voxflip.engine.errors import ConfigError  # noqa: E402
from voxflip.trainer.models.alignsts import AlignSTS, AlignSTSConfig  # noqa: E402
from voxflip.trainer.models.alignsts_step import ContentStep, TargetStep, TimbreGraph  # noqa: E402

CFG = AlignSTSConfig(hidden=32, content_bottleneck=8, diffusion_channels=32, decoder_layers=1, timbre_layers=1,
                     window_mode="absolute", window_frames=5)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    m = AlignSTS(CFG).eval()
    with torch.no_grad():          # stats that are not the identity, as a trained model's
        m.set_stats(np.linspace(-7, -3, 80), np.linspace(1, 2, 80), np.random.default_rng(1).normal(size=512),
                    np.random.default_rng(2).uniform(0.5, 2.0, 512))
    return m


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    from voxflip.trainer.alignsts_export import export_model

    folder = tmp_path_factory.mktemp("alignsts_step") / "model"
    export_model(model, folder / "alignsts.onnx")
    return folder


def _inputs(t: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    content = rng.standard_normal((n, 512)).astype(np.float32)
    f0 = np.where(rng.random(t) < 0.8, 150 + 150 * rng.random(t), 0).astype(np.float32)
    timbre = (rng.standard_normal((40, 80)) - 5).astype(np.float32)
    return content, f0, timbre


@pytest.fixture(scope="module")
def fs2_model():
    torch.manual_seed(4)
    return AlignSTS(replace(CFG, decoder="fs2", decoder_context=6, decoder_layers=2)).eval()


@pytest.mark.parametrize("chunk", [1, 5, 37])
@pytest.mark.parametrize("ratio", [0.2, 0.31], ids=["speech-longer", "song-outruns-speech"])
@pytest.mark.parametrize("decoder", ["diffusion", "fs2"])
def test_torch_steps_equal_the_whole_song(model, fs2_model, chunk, ratio, decoder):
    """Content rows and song frames fed ``chunk`` at a time, the state carried: the whole utterance's mel,
    ``delay`` frames behind (at 0.31 the windows' centres pass the speech's last row and are held there),
    with either decoder."""
    model = model if decoder == "diffusion" else fs2_model
    t, n = 240, 64
    content, f0, timbre = _inputs(t, n)
    steps = CFG.diffusion_steps
    noise = torch.randn(steps, 1, 80, t, generator=torch.Generator().manual_seed(4))
    bins = torch.as_tensor(_classes(f0))
    c = torch.as_tensor(content.T[None].copy())
    tm = torch.as_tensor(timbre.T[None].copy())
    with torch.no_grad():
        want = model.infer(c, torch.tensor([n]), bins, torch.tensor([t]), tm, torch.tensor([40]), noise=noise,
                           ratio=torch.tensor([ratio]))["mel"][0]
        content_step, target, timbre_graph = ContentStep(model), TargetStep(model), TimbreGraph(model)
        state = [torch.zeros(s) for s in content_step.state_shapes()]
        rows = []
        padded = torch.cat([c, torch.zeros(1, 512, content_step.delay)], dim=2)
        for a in range(0, padded.shape[2], chunk):
            out = content_step(padded[:, :, a : a + chunk], torch.tensor([float(a)]), torch.tensor([float(n)]), *state)
            rows.append(out[0])
            state = list(out[1:])
        keys = torch.cat(rows, dim=1)[:, content_step.delay :]
        assert keys.shape[1] == n
        voice = timbre_graph(tm)
        state = [torch.zeros(s) for s in target.state_shapes()]
        mel = []
        for first in range(0, t + target.delay, chunk):
            count = min(chunk, t + target.delay - first)
            chunk_bins = torch.zeros(1, count, dtype=torch.long)
            have = bins[:, first : first + count]
            chunk_bins[:, : have.shape[1]] = have
            draws = torch.zeros(steps, 1, 80, count)
            for k, d in enumerate(target.noise_delays):
                for j in range(count):
                    if 0 <= first - d + j < t:
                        draws[k, :, :, j] = noise[k, :, :, first - d + j]
            a, b = target.key_span(first, count, ratio, n)
            out = target(chunk_bins, draws if decoder == "diffusion" else None, keys[:, a:b], torch.tensor([float(a)]), torch.tensor([float(first)]),
                         torch.tensor([float(t)]), torch.tensor([float(n)]), torch.tensor([ratio]), voice, *state)
            mel.append(out[0])
            state = list(out[1:])
        got = torch.cat(mel, dim=2)[0, :, target.delay :]
    assert got.shape == want.shape
    assert torch.max(torch.abs(got - want)) < 1e-4 * torch.max(torch.abs(want))


def _classes(f0: np.ndarray) -> np.ndarray:
    from voxflip.engine.converters.alignsts_model import f0_classes

    return f0_classes(f0, CFG.pitch_bins, CFG.f0_min_hz, CFG.f0_max_hz)[None]


def test_the_delays_are_the_models_context(model):
    from voxflip.engine.converters.alignsts_context import AlignSTSContext

    target = TargetStep(model)
    assert target.delay == AlignSTSContext.of(CFG.to_dict()).target_frames
    assert target.noise_delays[0] == target.cond_delay and len(target.noise_delays) == CFG.diffusion_steps


@pytest.fixture(scope="module")
def exported_fs2(fs2_model, tmp_path_factory):
    from voxflip.trainer.alignsts_export import export_model

    folder = tmp_path_factory.mktemp("alignsts_step_fs2") / "model"
    export_model(fs2_model, folder / "alignsts.onnx")
    return folder


@pytest.mark.parametrize("chunks", [(7, 9), (1, 1), (64, 333)], ids=["small", "one-frame", "large"])
@pytest.mark.parametrize("decoder", ["diffusion", "fs2"])
def test_the_exported_graphs_sing_the_whole_song(exported, exported_fs2, chunks, decoder):
    """Through ONNX Runtime (no torch in the engine's runner): equal to the whole graph on the whole song."""
    model = AlignSTSModel(exported if decoder == "diffusion" else exported_fs2)
    assert ("noise" in [i.name for i in model.step_graphs().sessions["step"].get_inputs()]) == (decoder == "diffusion")
    assert model.has_step_graphs
    content_chunk, song_chunk = chunks
    t, n, ratio = 300, 60, 0.25
    content, f0, timbre = _inputs(t, n, seed=2)
    noise = BlockNoise(3, model.steps, model.n_mels) if decoder == "diffusion" else None
    want = model.sing(content, f0, timbre, ratio=ratio, noise=noise)
    graphs = model.step_graphs()
    stream = graphs.stream(ratio, t, noise)
    stream.set_voice(model.timbre_input(timbre))
    bins = model.f0_input(f0)
    for a in range(0, n, content_chunk):
        stream.push_content(content[a : a + content_chunk])
    stream.end_content()
    assert stream.keys_known == n
    sung = []
    for a in range(0, t, song_chunk):
        b = min(t, a + song_chunk)
        assert stream.ready(b + graphs.delay)
        stream.feed(bins, b + graphs.delay)
        sung.append(stream.take(a, b))
    got = np.concatenate(sung, axis=1).T
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) < 1e-4 * np.max(np.abs(want))


def test_a_feed_before_its_keys_is_refused(exported):
    model = AlignSTSModel(exported)
    graphs = model.step_graphs()
    stream = graphs.stream(0.25, 300, None)
    content, f0, timbre = _inputs(300, 60)
    stream.set_voice(model.timbre_input(timbre))
    stream.push_content(content[:10])
    assert not stream.ready(100)
    with pytest.raises(ValueError, match=r"read content rows .* not there"):
        stream.feed(model.f0_input(f0), 100)


def test_models_without_step_graphs(tmp_path, model):
    """Relative windows, the baselines and kernels that carry no frames (1) keep the whole graph: the export has
    no step section and loads; the torch module says why."""
    from voxflip.trainer.alignsts_export import export_model
    from voxflip.trainer.models.sts_baselines import build_model

    torch.manual_seed(0)
    parekh = replace(CFG, architecture="parekh", decoder="conv", decoder_layers=2, baseline_layers=2)
    for name, m in (("relative", AlignSTS(replace(CFG, window_mode="relative"))), ("parekh", build_model(parekh)),
                    ("kernel-1", AlignSTS(replace(CFG, rp_conv_kernel=1, content_kernel=1)))):
        manifest = json.loads(export_model(m.eval(), tmp_path / name / "alignsts.onnx").read_text())
        assert "step" not in manifest and not AlignSTSModel(tmp_path / name).has_step_graphs
        with pytest.raises(ConfigError, match=r"step graphs need AlignSTS with absolute windows, odd kernels"):
            TargetStep(m)
    with pytest.raises(ConfigError, match=r"has no step graphs; re-export it"):
        AlignSTSModel(tmp_path / "relative").step_graphs()


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(delay=s["delay"] + 1), r"step\.delay=.* must be"),
    (lambda s: s["files"].update(step="../elsewhere.onnx"), r"step\.files\.step=.*inside the manifest's folder"),
    (lambda s: s.update(noise_delays=s["noise_delays"][::-1]), r"step\.noise_delays=.* must be \[20, 36"),
    (lambda s: s.update(state=[[1, 32, 0]]), r"step\.state=.* must be .*what model_config's layers give"),
    (lambda s: s.update(query_span=[0, 0]), r"step\.query_span=\[0, 0\] must be \[16, 6\]"),
    (lambda s: s["content_state"][0].__setitem__(2, 5), r"step\.content_state=.* must be"),
    (lambda s: s.pop("query_span"), r"step must be an object with the fields"),
    (lambda s: s["files"].pop("timbre"), r"step\.files=.* must name the graphs content, timbre, step"),
])
def test_a_bad_step_section_is_one_line(exported, tmp_path, change, message):
    folder = tmp_path / "bad"
    shutil.copytree(exported, folder)
    path = folder / "alignsts.manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest["step"])
    path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=message) as err:
        AlignSTSModel(folder)
    assert "\n" not in str(err.value)


def test_a_step_graph_that_is_not_the_manifests_is_refused(exported, tmp_path):
    from voxflip.engine.errors import ArtifactMismatchError

    folder = tmp_path / "swapped"
    shutil.copytree(exported, folder)
    shutil.copy(folder / "alignsts.timbre.onnx", folder / "alignsts.step.onnx")
    with pytest.raises(ArtifactMismatchError, match=r"the step graph takes \['timbre_mel'\]"):
        AlignSTSModel(folder).step_graphs()

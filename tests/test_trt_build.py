"""voxflip.trt_build: profiles, cache keys, sanitised graphs, fp16 parity, the manifest's trt section, the CLI."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from voxflip.engine.backends.onnx_step import OnnxStepModel, check_manifest  # noqa: E402
from voxflip.engine.backends.trt_step import GpuStepModel, pick_engine, provider_chain  # noqa: E402
from voxflip.engine.errors import ArtifactMismatchError, ConfigError  # noqa: E402
from voxflip.trt_build.build import BuildConfig, build_trt  # noqa: E402
from voxflip.trt_build.cache import GpuIdentity, engine_key, plan_name  # noqa: E402
from voxflip.trt_build.errors import BuildConfigError  # noqa: E402
from voxflip.trt_build.fp16 import fp16_parity, to_float16  # noqa: E402
from voxflip.trt_build.manifest import with_section  # noqa: E402
from voxflip.trt_build.ops import check_ops  # noqa: E402
from voxflip.trt_build.profiles import ProfileConfig, ShapeRange, graph_profile  # noqa: E402
from voxflip.trt_build.sanitize import graph_sha256, load_graph, sanitise  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "voxflip" / "data" / "models" / "s2s_flow"
MANIFEST = json.loads((MODEL / "model.manifest.json").read_text())


@pytest.fixture(scope="module")
def sanitised_step():
    return load_graph(MODEL / "model.onnx"), sanitise(load_graph(MODEL / "model.onnx"))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A copy of the shipped model after ``build-trt --onnx-only --max-streams 8``."""
    folder = tmp_path_factory.mktemp("trt") / "model"
    shutil.copytree(MODEL, folder)
    build_trt(folder, BuildConfig(profiles=ProfileConfig(max_streams=8, opt_streams=4), onnx_only=True),
              say=lambda line: None, check=check_manifest)
    return folder


def _feeds(session, batch: int, frames: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in session.get_inputs():
        shape = [batch] + [d if isinstance(d, int) else frames for d in i.shape[1:]]
        feeds[i.name] = (rng.standard_normal(shape) - (5.0 if i.name == "mel" else 0.0)).astype(np.float32)
    return feeds


# -- profiles --------------------------------------------------------------------------------------------
def test_profiles_follow_the_manifest_chunking():
    step = graph_profile("step", MANIFEST, ProfileConfig(max_streams=64, opt_streams=8))
    chunk, look = MANIFEST["chunk_frames"], MANIFEST["lookahead_frames"]
    assert step["mel"] == ShapeRange((1, 80, 1), (8, 80, chunk), (64, 80, chunk + look + 1))
    assert step["noise"] == step["mel"]
    assert step["state_in.enc2"] == ShapeRange((1, 128, 12), (8, 128, 12), (64, 128, 12))
    assert len(step) == 2 + len(MANIFEST["state"])
    decoder = graph_profile("decoder", MANIFEST, ProfileConfig(max_expansion=16))
    assert decoder["z"].max == (1, 80, 16 * (chunk + 1)) and "skip" in decoder
    assert all(n == "z" or n == "skip" or n.startswith("state_in.flow") for n in decoder)
    encoder = graph_profile("encoder", MANIFEST, ProfileConfig())
    assert not any(n.startswith("state_in.flow") for n in encoder)
    assert ("state_in.skip" in encoder) == (look > 0)   # a residual model's delayed input, when it looks ahead


@pytest.mark.parametrize("kwargs, match", [
    ({"max_streams": 0}, "max_streams=0"),
    ({"max_streams": 4, "opt_streams": 5}, "opt_streams=5"),
    ({"max_expansion": 0}, "max_expansion=0"),
])
def test_profile_config_rejects_bad_values(kwargs, match):
    with pytest.raises(BuildConfigError, match=match):
        ProfileConfig(**kwargs)


def test_shape_range_rejects_min_above_max():
    with pytest.raises(BuildConfigError, match="must hold per dimension"):
        ShapeRange((1, 80, 5), (1, 80, 2), (1, 80, 4))


# -- cache keys ------------------------------------------------------------------------------------------
def test_engine_key_changes_with_every_input_and_only_then():
    profile = graph_profile("step", MANIFEST, ProfileConfig())
    gpu = GpuIdentity("NVIDIA H100 80GB HBM3", "9.0")
    base = dict(graph_sha256="a" * 64, tensorrt_version="10.3.0", gpu=gpu, precision="fp16", profile=profile)
    key = engine_key(**base)
    assert key == engine_key(**base) and len(key) == 24
    variants = [{"graph_sha256": "b" * 64}, {"tensorrt_version": "10.4.0"}, {"gpu": GpuIdentity("NVIDIA H200", "9.0")},
                {"gpu": GpuIdentity("NVIDIA H100 80GB HBM3", "8.9")}, {"precision": "fp32"},
                {"profile": graph_profile("step", MANIFEST, ProfileConfig(max_streams=2))}]
    keys = {engine_key(**{**base, **v}) for v in variants}
    assert key not in keys and len(keys) == len(variants)
    assert plan_name("step", "fp16", key) == f"model.step.fp16.{key}.plan"


@pytest.mark.parametrize("kwargs, match", [
    ({"precision": "int8"}, "precision='int8'"),
    ({"graph_sha256": "xyz"}, "graph_sha256='xyz'"),
])
def test_engine_key_rejects_bad_values(kwargs, match):
    base = dict(graph_sha256="a" * 64, tensorrt_version="10.3.0", gpu=GpuIdentity("g", "9.0"), precision="fp16",
                profile={})
    with pytest.raises(BuildConfigError, match=match):
        engine_key(**{**base, **kwargs})


def test_gpu_identity_rejects_a_malformed_compute_capability():
    with pytest.raises(BuildConfigError, match="compute capability '9'"):
        GpuIdentity("NVIDIA H100", "9")


# -- sanitising --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 3])
def test_sanitised_graph_matches_the_export_under_onnxruntime_cpu(sanitised_step, batch):
    original, clean = sanitised_step
    assert len(clean.graph.node) < 0.7 * len(original.graph.node)   # the shape arithmetic folded away
    assert not any(n.op_type == "Constant" for n in clean.graph.node)
    a = ort.InferenceSession(str(MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(clean.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = _feeds(a, batch, frames=5)
    together = b.run(None, feeds)
    for k in range(batch):
        alone = a.run(None, {n: v[k : k + 1] for n, v in feeds.items()})
        for x, y in zip(together, alone, strict=True):
            np.testing.assert_allclose(x[k : k + 1], y, atol=2e-5, rtol=1e-5)


def test_sanitised_graph_has_a_symbolic_batch_axis_and_a_stable_hash(sanitised_step):
    _, clean = sanitised_step
    assert all(v.type.tensor_type.shape.dim[0].dim_param == "batch" for v in [*clean.graph.input, *clean.graph.output])
    assert graph_sha256(clean) == graph_sha256(sanitise(load_graph(MODEL / "model.onnx")))


def test_every_operator_of_the_shipped_graphs_is_in_the_tensorrt_list(sanitised_step):
    assert check_ops(sanitised_step[1]) == []


def test_operator_report_names_unsupported_ops_and_restrictions():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_with_input_weight"),
         helper.make_node("StringNormalizer", ["s"], ["t"], name="strings"),
         helper.make_node("Thing", ["y"], ["z"], domain="my.ops", name="custom")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4]),
              helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 2, 1]),
              helper.make_tensor_value_info("s", TensorProto.STRING, [1])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    issues = {i.op_type: i for i in check_ops(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))}
    assert set(issues) == {"Conv", "StringNormalizer", "my.ops.Thing"}
    assert "must be a constant" in issues["Conv"].reason and issues["Conv"].first_node == "conv_with_input_weight"
    assert "not in TensorRT 10.x" in issues["StringNormalizer"].line()
    assert check_ops(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                     allow={"StringNormalizer"})[-1].op_type != "StringNormalizer"


# -- float16 -----------------------------------------------------------------------------------------------
def test_float16_step_graph_keeps_parity_under_onnxruntime_cpu(sanitised_step):
    _, clean = sanitised_step
    half = to_float16(clean)
    types = {t.data_type for t in half.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in [*half.graph.input, *half.graph.output])
    keep = {n.op_type for n in half.graph.node} & {"LayerNormalization", "Exp"}
    assert keep == {"LayerNormalization", "Exp"}   # present, and run between Casts to float32
    parity = fp16_parity(clean, half, chunks=4)
    assert parity.ok, parity.errors
    assert 0 < parity.worst < 0.05


def test_float16_parity_fails_where_float16_cannot_hold_the_weights():
    """4097 and 4096 are one value in float16 (its spacing there is 4): x*4097 - x*4096 becomes 0, not x."""
    from onnx import TensorProto, helper, numpy_helper

    weights = [numpy_helper.from_array(np.array([v], np.float32), n) for n, v in (("a", 4097.0), ("b", 4096.0))]
    graph = helper.make_graph([helper.make_node("Mul", ["x", "a"], ["p"]), helper.make_node("Mul", ["x", "b"], ["q"]),
                               helper.make_node("Sub", ["p", "q"], ["y"])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    parity = fp16_parity(model, to_float16(model), chunks=2)
    assert not parity.ok and parity.worst > 0.5


# -- manifest round trip -------------------------------------------------------------------------------------
def test_onnx_only_build_writes_a_trt_section_the_engine_accepts(built: Path):
    path = built / "model.manifest.json"
    manifest = json.loads(path.read_text())
    assert check_manifest(manifest, path) is manifest
    section = manifest["trt"]
    assert section["max_streams"] == 8 and section["engines"] == []
    assert set(section["graphs"]) == {"step", "encoder", "decoder"}
    for entry in section["graphs"].values():
        assert entry["precision"] == "fp16" and 0 < entry["fp16_error"] < 0.05
        assert graph_sha256(onnx.load(str(built / entry["file"]))) == entry["sha256"]
    most = MANIFEST["chunk_frames"] + MANIFEST["lookahead_frames"] + 1
    assert section["graphs"]["step"]["profile"]["mel"] == [[1, 80, 1], [4, 80, 2], [8, 80, most]]
    assert {k: v for k, v in manifest.items() if k != "trt"} == MANIFEST   # nothing else changed
    OnnxStepModel(path)   # the engine still loads it


def test_engine_entries_round_trip_and_the_runtime_picks_the_matching_one(built: Path):
    path = built / "model.manifest.json"
    manifest = json.loads(path.read_text())
    sha = manifest["trt"]["graphs"]["step"]["sha256"]
    engine = {"role": "step", "file": "trt/model.step.fp16.0123456789abcdef01234567.plan",
              "key": "0123456789abcdef01234567", "precision": "fp16", "tensorrt_version": "10.3.0",
              "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "graph_sha256": sha}
    other = {**engine, "key": "f" * 24, "file": "trt/other.plan", "tensorrt_version": "10.5.0"}
    new = with_section(with_section(manifest, max_streams=8, graphs=manifest["trt"]["graphs"], engines=[other],
                                    timing_cache=None),
                       max_streams=8, graphs=manifest["trt"]["graphs"], engines=[engine],
                       timing_cache="trt/timing.trt10.3.0.nvidia-h100-sm90.cache")
    again = json.loads(json.dumps(new))
    assert check_manifest(again, path)["trt"]["engines"] == [other, engine]
    assert pick_engine(again, "step", "10.3.0", ("NVIDIA H100 80GB HBM3", "9.0")) == engine
    assert pick_engine(again, "step", "10.3.0", ("NVIDIA H200", "9.0")) is None
    assert pick_engine(again, "decoder", "10.3.0", ("NVIDIA H100 80GB HBM3", "9.0")) is None


@pytest.mark.parametrize("change, exc, match", [
    (lambda t: t["engines"].append({"role": "step"}), ConfigError, r"trt.engines\[0\] must have exactly"),
    (lambda t: t["graphs"]["step"].update(file="../elsewhere.onnx"), ConfigError, "no absolute path, no '..'"),
    (lambda t: t["graphs"]["step"].update(precision="int8"), ConfigError, "precision='int8'"),
    (lambda t: t.update(max_streams=0), ConfigError, "max_streams=0"),
    (lambda t: t.update(colour="blue"), ConfigError, "unknown field 'colour'"),
    (lambda t: t.update(format_version=2), ArtifactMismatchError, "format_version=2"),
    (lambda t: t["graphs"]["step"]["profile"].update(mel=[[1, 80, 5], [1, 80, 2], [1, 80, 9]]), ConfigError,
     "min <= opt <= max"),
])
def test_manifest_checker_refuses_a_bad_trt_section(built: Path, change, exc, match):
    path = built / "model.manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest["trt"])
    with pytest.raises(exc, match=match):
        check_manifest(manifest, path)


# -- the command line ---------------------------------------------------------------------------------------
def test_build_trt_without_tensorrt_says_so_in_one_line(tmp_path: Path, monkeypatch, capsys):
    from voxflip.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)   # importing it fails, as on every machine here
    shutil.copytree(MODEL, tmp_path / "m")
    before = (tmp_path / "m" / "model.manifest.json").read_text()
    assert main(["build-trt", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "TensorRT is not installed" in err[0] and "pip install tensorrt" in err[0]
    assert (tmp_path / "m" / "model.manifest.json").read_text() == before
    assert not (tmp_path / "m" / "trt").exists()


def test_build_trt_rejects_a_folder_without_a_manifest(tmp_path: Path, capsys):
    from voxflip.cli import main

    assert main(["build-trt", str(tmp_path), "--onnx-only"]) == 2
    assert "holds 0 *.manifest.json files" in capsys.readouterr().err


# -- the backend ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("available, chain", [
    (["CPUExecutionProvider"], ["CPUExecutionProvider"]),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    (["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"],
     ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]),
    (["TensorrtExecutionProvider", "AzureExecutionProvider"], ["TensorrtExecutionProvider", "CPUExecutionProvider"]),
    ([], ["CPUExecutionProvider"]),
])
def test_provider_chain_is_tensorrt_then_cuda_then_cpu(available, chain):
    assert provider_chain(available) == chain


def test_gpu_step_model_logs_what_runs_once_and_steps_like_onnx_runtime(built: Path, caplog):
    with caplog.at_level(logging.INFO, logger="voxflip.engine.backends.trt_step"):
        model = GpuStepModel(built, allow_trt=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "voxflip.engine.backends.trt_step"]
    assert len(lines) == 1 and "step on onnxruntime [CPU]" in lines[0]
    plain = OnnxStepModel(built / "model.manifest.json")
    rng = np.random.default_rng(1)
    mel = (rng.standard_normal((2, 80)) - 5).astype(np.float32)
    noise = np.zeros_like(mel)
    a = model.step(mel, noise, model.init_state())
    b = plain.step(mel, noise, plain.init_state())
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.trt
def test_tensorrt_engine_matches_onnx_runtime(tmp_path: Path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (no machine here has it: docs/gpu.md)")
    from voxflip.trt_build.cache import detect_gpu

    if detect_gpu() is None:
        pytest.skip("no CUDA GPU visible")
    shutil.copytree(MODEL, tmp_path / "m")
    build_trt(tmp_path / "m", BuildConfig(profiles=ProfileConfig(max_streams=4)), check=check_manifest)
    manifest = json.loads((tmp_path / "m" / "model.manifest.json").read_text())
    assert len(manifest["trt"]["engines"]) == 3
    trt_model = GpuStepModel(tmp_path / "m")
    assert all(w.startswith("TensorRT") for w in trt_model.runs_on.values())
    plain = OnnxStepModel(tmp_path / "m" / "model.manifest.json")
    mel = (np.random.default_rng(0).standard_normal((2, 80)) - 5).astype(np.float32)
    a = trt_model.step(mel, np.zeros_like(mel), trt_model.init_state())
    b = plain.step(mel, np.zeros_like(mel), plain.init_state())
    np.testing.assert_allclose(a[0], b[0], atol=0.05)

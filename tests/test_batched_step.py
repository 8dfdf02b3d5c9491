"""Many streams per model call equal the same streams run one by one (ONNX Runtime CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from voxflip.engine.backends.batched import BatchedStepServer, open_batched_step  # noqa: E402
from voxflip.engine.backends.onnx_step import check_manifest  # noqa: E402
from voxflip.engine.errors import ArtifactMismatchError, ConfigError  # noqa: E402
from voxflip.trt_build.build import BuildConfig, build_trt  # noqa: E402
from voxflip.trt_build.profiles import ProfileConfig  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "voxflip" / "data" / "models" / "s2s_flow"
MANIFEST = json.loads((MODEL / "model.manifest.json").read_text())
NAMES = [s["name"] for s in MANIFEST["state"]]
SHAPES = [tuple(s["shape"]) for s in MANIFEST["state"]]


@pytest.fixture(scope="module")
def batch_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("batched") / "model"
    shutil.copytree(MODEL, folder)
    build_trt(folder, BuildConfig(precision="fp32", profiles=ProfileConfig(max_streams=8), onnx_only=True),
              say=lambda line: None, check=check_manifest)
    return folder / "model.manifest.json"


class Separate:
    """One stream alone on the exported (batch 1) graph."""

    session = None

    def __init__(self) -> None:
        if Separate.session is None:
            Separate.session = ort.InferenceSession(str(MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
        self.state = {n: np.zeros(s, np.float32) for n, s in zip(NAMES, SHAPES, strict=True)}

    def step(self, feeds):
        out = self.session.run(None, {**feeds, **{f"state_in.{n}": v for n, v in self.state.items()}})
        self.state = dict(zip(NAMES, out[4:], strict=True))
        return out[:4]


def _chunk(rng, frames: int) -> dict[str, np.ndarray]:
    return {"mel": (rng.standard_normal((1, 80, frames)) - 5).astype(np.float32),
            "noise": rng.standard_normal((1, 80, frames)).astype(np.float32)}


def test_batched_streams_equal_separate_streams_under_onnxruntime(batch_model: Path):
    server = open_batched_step(batch_model, max_streams=6, allow_trt=False)
    rng = np.random.default_rng(0)
    streams = {server.open(): Separate() for _ in range(5)}
    for chunk in range(5):
        if chunk == 2:   # one stream leaves, a new one takes its slot and must start from zero state
            gone = sorted(streams)[1]
            server.close(gone)
            del streams[gone]
            streams[server.open()] = Separate()
        frames = 5 if chunk == 0 else 2
        feeds = {s: _chunk(rng, frames) for s in streams}
        calls = server.calls
        together = server.step(feeds)
        assert server.calls == calls + 1
        for s, alone in streams.items():
            for x, y in zip(together[s], alone.step(feeds[s]), strict=True):
                np.testing.assert_allclose(x, y, atol=1e-5, rtol=1e-5, err_msg=f"stream {s}, chunk {chunk}")
    for s, alone in streams.items():
        for name in NAMES:
            np.testing.assert_allclose(server.state(s)[name], alone.state[name], atol=1e-5)


def test_streams_with_other_chunk_lengths_are_grouped_into_their_own_calls(batch_model: Path):
    server = open_batched_step(batch_model, max_streams=3, allow_trt=False)
    a, b, c = server.open(), server.open(), server.open()
    rng = np.random.default_rng(1)
    feeds = {a: _chunk(rng, 2), b: _chunk(rng, 3), c: _chunk(rng, 2)}
    out = server.step(feeds)
    assert server.calls == 2
    for s in (a, b, c):
        np.testing.assert_allclose(out[s][0], Separate().step(feeds[s])[0], atol=1e-5)


def test_reset_restarts_one_stream_only(batch_model: Path):
    server = open_batched_step(batch_model, max_streams=2, allow_trt=False)
    a, b = server.open(), server.open()
    rng = np.random.default_rng(2)
    server.step({a: _chunk(rng, 2), b: _chunk(rng, 2)})
    before_b = server.state(b)
    server.reset(a)
    assert all(not v.any() for v in server.state(a).values())
    assert all(np.array_equal(before_b[n], server.state(b)[n]) for n in NAMES)


def test_batched_server_refuses_a_fixed_batch_graph_and_too_many_streams(batch_model: Path):
    session = ort.InferenceSession(str(MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
    with pytest.raises(ArtifactMismatchError, match="fixed batch of 1"):
        BatchedStepServer(session, NAMES, SHAPES, max_streams=4)
    server = open_batched_step(batch_model, max_streams=1, allow_trt=False)
    server.open()
    with pytest.raises(ConfigError, match="all 1 stream slots are in use"):
        server.open()
    with pytest.raises(ValueError, match="stream 7 is not open"):
        server.step({7: _chunk(np.random.default_rng(0), 2)})


def test_open_batched_step_needs_the_build_trt_graphs(tmp_path: Path):
    shutil.copytree(MODEL, tmp_path / "m")
    with pytest.raises(ArtifactMismatchError, match="voxflip build-trt"):
        open_batched_step(tmp_path / "m" / "model.manifest.json", max_streams=4)

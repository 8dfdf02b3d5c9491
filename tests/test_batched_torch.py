"""The PyTorch batched flow step: equal to the exported step graph stream by stream; the GPU check at a tiny size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

MODEL = Path(__file__).resolve().parents[1] / "voxflip" / "data" / "models" / "s2s_flow"
MANIFEST = json.loads((MODEL / "model.manifest.json").read_text())

def _trainer_model(residual: bool):
    from voxflip.trainer.models.to_speech_flow import ToSpeechFlow, ToSpeechFlowConfig

    torch.manual_seed(3)
    model = ToSpeechFlow(ToSpeechFlowConfig(hidden=16, encoder_layers=3, flow_blocks=2, flow_hidden=8, flow_layers=2,
                                            duration_hidden=8, lookahead=2, noise_scale=0.5, residual=residual))
    with torch.no_grad():   # away from the identity the fresh model starts at
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        model.set_mel_stats(np.full(80, -5.0), np.full(80, 2.0))
    return model.eval()


@pytest.mark.parametrize("residual", [False, True])
def test_torch_step_net_equals_the_exported_step_graph(residual: bool):
    from voxflip.trainer.export import torch_step_reference
    from voxflip.trt_build.torch_server import FlowStepNet, TorchBatchedServer

    model = _trainer_model(residual)
    net = FlowStepNet(model.cfg.to_dict())
    net.load_trainer_state(model.state_dict())
    rng = np.random.default_rng(4)
    streams, chunk, chunks = 3, 2, 4
    mel = (rng.standard_normal((streams, 80, chunk * chunks)) - 5).astype(np.float32)
    noise = rng.standard_normal((streams, 80, chunk * chunks)).astype(np.float32)
    server = TorchBatchedServer(net, streams, chunk)
    assert server.graph is None   # CPU: no CUDA graph
    together = np.concatenate([server.step(torch.from_numpy(mel[:, :, i : i + chunk]),
                                           torch.from_numpy(noise[:, :, i : i + chunk]))[0].numpy()
                               for i in range(0, chunk * chunks, chunk)], axis=2)
    for s in range(streams):
        alone = torch_step_reference(model, mel[s : s + 1], noise[s : s + 1], chunk)
        np.testing.assert_allclose(together[s : s + 1], alone, atol=1e-4, rtol=1e-4, err_msg=f"stream {s}")


def test_gpu_check_runs_on_cpu_at_a_tiny_size(tmp_path: Path, capsys):
    from voxflip.trt_build.gpu_check import main

    out = tmp_path / "gpu_check.json"
    assert main(["--device", "cpu", "--streams", "1,2", "--chunks", "10", "--warmup", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["streams"] for r in result["results"]] == [1, 2]
    assert result["chunk_ms"] == 20.0 and result["cuda_graph"] is False
    row = result["results"][0]
    assert row["outputs_finite"] and 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert result["model"]["parameters"] > 1_000_000   # the shipped model's shape


def test_gpu_check_module_imports_only_torch_and_numpy():
    import ast

    root = Path(__file__).resolve().parents[1] / "trt_build"
    for name in ("gpu_check.py", "torch_server.py"):
        tree = ast.parse((root / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [] if node.level else [(node.module or "").split(".")[0]]
            else:
                continue
            allowed = {"torch", "numpy", "__future__", "argparse", "json", "math", "platform", "sys", "time",
                       "datetime", "pathlib", "typing"}
            assert set(mods) <= allowed, f"{name} imports {mods}"


@pytest.mark.gpu
def test_cuda_graph_server_equals_eager_on_the_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU (torch.cuda.is_available() is False)")
    from voxflip.trt_build.torch_server import FlowStepNet, TorchBatchedServer, random_weights

    net = random_weights(FlowStepNet(MANIFEST["model_config"]))
    graph = TorchBatchedServer(net, 8, 2, device="cuda", cuda_graph=True)
    eager = TorchBatchedServer(net, 8, 2, device="cuda", cuda_graph=False)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        mel, noise = torch.randn(8, 80, 2, generator=gen) - 5, torch.randn(8, 80, 2, generator=gen)
        a = graph.step(mel, noise)[0].cpu()
        b = eager.step(mel, noise)[0].cpu()
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)

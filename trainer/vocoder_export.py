"""`voxflip export-vocoder CHECKPOINT -o vocoder.onnx`: a trained neural vocoder as a streaming ONNX graph.

The graph is the generator's streaming step with its state as explicit tensors::

    (mel [1, 80, n], f0 [1, n]?, noise [1, 1, n * hop]?, state_in.*) -> (audio [1, 1, n * hop], state_out.*)

``f0`` is an input only for F0-conditioned generators and ``noise`` only for those that read it
(Parallel WaveGAN, harmonic-plus-noise).
Output block ``j`` is the audio of frame ``j - lookahead_frames``. ``vocoder.manifest.json``
beside it records what :mod:`voxflip.engine.vocoder.neural` checks on load: format, opset, the
mel setup, the lookahead, which inputs the graph takes, the state tensors' names and shapes, and
the generator's configuration with its hash. The export is checked against torch on a streamed
random input before the manifest is written (parity to 1e-4).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from voxflip.engine.errors import ArtifactMismatchError, ConfigError
from voxflip.engine.vocoder.neural import FORMAT_VERSION, MANIFEST_SUFFIX

from .export import onnx_output
from .models.vocoder import Generator, VocoderConfig, build_generator
from .train import read_checkpoint

OPSET = 17


class _StepGraph(nn.Module):
    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator
        self.uses_f0 = generator.uses_f0
        self.uses_noise = generator.uses_noise

    def forward(self, mel: Tensor, *rest: Tensor):
        k = 0
        f0 = noise = None
        if self.uses_f0:
            f0, k = rest[0], 1
        if self.uses_noise:
            noise, k = rest[k], k + 1
        if f0 is None:
            f0 = torch.zeros(mel.shape[0], mel.shape[2])
        if noise is None:
            noise = torch.zeros(mel.shape[0], 1, mel.shape[2] * self.generator.cfg.hop_samples)
        audio, state = self.generator.step(mel, f0, noise, list(rest[k:]))
        return (audio, *state)


def load_generator(path: str | Path) -> tuple[Generator, dict]:
    """A vocoder checkpoint written by ``voxflip train-vocoder`` -> its generator (eval mode) and payload."""
    payload = read_checkpoint(path, needs=("generator", "model_config"))
    if payload.get("kind") != "vocoder":
        raise ConfigError(f"checkpoint {str(path)!r} is not a vocoder checkpoint (voxflip train-vocoder writes those)")
    cfg = VocoderConfig.from_dict(payload["model_config"], f"checkpoint {path}: model_config")
    generator = build_generator(cfg)
    try:
        generator.load_state_dict(payload["generator"])
    except RuntimeError as exc:
        raise ConfigError(f"checkpoint {str(path)!r}: its weights do not fit its model_config: "
                          f"{str(exc).splitlines()[0][:200]}") from None
    return generator.eval(), payload


def export_vocoder(checkpoint: str | Path, output: str | Path, *, check_frames: int = 23) -> Path:
    """Write ``output`` (``.onnx``) and its manifest; returns the manifest path."""
    generator, payload = load_generator(checkpoint)
    generator.remove_weight_norm()
    cfg = generator.cfg
    mel_cfg = cfg.mel()
    output = onnx_output(output)
    graph = _StepGraph(generator).eval()
    shapes = generator.state_shapes()
    names = [f"s{i}" for i in range(len(shapes))]
    state = generator.init_states(1)
    n = 4
    example: list[Tensor] = [torch.randn(1, cfg.n_mels, n)]
    inputs = ["mel"]
    dynamic = {"mel": {2: "frames"}, "audio": {2: "samples"}}
    if graph.uses_f0:
        example.append(torch.full((1, n), 120.0))
        inputs.append("f0")
        dynamic["f0"] = {1: "frames"}
    if graph.uses_noise:
        example.append(torch.randn(1, 1, n * cfg.hop_samples))
        inputs.append("noise")
        dynamic["noise"] = {2: "samples"}
    tmp = output.with_name(f".{output.name}.tmp")
    with torch.no_grad():
        torch.onnx.export(graph, (*example, *state), str(tmp), input_names=[*inputs, *[f"state_in.{m}" for m in names]],
                          output_names=["audio", *[f"state_out.{m}" for m in names]], dynamic_axes=dynamic,
                          opset_version=OPSET, dynamo=False)
    _check_parity(graph, tmp, inputs, names, check_frames)
    tmp.replace(output)
    model_config = cfg.to_dict()
    manifest = {
        "format_version": FORMAT_VERSION, "model": "vocoder", "onnx_opset": OPSET,
        "files": {"graph": output.name},
        "mel": asdict(mel_cfg), "kind": cfg.kind, "variant": cfg.variant,
        "lookahead_frames": cfg.lookahead_frames, "inputs": inputs,
        "state": [{"name": m, "shape": [c, t]} for m, (c, t) in zip(names, shapes, strict=True)],
        "model_config": model_config,
        "config_hash": hashlib.sha256(json.dumps(model_config, sort_keys=True).encode()).hexdigest()[:16],
        "trained_steps": int(payload.get("step", 0)),
    }
    path = output.with_name(output.stem + MANIFEST_SUFFIX)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def _check_parity(graph: _StepGraph, path: Path, inputs: list[str], names: list[str], frames: int) -> None:
    """The exported graph, streamed in uneven chunks, against the torch generator on the whole input."""
    from voxflip.engine.backends.runtime import import_onnxruntime

    ort = import_onnxruntime("vocoder export")
    cfg = graph.generator.cfg
    gen = torch.Generator().manual_seed(0)
    mel = torch.randn(1, cfg.n_mels, frames, generator=gen) - 4.0
    f0 = torch.where(torch.rand(1, frames, generator=gen) > 0.3, 100 + 200 * torch.rand(1, frames, generator=gen), 0.0)
    noise = torch.randn(1, 1, frames * cfg.hop_samples, generator=gen)
    with torch.no_grad():
        whole = graph.generator(mel, f0, noise).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state = {f"state_in.{m}": t.numpy() for m, t in zip(names, graph.generator.init_states(1), strict=True)}
    pieces, start, hop = [], 0, cfg.hop_samples
    for size in (1, 2, 5, 3, frames):
        end = min(frames, start + size)
        if end <= start:
            break
        feed = {"mel": mel[:, :, start:end].numpy(), **state}
        if "f0" in inputs:
            feed["f0"] = f0[:, start:end].numpy()
        if "noise" in inputs:
            feed["noise"] = noise[:, :, start * hop : end * hop].numpy()
        out = session.run(None, feed)
        pieces.append(out[0])
        state = {f"state_in.{m}": v for m, v in zip(names, out[1:], strict=True)}
        start = end
    streamed = np.concatenate(pieces, axis=2)
    err = float(np.max(np.abs(streamed - whole)))
    if not err < 1e-4:
        path.unlink(missing_ok=True)
        raise ArtifactMismatchError(f"the exported vocoder streamed differs from torch by {err:.2e} (allowed 1e-4)")

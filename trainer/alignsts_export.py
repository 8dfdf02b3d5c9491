"""`voxflip export-alignsts CHECKPOINT -o alignsts.onnx`: a trained AlignSTS as one ONNX graph.

The graph converts one utterance::

    (content [1, 512, N], content_len [1], f0_bins [1, T], t_len [1], timbre_mel [1, 80, M], timbre_len [1],
     t_offset [1], n_offset [1], ratio [1], noise [steps, 1, 80, T]) -> (mel [1, 80, T], codes [1, T], attention [1, T, N])

``t_offset``/``n_offset`` (float) place a slice of a stream on its absolute frames (zeros for a
whole utterance; :mod:`voxflip.engine.converters.alignsts_context` says which slice gives which
output frames exactly, for models with absolute windows); ``ratio`` is the windows' slope in
content frames per target frame (``N / T`` for a whole utterance). ``noise`` feeds the diffusion decoder (its start and each step's draw; zeros give the
posterior means) and is absent for the ``fs2`` decoder. ``alignsts.manifest.json`` beside it
records what a runner needs and checks: format, opset, the mel setup, the content features,
the F0 classes, the decoder and its steps, the window rule, and the model configuration with
its hash. Before the manifest is written the graph is run by ONNX Runtime on an input of
other lengths than the one it was traced with and compared with torch (to 1e-4).

A model that streams by step (AlignSTS with absolute windows and the diffusion decoder:
:mod:`.models.alignsts_step`) also gets its three step graphs, ``alignsts.content.onnx``,
``alignsts.timbre.onnx`` and ``alignsts.step.onnx``, named in the manifest's ``step`` section with
their delays and the shapes of the state each carries. Each is run by ONNX Runtime with a chunk
of another length and a state that is not zero, and compared with torch, before it is named.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from voxflip.engine.converters.alignsts_context import AlignSTSContext
from voxflip.engine.converters.alignsts_model import MODEL_KIND
from voxflip.engine.errors import ArtifactMismatchError
from voxflip.engine.features.mel import MelConfig

from .alignsts_train import load_alignsts
from .data.content import CONTENT_DIM, CONTENT_FRAME_S
from .export import onnx_output
from .models.alignsts import AlignSTS
from .models.alignsts_step import ContentStep, TargetStep, TimbreGraph, streams_by_step

OPSET = 17
FORMAT_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"


class _Graph(nn.Module):
    def __init__(self, model: AlignSTS) -> None:
        super().__init__()
        self.model = model

    def forward(self, content: Tensor, content_len: Tensor, f0_bins: Tensor, t_len: Tensor, timbre_mel: Tensor,
                timbre_len: Tensor, t_offset: Tensor, n_offset: Tensor, ratio: Tensor, *extra: Tensor):
        named = dict(zip(_extra_inputs(self.model.cfg), extra, strict=True))
        kwargs = {"target_mel": named["target_mel"]} if "target_mel" in named else {}
        out = self.model.infer(content, content_len, f0_bins, t_len, timbre_mel, timbre_len, noise=named.get("noise"),
                               t_offset=t_offset, n_offset=n_offset, ratio=ratio, **kwargs)
        return out["mel"], out["codes"], out["attention"]


def _extra_inputs(cfg) -> list[str]:
    """The inputs after ``ratio``: the diffusion decoder's ``noise``, a SpeechSplit's ``target_mel`` (w/ SE)."""
    extra = ["noise"] if cfg.decoder == "diffusion" else []
    if cfg.architecture == "speechsplit2" and cfg.ss_rhythm_input == "target":
        extra.append("target_mel")
    return extra


def _example(model: AlignSTS, t: int, n: int, m: int, seed: int) -> tuple[Tensor, ...]:
    cfg = model.cfg
    gen = torch.Generator().manual_seed(seed)
    items: list[Tensor] = [
        torch.randn(1, cfg.content_dim, n, generator=gen), torch.tensor([n]),
        torch.randint(0, cfg.pitch_bins, (1, t), generator=gen), torch.tensor([t]),
        torch.randn(1, cfg.n_mels, m, generator=gen) - 4.0, torch.tensor([m]),
        torch.tensor([float(seed * 7)]), torch.tensor([float(seed * 2)]), torch.tensor([n / t]),
    ]
    if cfg.decoder == "diffusion":
        items.append(torch.randn(cfg.diffusion_steps, 1, cfg.n_mels, t, generator=gen))
    if "target_mel" in _extra_inputs(cfg):
        items.append(torch.randn(1, cfg.n_mels, t, generator=gen) - 4.0)
    return tuple(items)


INPUTS = ["content", "content_len", "f0_bins", "t_len", "timbre_mel", "timbre_len", "t_offset", "n_offset", "ratio"]


def export_alignsts(checkpoint: str | Path, output: str | Path) -> Path:
    """Write ``output`` (``.onnx``) and its manifest from a ``train-alignsts`` checkpoint; returns the manifest."""
    model, payload = load_alignsts(checkpoint)
    return export_model(model, output, trained_steps=int(payload.get("step", 0)))


def export_model(model: AlignSTS, output: str | Path, *, trained_steps: int = 0) -> Path:
    output = onnx_output(output)
    cfg = model.cfg
    graph = _Graph(model.eval()).eval()
    example = _example(model, 40, 12, 30, seed=0)
    inputs = INPUTS + _extra_inputs(cfg)
    dynamic = {"content": {2: "n"}, "f0_bins": {1: "t"}, "timbre_mel": {2: "m"}, "mel": {2: "t"}, "codes": {1: "t"},
               "attention": {1: "t", 2: "n"}}
    if "noise" in inputs:
        dynamic["noise"] = {3: "t"}
    if "target_mel" in inputs:
        dynamic["target_mel"] = {2: "t"}
    tmp = output.with_name(f".{output.name}.tmp")
    with torch.no_grad():
        torch.onnx.export(graph, example, str(tmp), input_names=inputs, output_names=["mel", "codes", "attention"],
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    _check_parity(graph, tmp, inputs)
    tmp.replace(output)
    mel_cfg = MelConfig.for_to_singing()
    model_config = cfg.to_dict()
    manifest = {
        "format_version": FORMAT_VERSION, "model": MODEL_KIND, "onnx_opset": OPSET,
        "files": {"graph": output.name}, "inputs": inputs,
        "mel": asdict(mel_cfg),
        "content": {"kind": "whisper-base-encoder", "dim": CONTENT_DIM, "frame_s": CONTENT_FRAME_S},
        "f0": {"bins": cfg.pitch_bins, "min_hz": cfg.f0_min_hz, "max_hz": cfg.f0_max_hz, "scale": "mel"},
        "decoder": cfg.decoder, "diffusion_steps": cfg.diffusion_steps if cfg.decoder == "diffusion" else 0,
        "window_mode": cfg.window_mode,
        "stream_context": asdict(AlignSTSContext.of(model_config)) if cfg.window_mode == "absolute" else None,
        "model_config": model_config,
        "config_hash": hashlib.sha256(json.dumps(model_config, sort_keys=True).encode()).hexdigest()[:16],
        "trained_steps": trained_steps,
    }
    if streams_by_step(model):
        manifest["step"] = export_step_graphs(model, output)
    path = output.with_name(output.stem + MANIFEST_SUFFIX)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def _check_parity(graph: _Graph, path: Path, inputs: list[str]) -> None:
    """ONNX Runtime against torch on lengths other than the traced ones."""
    from voxflip.engine.backends.runtime import import_onnxruntime

    ort = import_onnxruntime("alignsts export")
    example = _example(graph.model, 73, 19, 41, seed=1)
    with torch.no_grad():
        want = [t.numpy() for t in graph(*example)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: t.numpy() for name, t in zip(inputs, example, strict=True)})
    err = float(np.max(np.abs(got[0] - want[0])))
    codes_equal = bool(np.array_equal(got[1], want[1]))
    if not (err < 1e-4 and codes_equal):
        path.unlink(missing_ok=True)
        raise ArtifactMismatchError(f"the exported AlignSTS differs from torch: mel by {err:.2e} (allowed 1e-4), "
                                    f"rhythm codes {'equal' if codes_equal else 'not equal'}")


# -- step graphs ----------------------------------------------------------------------------------
def _states(shapes: list[tuple[int, ...]], gen: torch.Generator) -> list[Tensor]:
    return [torch.randn(*shape, generator=gen) * 0.5 for shape in shapes]


def _step_example(graph: nn.Module, c: int, seed: int) -> tuple[Tensor, ...]:
    """Inputs of a step graph: a chunk of ``c`` frames (rows, or reference frames), somewhere in a stream."""
    cfg = graph.model.cfg
    gen = torch.Generator().manual_seed(seed)
    if isinstance(graph, ContentStep):
        return (torch.randn(1, cfg.content_dim, c, generator=gen), torch.tensor([float(3 + seed)]),
                torch.tensor([float(5 + c + seed)]), *_states(graph.state_shapes(), gen))
    if isinstance(graph, TimbreGraph):
        return (torch.randn(1, cfg.n_mels, c, generator=gen) - 4.0,)
    first, ratio = 200 + 17 * seed, 0.26
    keys = 2 * cfg.window_frames + int(c * ratio) + 9
    noise = (torch.randn(cfg.diffusion_steps, 1, cfg.n_mels, c, generator=gen),) if _has_noise(graph) else ()
    return (torch.randint(0, cfg.pitch_bins, (1, c), generator=gen), *noise,
            torch.randn(1, keys, cfg.hidden, generator=gen), torch.tensor([float(first * ratio - cfg.window_frames
                                                                                 - 12)]),
            torch.tensor([float(first)]), torch.tensor([float(first + 40)]), torch.tensor([1e6]),
            torch.tensor([ratio]), torch.randn(1, cfg.hidden, generator=gen), *_states(graph.state_shapes(), gen))


#: each step graph: its file's suffix, inputs before the state, outputs before the state, dynamic axes
_STEP_GRAPHS = {
    "content": (".content.onnx", ["content", "first", "total"], ["rows"],
                {"content": {2: "c"}, "rows": {1: "c"}}),
    "timbre": (".timbre.onnx", ["timbre_mel"], ["timbre"], {"timbre_mel": {2: "m"}}),
    "step": (".step.onnx", ["f0_bins", "noise", "keys", "key_first", "first", "total", "n_total", "ratio", "timbre"],
             ["mel"], {"f0_bins": {1: "c"}, "noise": {3: "c"}, "keys": {1: "k"}, "mel": {2: "c"}}),
}


def _has_noise(graph: nn.Module) -> bool:
    """Whether a step graph takes the diffusion decoder's noise (the fs2 decoder's takes none)."""
    return isinstance(graph, TargetStep) and graph.diffusion


class _WithoutNoise(nn.Module):
    """The fs2 decoder's step graph: :class:`TargetStep` without the ``noise`` input."""

    def __init__(self, step: TargetStep) -> None:
        super().__init__()
        self.step, self.model = step, step.model

    def state_shapes(self) -> list[tuple[int, ...]]:
        return self.step.state_shapes()

    def forward(self, f0_bins: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        return self.step(f0_bins, None, *rest)


def export_step_graphs(model: AlignSTS, output: Path) -> dict:
    """Write the step graphs beside ``output``; returns the manifest's ``step`` section."""
    model = model.eval()
    target = TargetStep(model).eval()
    graphs = {"content": ContentStep(model).eval(), "timbre": TimbreGraph(model).eval(),
              "step": target if target.diffusion else _WithoutNoise(target).eval()}
    files = {}
    for role, graph in graphs.items():
        suffix, inputs, outputs, dynamic = _STEP_GRAPHS[role]
        if role == "step" and not target.diffusion:
            inputs = [name for name in inputs if name != "noise"]
            dynamic = {k: v for k, v in dynamic.items() if k != "noise"}
        shapes = graph.state_shapes() if hasattr(graph, "state_shapes") else []
        states_in, states_out = [f"state_{i}" for i in range(len(shapes))], [f"next_{i}" for i in range(len(shapes))]
        path = output.with_name(output.stem + suffix)
        tmp = path.with_name(f".{path.name}.tmp")
        with torch.no_grad():
            torch.onnx.export(graph, _step_example(graph, 6, seed=0), str(tmp), input_names=inputs + states_in,
                              output_names=outputs + states_out, dynamic_axes=dynamic, opset_version=OPSET,
                              dynamo=False)
        _check_step_parity(graph, tmp, inputs + states_in, role)
        tmp.replace(path)
        files[role] = path.name
    content = graphs["content"]
    return {"files": files, "delay": target.delay, "content_delay": content.delay,
            "noise_delays": target.noise_delays, "query_span": list(target.query_span()),
            "state": [list(s) for s in target.state_shapes()],
            "content_state": [list(s) for s in content.state_shapes()]}


def _check_step_parity(graph: nn.Module, path: Path, inputs: list[str], role: str) -> None:
    """ONNX Runtime against torch on chunks of other lengths than the traced one, the state included."""
    from voxflip.engine.backends.runtime import import_onnxruntime

    ort = import_onnxruntime("alignsts export")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for c in (1, 11):
        example = _step_example(graph, c, seed=c)
        with torch.no_grad():
            want = graph(*example)
        want = [t.numpy() for t in (want if isinstance(want, tuple) else (want,))]
        got = session.run(None, {name: t.numpy() for name, t in zip(inputs, example, strict=True)})
        err = max(float(np.max(np.abs(g - w))) if w.size else 0.0 for g, w in zip(got, want, strict=True))
        if err >= 1e-4:
            path.unlink(missing_ok=True)
            raise ArtifactMismatchError(f"the exported AlignSTS {role} graph differs from torch by {err:.2e} on "
                                        f"{c}-frame chunks (allowed 1e-4)")

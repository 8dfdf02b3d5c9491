"""`voxflip export CHECKPOINT -o model.onnx`: the S2S flow model as a streaming ONNX graph.

``model.onnx`` takes one chunk of singing log-mel frames, the same number of standard
normal noise frames and the streaming state, and returns the speech log-mel frames
(the ``nodur`` conversion), the prior mean/log-scale and log-durations of the same
frames (for ``dur``), and the new state::

    (mel [1, 80, n], noise [1, 80, n], state_in.*) -> (speech_mel [1, 80, n], mu, logs, log_dur, state_out.*)

Outputs lag inputs by ``lookahead_frames`` (the encoder's lookahead, done by delay).
``model.decoder.onnx`` is the flow alone, ``(z [1, 80, m], state_in.flow*) ->
(speech_mel, state_out.flow*)``, which ``dur`` runs on the prior expanded by the
predicted durations; ``model.encoder.onnx`` is the step without the flow,
``(mel, state_in.enc*, state_in.dur*) -> (mu, logs, log_dur, state_out.enc*, state_out.dur*)``,
so ``dur`` does not invert the flow on frames it then throws away. The three graphs share
one weights file, ``model.weights`` (ONNX external data): a weight two graphs hold is
stored once.
``model.manifest.json`` records what the engine checks on load:
format version, opset, the mel setup, chunking, lookahead, noise scale, the state
tensors' names and shapes, and a hash of the model configuration.
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

from .models.to_speech_flow import ToSpeechFlow

FORMAT_VERSION = 1
OPSET = 17


def _has_skip_state(model: ToSpeechFlow) -> bool:
    """A residual model delays its input mel by the lookahead (to meet the encoder's output) in a state tensor."""
    return model.cfg.residual and model.cfg.lookahead > 0


def _delay(mel: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """``mel`` ``lookahead`` frames late: the first frames come from ``state`` (the last frames before)."""
    if not state:
        return mel, []
    full = torch.cat([state[0], mel], dim=2)
    look = state[0].shape[2]
    return full[:, :, :-look], [full[:, :, -look:]]


def _split_flow_state(model: ToSpeechFlow, flat: list[Tensor]) -> list[list[Tensor]]:
    flow_state, k = [], 0
    for coupling in model.flow.couplings:
        n = len(coupling.net.convs)
        flow_state.append(flat[k : k + n])
        k += n
    return flow_state


def _output_mel(model: ToSpeechFlow, x: Tensor, skip: Tensor | None) -> Tensor:
    """Un-normalised speech mel from the flow's output; a residual model adds the (un-normalised)
    singing frame: ``denormalise(x + normalise(skip)) == x * std + skip``."""
    return model.denormalise(x) if skip is None else x * model.mel_std + skip


class _StepGraph(nn.Module):
    """The whole streaming step with flat tensor state (what the ONNX graph holds)."""

    def __init__(self, model: ToSpeechFlow) -> None:
        super().__init__()
        self.model = model
        self.n_enc = len(model.encoder.blocks)
        self.n_flow = sum(len(c.net.convs) for c in model.flow.couplings)

    def forward(self, mel: Tensor, noise: Tensor, *state: Tensor):
        m = self.model
        enc_state = list(state[: self.n_enc])
        dur_state = list(state[self.n_enc : self.n_enc + 2])
        flow_state = _split_flow_state(m, list(state[self.n_enc + 2 : self.n_enc + 2 + self.n_flow]))
        skip_state = list(state[self.n_enc + 2 + self.n_flow :])
        h, enc_state = m.encoder.step(m.normalise(mel), enc_state)
        mu, logs = m.prior(h).split([m.cfg.n_mels, m.cfg.n_mels], dim=1)
        log_dur, dur_state = m.duration.step(h, dur_state)
        z = mu + torch.exp(logs) * noise * m.cfg.noise_scale
        x, flow_state = m.flow.inverse_step(z, flow_state)
        skip, skip_state = _delay(mel, skip_state) if m.cfg.residual else (None, [])
        out = [_output_mel(m, x, skip), mu, logs, log_dur, *enc_state, *dur_state]
        for caches in flow_state:
            out.extend(caches)
        return (*out, *skip_state)


class _EncoderGraph(nn.Module):
    """The step without the flow: prior and durations only (what ``dur`` needs per singing chunk);
    a residual model also returns its input mel delayed to meet them (``skip``)."""

    def __init__(self, model: ToSpeechFlow) -> None:
        super().__init__()
        self.model = model
        self.n_enc = len(model.encoder.blocks)

    def forward(self, mel: Tensor, *state: Tensor):
        m = self.model
        h, enc_state = m.encoder.step(m.normalise(mel), list(state[: self.n_enc]))
        mu, logs = m.prior(h).split([m.cfg.n_mels, m.cfg.n_mels], dim=1)
        log_dur, dur_state = m.duration.step(h, list(state[self.n_enc : self.n_enc + 2]))
        if not m.cfg.residual:
            return (mu, logs, log_dur, *enc_state, *dur_state)
        skip, skip_state = _delay(mel, list(state[self.n_enc + 2 :]))
        return (mu, logs, log_dur, skip, *enc_state, *dur_state, *skip_state)


class _DecoderGraph(nn.Module):
    """The flow's inverse on latent frames; a residual model takes the singing frames to add (``skip``)."""

    def __init__(self, model: ToSpeechFlow) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: Tensor, *inputs: Tensor):
        m = self.model
        skip, state = (inputs[0], list(inputs[1:])) if m.cfg.residual else (None, list(inputs))
        x, flow_state = m.flow.inverse_step(z, _split_flow_state(m, state))
        out = [_output_mel(m, x, skip)]
        for caches in flow_state:
            out.extend(caches)
        return tuple(out)


def state_spec(model: ToSpeechFlow) -> tuple[list[str], list[list[int]]]:
    """Names and shapes of the step graph's state tensors (batch 1), in input order."""
    names, shapes = [], []
    for i, cache in enumerate(model.encoder.init_state()):
        names.append(f"enc{i}")
        shapes.append(list(cache.shape))
    for i, cache in enumerate(model.duration.init_state()):
        names.append(f"dur{i}")
        shapes.append(list(cache.shape))
    for b, caches in enumerate(model.flow.init_state()):
        for i, cache in enumerate(caches):
            names.append(f"flow{b}_{i}")
            shapes.append(list(cache.shape))
    if _has_skip_state(model):
        names.append("skip")
        shapes.append([1, model.cfg.n_mels, model.cfg.lookahead])
    return names, shapes


def config_hash(model: ToSpeechFlow) -> str:
    text = json.dumps({"model": model.cfg.to_dict(), "mel": asdict(model.cfg.mel)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def onnx_output(output: str | Path) -> Path:
    """An exporter's ``-o`` path: refused in one line unless it ends in ``.onnx``; its folder made."""
    output = Path(output)
    if output.suffix != ".onnx":
        raise ConfigError(f"-o {str(output)!r} must end in .onnx")
    output.parent.mkdir(parents=True, exist_ok=True)
    return output


def export_onnx(model: ToSpeechFlow, output: str | Path, *, chunk_frames: int = 2) -> Path:
    """Write ``output`` (the step graph), ``*.decoder.onnx`` and ``*.manifest.json``; returns the manifest."""
    output = onnx_output(output)
    model = model.eval()
    model.flow.refresh_inverse()
    names, shapes = state_spec(model)
    n_mels = model.cfg.n_mels
    state = [torch.zeros(s) for s in shapes]
    step = _StepGraph(model).eval()  # a wrapper in training mode would put the flow back into training
    mel = torch.randn(1, n_mels, 4) - 5.0
    noise = torch.randn(1, n_mels, 4)
    inputs = ["mel", "noise", *[f"state_in.{n}" for n in names]]
    outputs = ["speech_mel", "mu", "logs", "log_dur", *[f"state_out.{n}" for n in names]]
    dynamic = {"mel": {2: "frames"}, "noise": {2: "frames"}, "speech_mel": {2: "frames"}, "mu": {2: "frames"},
               "logs": {2: "frames"}, "log_dur": {1: "frames"}}
    torch.onnx.export(step, (mel, noise, *state), str(output), input_names=inputs, output_names=outputs,
                      dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    flow_names = [n for n in names if n.startswith("flow")]
    flow_state = [s for n, s in zip(names, state, strict=True) if n.startswith("flow")]
    decoder_path = output.with_suffix(".decoder.onnx")
    model.flow.refresh_inverse()
    residual = model.cfg.residual
    skip_in = (["skip"], (torch.randn(1, n_mels, 3) - 5.0,)) if residual else ([], ())
    torch.onnx.export(_DecoderGraph(model).eval(), (torch.randn(1, n_mels, 3), *skip_in[1], *flow_state),
                      str(decoder_path),
                      input_names=["z", *skip_in[0], *[f"state_in.{n}" for n in flow_names]],
                      output_names=["speech_mel", *[f"state_out.{n}" for n in flow_names]],
                      dynamic_axes={"z": {2: "frames"}, "speech_mel": {2: "frames"},
                                    **({"skip": {2: "frames"}} if residual else {})},
                      opset_version=OPSET, dynamo=False)
    encoder_names = [n for n in names if not n.startswith("flow")]
    encoder_state = [s for n, s in zip(names, state, strict=True) if not n.startswith("flow")]
    encoder_path = output.with_suffix(".encoder.onnx")
    skip_out = ["skip"] if residual else []
    torch.onnx.export(_EncoderGraph(model).eval(), (mel, *encoder_state), str(encoder_path),
                      input_names=["mel", *[f"state_in.{n}" for n in encoder_names]],
                      output_names=["mu", "logs", "log_dur", *skip_out, *[f"state_out.{n}" for n in encoder_names]],
                      dynamic_axes={"mel": {2: "frames"}, "mu": {2: "frames"}, "logs": {2: "frames"},
                                    "log_dur": {1: "frames"}, **({"skip": {2: "frames"}} if residual else {})},
                      opset_version=OPSET, dynamo=False)
    weights_path = output.with_suffix(".weights")
    _share_weights([output, decoder_path, encoder_path], weights_path)
    mel_cfg = model.cfg.mel
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": "s2s-flow",
        "onnx_opset": OPSET,
        "files": {"step": output.name, "decoder": decoder_path.name, "encoder": encoder_path.name,
                  "weights": weights_path.name},
        "sample_rate": mel_cfg.sample_rate,
        "hop_samples": mel_cfg.hop_samples,
        "mel": asdict(mel_cfg),
        "chunk_frames": chunk_frames,
        "lookahead_frames": model.cfg.lookahead,
        "noise_scale": model.cfg.noise_scale,
        "residual": residual,
        "state": [{"name": n, "shape": s} for n, s in zip(names, shapes, strict=True)],
        "config_hash": config_hash(model),
        "model_config": model.cfg.to_dict(),
    }
    manifest_path = output.with_suffix(".manifest.json")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest_path


def _share_weights(graphs: list[Path], weights_path: Path) -> None:
    """Move the graphs' initializers into one external-data file, storing identical tensors once.

    The first graph's initializers are written to ``weights_path`` in order; every later
    initializer whose type, shape and bytes equal one already written points at that
    record, and the rest are appended. ONNX Runtime reads the file relative to each graph.
    """
    import onnx
    from onnx.external_data_helper import set_external_data

    weights_path.unlink(missing_ok=True)
    written: dict[tuple, tuple[int, int]] = {}
    with open(weights_path, "wb") as sink:
        for path in graphs:
            graph = onnx.load(str(path))
            for tensor in graph.graph.initializer:
                raw = onnx.numpy_helper.to_array(tensor).tobytes()
                key = (tensor.data_type, tuple(tensor.dims), hashlib.sha256(raw).hexdigest())
                if key not in written:
                    pad = (-sink.tell()) % 64           # aligned records, so they can be memory-mapped
                    sink.write(b"\0" * pad)
                    written[key] = (sink.tell(), len(raw))
                    sink.write(raw)
                offset, length = written[key]
                set_external_data(tensor, location=weights_path.name, offset=offset, length=length)
                tensor.ClearField("raw_data")
                tensor.ClearField("float_data")
                tensor.ClearField("int64_data")
                tensor.ClearField("int32_data")
                tensor.ClearField("double_data")
                tensor.data_location = onnx.TensorProto.EXTERNAL
            onnx.save_model(graph, str(path))


def torch_step_reference(model: ToSpeechFlow, mel: np.ndarray, noise: np.ndarray, chunk: int) -> np.ndarray:
    """Speech mel from the torch step graph run chunk by chunk (for parity tests)."""
    step = _StepGraph(model.eval()).eval()
    model.flow.refresh_inverse()
    _, shapes = state_spec(model)
    state = [torch.zeros(s) for s in shapes]
    outs = []
    with torch.no_grad():
        for i in range(0, mel.shape[2], chunk):
            res = step(torch.from_numpy(mel[:, :, i : i + chunk]), torch.from_numpy(noise[:, :, i : i + chunk]), *state)
            outs.append(res[0].numpy())
            state = list(res[4:])
    return np.concatenate(outs, axis=2)


def load_exported(manifest_path: str | Path) -> tuple[ToSpeechFlow, list[str]]:
    """The torch model back from an export (``model.manifest.json`` or ``model.onnx``), to fine-tune it.

    The step graph holds every weight inference uses, under its parameter name, except two
    kinds that export folds: the ActNorm log-scales (stored negated, as the input of the
    inverse's ``Exp``) and the 1x1 convolutions (stored as their inverse matrices, the weights of
    the inverse's ``Conv``, or constants of an ``Einsum`` in older exports); both are undone here, block by block in the inverse's order.
    What inference never runs is not in the graph and comes back freshly initialised: the
    phone predictor (it only guides the training alignment) and the last residual projection of
    each coupling network (computed, never used). Returns the model (eval mode) and the names
    of those re-initialised parameters.
    """
    import onnx
    from onnx import numpy_helper

    from voxflip.engine.backends.onnx_step import MAX_MANIFEST_BYTES, check_manifest

    from .train import model_config_from

    path = Path(manifest_path)
    if path.suffix == ".onnx":
        path = path.with_suffix(".manifest.json")
    if not path.is_file():
        raise ConfigError(f"{path}: no model manifest here (voxflip export writes model.manifest.json)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size} bytes is too large for a model manifest "
                          f"(at most {MAX_MANIFEST_BYTES})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path}: not a valid JSON model manifest ({type(exc).__name__})") from None
    check_manifest(manifest, path)   # every field, files inside the folder; ArtifactMismatchError/ConfigError
    if "model_config" not in manifest:
        raise ConfigError(f"{path}: model_config is missing; export the checkpoint again to fine-tune from it")
    model = ToSpeechFlow(model_config_from(manifest["model_config"], str(path)))
    step_path = path.parent / manifest["files"]["step"]
    try:
        graph = onnx.load(str(step_path)).graph
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError ...
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ArtifactMismatchError(f"{step_path}: onnx cannot read this graph (corrupt or not an ONNX "
                                    f"model): {reason}") from None
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    constants = {n.output[0]: numpy_helper.to_array(a.t) for n in graph.node if n.op_type == "Constant"
                 for a in n.attribute if a.name == "value"}
    try:
        state = model.state_dict()
        loaded: set[str] = set()
        for name, value in values.items():
            key = name.removeprefix("model.")
            if name.startswith("model.") and key in state:
                state[key] = torch.from_numpy(np.array(value)).reshape(state[key].shape)
                loaded.add(key)
        blocks = len(model.flow.couplings)
        exps = [n.input[0] for n in graph.node if n.op_type == "Exp" and n.input[0] in values
                and not n.input[0].startswith("model.")]
        # the inverse 1x1 convolutions: a Conv whose weight is no parameter (exports since December 2026),
        # or an Einsum's constant (before)
        inverses = [values.get(n.input[1], constants.get(n.input[1])) for n in graph.node if n.op_type == "Conv"
                    and not n.input[1].startswith("model.") and (n.input[1] in values or n.input[1] in constants)]
        inverses = inverses or [constants[n.input[0]] for n in graph.node
                                if n.op_type == "Einsum" and n.input[0] in constants]
        if len(exps) != blocks or len(inverses) != blocks:
            raise ArtifactMismatchError(f"{path}: expected {blocks} folded ActNorm scales and 1x1 convolutions in the "
                                        f"step graph, found {len(exps)} and {len(inverses)}; was it written by this "
                                        "voxflip's export?")
        for i in range(blocks):     # the inverse runs the blocks last to first
            b = blocks - 1 - i
            state[f"flow.actnorms.{b}.log_scale"] = -torch.from_numpy(np.array(values[exps[i]])).reshape(1, -1, 1)
            state[f"flow.actnorms.{b}.initialised"] = torch.tensor(True)
            inv = torch.from_numpy(np.array(inverses[i], dtype=np.float64).reshape(model.cfg.n_mels, model.cfg.n_mels))
            state[f"flow.invconvs.{b}.weight"] = torch.linalg.inv(inv).to(torch.float32)
            loaded |= {f"flow.actnorms.{b}.log_scale", f"flow.actnorms.{b}.initialised", f"flow.invconvs.{b}.weight"}
        model.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, IndexError) as exc:   # a graph that is not this model's
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ArtifactMismatchError(f"{step_path}: its weights do not fit the model its manifest describes: "
                                    f"{reason}") from None
    model.eval()
    model.flow.refresh_inverse()
    fresh = sorted(k for k in state if k not in loaded)
    return model, fresh

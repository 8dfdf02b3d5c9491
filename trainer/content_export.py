"""`voxflip export-content CHECKPOINT -o DIR/content.onnx`: a content student as one streaming ONNX graph.

``(mel [1, 80, n], cache_0 .. cache_L) -> (states [1, 512, n], cache_0_out .. cache_L_out)``: a chunk of
any length with each layer's past inputs. A whole recording is one call with zero caches (what
``forward`` computes), so one graph serves both.

``content.manifest.json`` records what :class:`voxflip.engine.features.content_student.ContentStudentModel`
checks on load (kind, format, the mel setup, the width, the lookahead, the caches' shapes). Before it
is written, ONNX Runtime must match torch to 1e-4 on a whole input and on the same input streamed in
uneven chunks.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from voxflip.engine.errors import ArtifactMismatchError
from voxflip.engine.features.content_student import FORMAT, MODEL_KIND, STUDENT_MEL

from .content_train import load_student
from .export import onnx_output
from .models.content_student import TEACHER_KIND, ContentStudent

OPSET = 17


class _Step(nn.Module):
    def __init__(self, model: ContentStudent) -> None:
        super().__init__()
        self.model = model

    def forward(self, mel: Tensor, *caches: Tensor):
        out, new = self.model.step(mel, list(caches))
        return (out, *new)


def export_content(checkpoint: str | Path, output: str | Path) -> Path:
    """Write ``output`` (``.onnx``), its step graph and its manifest; returns the manifest path."""
    model, payload = load_student(checkpoint)
    return export_model(model, output, trained_steps=int(payload.get("step", 0)))


def export_model(model: ContentStudent, output: str | Path, *, trained_steps: int = 0) -> Path:
    output = onnx_output(output)
    model = model.eval()
    caches = model.init_cache(1)
    names = [f"cache_{i}" for i in range(len(caches))]
    example = torch.randn(1, model.cfg.n_mels, 7) - 5.0
    tmp = output.with_name(f".{output.name}.tmp")
    with torch.no_grad():
        torch.onnx.export(_Step(model).eval(), (example, *caches), str(tmp), input_names=["mel", *names],
                          output_names=["states", *[f"{n}_out" for n in names]],
                          dynamic_axes={"mel": {2: "frames"}, "states": {2: "frames"}}, opset_version=OPSET,
                          dynamo=False)
    _check_parity(model, tmp, names)
    tmp.replace(output)
    manifest = {
        "kind": MODEL_KIND, "format": FORMAT, "onnx_opset": OPSET, "teacher": TEACHER_KIND,
        "graph": output.name, "mel": asdict(STUDENT_MEL),
        "out_dim": model.cfg.out_dim, "lookahead": model.cfg.lookahead,
        "receptive_frames": model.cfg.receptive_frames,
        "caches": [list(c.shape) for c in caches], "model_config": model.cfg.to_dict(),
        "trained_steps": trained_steps,
    }
    path = output.with_name("content.manifest.json")
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def _check_parity(model: ContentStudent, graph: Path, names: list[str], frames: int = 41) -> None:
    """The graph on a whole input (zero caches) and streamed in uneven chunks, against torch's ``forward``."""
    from voxflip.engine.backends.runtime import import_onnxruntime

    ort = import_onnxruntime("content export")
    gen = torch.Generator().manual_seed(0)
    mel = torch.randn(1, model.cfg.n_mels, frames, generator=gen) * 2.0 - 5.0
    with torch.no_grad():
        want = model(mel).numpy()
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    zeros = [c.numpy() for c in model.init_cache(1)]
    whole = session.run(None, {"mel": mel.numpy(), **dict(zip(names, zeros, strict=True))})[0]
    state, pieces, start = zeros, [], 0
    for size in (1, 3, 8, 2, frames):
        end = min(frames, start + size)
        if end <= start:
            break
        out = session.run(None, {"mel": mel[:, :, start:end].numpy(), **dict(zip(names, state, strict=True))})
        pieces.append(out[0])
        state = out[1:]
        start = end
    streamed = np.concatenate(pieces, axis=2)
    for what, array in (("whole", whole), ("streamed", streamed)):
        err = float(np.max(np.abs(array - want)))
        if array.shape != want.shape or err > 1e-4 * max(1.0, float(np.max(np.abs(want)))):
            graph.unlink(missing_ok=True)
            raise ArtifactMismatchError(f"the exported content student ({what}) differs from torch by {err:.2e}")

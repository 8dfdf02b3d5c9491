"""float16 versions of a float32 ONNX graph, and the parity check that decides a build's precision.

:func:`to_float16` (written here; onnxconverter-common is not a dependency):

- every float32 initializer, ``Constant`` and ``ConstantOfShape`` value becomes float16, and a
  ``Cast`` to float32 becomes a ``Cast`` to float16;
- the graph's inputs and outputs stay float32, with a ``Cast`` at each boundary, so callers and
  the streaming state keep their types;
- operators in :data:`KEEP_FLOAT32` run in float32 between ``Cast`` nodes: the reductions and
  powers of the channel norm (a sum of squares overflows float16's 65504), ``Exp`` (overflows
  above 11), ``Erf`` and ``Sqrt``/``Div`` (precision of the normalisation's divisor).

:func:`fp16_parity` runs both graphs under ONNX Runtime CPU on the same seeded streamed chunks
(state carried from chunk to chunk, as a stream runs) and reports each output's worst error
against the float32 graph; ``voxflip build-trt`` builds float16 engines where it is within
:data:`FP16_TOLERANCE` and float32 engines otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sanitize import import_onnx

#: operators kept in float32 inside a float16 graph (see the module docstring)
KEEP_FLOAT32: frozenset[str] = frozenset({"ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "Pow", "Sqrt",
                                          "Div", "Exp", "Erf", "Log", "Softmax", "LogSoftmax", "Reciprocal",
                                          "LayerNormalization", "GroupNormalization", "InstanceNormalization"})
#: float16 passes when every output's worst error is <= atol + rtol * (its float32 peak magnitude)
FP16_TOLERANCE = {"atol": 0.05, "rtol": 0.01}


def _float_tensors(model) -> set[str]:
    """Names of the float32 tensors of an inferred model (inputs, outputs, intermediates, weights)."""
    onnx = import_onnx()
    inferred = onnx.shape_inference.infer_shapes(model)
    floats = {t.name for t in inferred.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            floats.add(value.name)
    return floats


def to_float16(model, *, keep_float32: frozenset[str] = KEEP_FLOAT32):
    """A float16 copy of the float32 graph ``model`` (see the module docstring); ``model`` is unchanged."""
    onnx = import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    floats = _float_tensors(model)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    for tensor in graph.initializer:
        if tensor.data_type == TensorProto.FLOAT:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name))
    # inside the graph, float inputs and outputs go by float16 names; the boundary Casts keep the real ones
    inside = {v.name: f"{v.name}__fp16" for v in [*graph.input, *graph.output] if v.name in floats}
    floats |= set(inside.values())
    final = [helper.make_node("Cast", [v.name], [inside[v.name]], to=TensorProto.FLOAT16, name=f"{v.name}__to_fp16")
             for v in graph.input if v.name in inside]
    for index, node in enumerate(graph.node):
        node.input[:] = [inside.get(i, i) for i in node.input]
        node.output[:] = [inside.get(o, o) for o in node.output]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16),
                                                        attr.t.name))
            elif node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
        if node.op_type not in keep_float32:
            final.append(node)
            continue
        for k, name in enumerate(node.input):
            if name in floats:
                wide = f"{name}__fp32_{index}"
                final.append(helper.make_node("Cast", [name], [wide], to=TensorProto.FLOAT, name=f"{wide}__cast"))
                node.input[k] = wide
        backs = []
        for k, name in enumerate(node.output):
            if name in floats:
                node.output[k] = f"{name}__fp32"
                backs.append(helper.make_node("Cast", [node.output[k]], [name], to=TensorProto.FLOAT16,
                                              name=f"{name}__back_to_fp16"))
        final.append(node)
        final.extend(backs)
    final += [helper.make_node("Cast", [inside[v.name]], [v.name], to=TensorProto.FLOAT, name=f"{v.name}__to_fp32")
              for v in graph.output if v.name in inside]
    del graph.node[:]
    graph.node.extend(final)
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


@dataclass(frozen=True)
class ParityResult:
    """Worst float16 error per output, against the float32 graph, and whether all are within tolerance."""

    errors: dict[str, float]
    limits: dict[str, float]

    @property
    def ok(self) -> bool:
        return all(self.errors[n] <= self.limits[n] for n in self.errors)

    @property
    def worst(self) -> float:
        return max(self.errors.values(), default=0.0)


def _session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    # no graph optimisation: it would fuse away the float16 round trips ONNX Runtime CPU inserts
    # around operators it has no float16 kernel for, and hide float16's rounding
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])


def fp16_parity(fp32_model, fp16_model, *, chunks: int = 6, frames: int = 2, batch: int = 2, seed: int = 0,
                mel_offset: float = -5.0, tolerance: dict[str, float] | None = None) -> ParityResult:
    """Stream ``chunks`` seeded chunks through both graphs (state carried) and compare every output.

    Inputs named ``state_in.X`` start at zeros and take the previous chunk's ``state_out.X``;
    the rest are standard normal (``mel`` shifted by ``mel_offset``, a log-mel's typical level).
    Dynamic axes get ``batch`` (axis 0) and ``frames`` (elsewhere).
    """
    tol = tolerance or FP16_TOLERANCE
    a, b = _session(fp32_model), _session(fp16_model)
    rng = np.random.default_rng(seed)
    inputs = a.get_inputs()
    out_names = [o.name for o in a.get_outputs()]

    def concrete(shape: list) -> list[int]:
        return [batch if i == 0 else (d if isinstance(d, int) else frames) for i, d in enumerate(shape)]

    state_a = {i.name: np.zeros(concrete(i.shape), np.float32) for i in inputs if i.name.startswith("state_in.")}
    state_b = dict(state_a)
    errors = dict.fromkeys(out_names, 0.0)
    peaks = dict.fromkeys(out_names, 0.0)
    for _ in range(chunks):
        feeds = {}
        for i in inputs:
            if not i.name.startswith("state_in."):
                value = rng.standard_normal(concrete(i.shape)).astype(np.float32)
                feeds[i.name] = value + np.float32(mel_offset) if i.name == "mel" else value
        out_a = a.run(None, {**feeds, **state_a})
        out_b = b.run(None, {**feeds, **state_b})
        for name, x, y in zip(out_names, out_a, out_b, strict=True):
            errors[name] = max(errors[name], float(np.max(np.abs(x - y), initial=0.0)))
            peaks[name] = max(peaks[name], float(np.max(np.abs(x), initial=0.0)))
        state_a = {f"state_in.{n.removeprefix('state_out.')}": v for n, v in zip(out_names, out_a, strict=True)
                   if n.startswith("state_out.")}
        state_b = {f"state_in.{n.removeprefix('state_out.')}": v for n, v in zip(out_names, out_b, strict=True)
                   if n.startswith("state_out.")}
    limits = {n: tol["atol"] + tol["rtol"] * peaks[n] for n in out_names}
    return ParityResult(errors, limits)

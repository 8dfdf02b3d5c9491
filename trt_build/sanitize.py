"""Sanitise an exported ONNX graph before TensorRT parses it: batch axis, shapes, constant folding.

What TensorRT's ONNX parser wants, done with the ``onnx`` package alone (no polygraphy):

1. :func:`with_batch_axis`: axis 0 of every graph input and output becomes the symbolic
   ``batch`` (the exporter writes 1), so one engine call can carry many streams. It runs before
   folding, so no constant ever bakes in a batch of 1;
2. ``onnx.shape_inference`` (with data propagation) gives every intermediate tensor its type
   and shape;
3. :func:`fold_constants`: every node whose inputs are all known becomes an initializer
   (evaluated by ``onnx.reference``), as does ``Shape`` of a static tensor and
   ``Gather(Shape(x), i)`` where dimension ``i`` of ``x`` is static;
4. nodes nothing reads are dropped, initializers nothing reads too; shapes are inferred again
   and ``onnx.checker`` checks the result.

The sanitised graph computes what the original computes (a test checks it under ONNX Runtime
CPU at batch 1 and at batch N). Nodes that draw random numbers are never folded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GraphMismatchError

#: tensors larger than this are not folded into initializers (they would bloat the file)
MAX_FOLDED_VALUES = 1 << 20
#: ops whose outputs are not a function of their inputs
_NONDETERMINISTIC = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
                     "Bernoulli"}
BATCH_AXIS = "batch"


def import_onnx():
    """``import onnx``, or a one-line error saying which extra provides it."""
    try:
        import onnx
    except ImportError:
        raise GraphMismatchError('sanitising graphs needs the onnx package: pip install "voxflip[trt]" '
                                 '(from a checkout: pip install -e ".[trt]")') from None
    return onnx


def load_graph(path: str | Path):
    """An exported graph with its external weights loaded (``model.weights`` beside it)."""
    onnx = import_onnx()
    try:
        return onnx.load(str(path))
    except Exception as exc:  # DecodeError, ValidationError, OSError for missing external data ...
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise GraphMismatchError(f"{path}: onnx cannot read this graph (corrupt, or its weights file is "
                                 f"missing): {reason}") from None


def with_batch_axis(model):
    """``model`` with axis 0 of every input and output symbolic (``batch``); shapes inside are cleared.

    Raises:
        GraphMismatchError: an input or output has no axis 0, or a fixed axis 0 other than 1.
    """
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if not dims:
            raise GraphMismatchError(f"graph input/output {value.name!r} has no batch axis (rank 0); "
                                     "an exported flow graph's tensors are [batch, ...]")
        first = dims[0]
        if first.HasField("dim_value") and first.dim_value != 1:
            raise GraphMismatchError(f"graph input/output {value.name!r} has a fixed batch of {first.dim_value}; "
                                     "only graphs exported with batch 1 or a symbolic batch are accepted")
        first.Clear()
        first.dim_param = BATCH_AXIS
    del model.graph.value_info[:]
    return model


def _static_shapes(model) -> dict[str, list[int | None]]:
    """Tensor name -> its inferred shape (None for a symbolic or unknown dimension)."""
    shapes: dict[str, list[int | None]] = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        tt = value.type.tensor_type
        if tt.HasField("shape"):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    return shapes


def _attribute(node, name: str, default: Any) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            from onnx import helper

            return helper.get_attribute_value(attr)
    return default


def _shape_value(node, shapes: dict[str, list[int | None]]) -> np.ndarray | None:
    """The value of ``Shape(x)`` when the slice of ``x``'s shape it returns is static, else None."""
    shape = shapes.get(node.input[0])
    if shape is None:
        return None
    start, end = _attribute(node, "start", 0), _attribute(node, "end", None)
    part = shape[start:end]
    return None if any(d is None for d in part) else np.array(part, np.int64)


def fold_constants(model):
    """Replace every node computable before run time by an initializer (see the module docstring).

    Returns:
        A new model; ``model`` is left unchanged.
    """
    onnx = import_onnx()
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    graph = model.graph
    shapes = _static_shapes(model)
    known: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    graph_inputs = {i.name for i in graph.input}
    outputs = {o.name for o in graph.output}
    producers = {out: node for node in graph.node for out in node.output}
    foldable: list[Any] = []
    fold_names: set[str] = set()
    for node in graph.node:
        if node.op_type in _NONDETERMINISTIC or any(o in outputs for o in node.output):
            continue
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            known[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            continue
        if node.op_type == "Shape":
            value = _shape_value(node, shapes)
            if value is not None:
                known[node.output[0]] = value
                continue
        if (node.op_type == "Gather" and node.input[0] in producers and producers[node.input[0]].op_type == "Shape"
                and node.input[1] in known and _attribute(node, "axis", 0) == 0):
            source = shapes.get(producers[node.input[0]].input[0])
            index = known[node.input[1]]
            start = _attribute(producers[node.input[0]], "start", 0)
            if source is not None and index.size and np.all(index >= 0):
                dims = [source[start + int(i)] if start + int(i) < len(source) else None for i in index.ravel()]
                if all(d is not None for d in dims):
                    known[node.output[0]] = np.array(dims, np.int64).reshape(index.shape)
                    continue
        ins = [i for i in node.input if i]
        if all(i in known or i in fold_names for i in ins) and not any(i in graph_inputs for i in ins):
            foldable.append(node)
            fold_names.update(node.output)
    if foldable:
        # evaluate every foldable node in one pass: a graph of them alone, fed the known values
        feeds_needed = sorted({i for n in foldable for i in n.input if i and i not in fold_names})
        sub = helper.make_graph(
            list(foldable), "fold",
            [helper.make_tensor_value_info(n, numpy_helper.from_array(known[n]).data_type, known[n].shape)
             for n in feeds_needed],
            [helper.make_tensor_value_info(n, 0, None) for n in sorted(fold_names)],
        )
        submodel = helper.make_model(sub, opset_imports=model.opset_import)
        values = ReferenceEvaluator(submodel).run(None, {n: known[n] for n in feeds_needed})
        for name, value in zip(sorted(fold_names), values, strict=True):
            known[name] = np.asarray(value)
    folded_outputs = {o for o, v in known.items() if o in producers and np.asarray(v).size <= MAX_FOLDED_VALUES}
    kept = [n for n in graph.node if not all(o in folded_outputs for o in n.output if o)]
    # keep only what the graph's outputs need (backwards from them)
    needed = set(outputs)
    live = []
    for node in reversed(kept):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
    live.reverse()
    initializers = []
    for name in sorted(needed):
        if name in known and name not in graph_inputs:
            initializers.append(numpy_helper.from_array(np.asarray(known[name]), name))
    new_graph = helper.make_graph(live, graph.name, list(graph.input), list(graph.output), initializers)
    new = helper.make_model(new_graph, opset_imports=model.opset_import, producer_name="voxflip-trt-build")
    new.ir_version = model.ir_version
    return new


def sanitise(model, *, batch_axis: bool = True):
    """Batch axis (optional), shape inference and constant folding, then a checked, inferred model.

    Raises:
        GraphMismatchError: onnx's checker or shape inference rejects the result.
    """
    onnx = import_onnx()
    if batch_axis:
        model = with_batch_axis(model)
    model = fold_constants(model)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        onnx.checker.check_model(model)
    except Exception as exc:  # InferenceError, ValidationError
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise GraphMismatchError(f"the sanitised graph {model.graph.name!r} does not check: {reason}") from None
    return model


def graph_sha256(model) -> str:
    """A hash of the graph's bytes, weights included (the engine cache's first key)."""
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


def op_counts(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counts[key] = counts.get(key, 0) + 1
    return counts

"""Which ONNX operators TensorRT's ONNX parser takes, and a report of what a graph uses beyond them.

:data:`TRT10_SUPPORTED_OPS` is the default-domain operator set this build targets: TensorRT
10.x (opsets 9..20), written from onnx-tensorrt's operator matrix (``docs/operators.md`` of
the ``release/10.x`` branches) as the project read it; docs/gpu.md lists it too. A graph
that uses an operator outside it, or breaks one of the parser's restrictions checked here
(convolution weights, ``Slice``/``Squeeze``/``Unsqueeze`` axes and ``TopK``'s ``K`` must be
constants; no ``...`` in an ``Einsum``), gets a report naming each operator, how many nodes
use it and the first node's name. An operator missing from the list is not proof that
TensorRT lacks it (a newer 10.x may have added it): ``voxflip build-trt --allow-op NAME``
builds anyway and lets the parser decide.
"""

from __future__ import annotations

from dataclasses import dataclass

TRT_TARGET = "10.x"
TRT_OPSETS = (9, 20)

TRT10_SUPPORTED_OPS: frozenset[str] = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Bernoulli
BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DeformConv DepthToSpace DequantizeLinear Div Dropout DynamicQuantizeLinear Einsum Elu Equal Erf Exp Expand
EyeLike Flatten Floor GRU Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
Greater GreaterOrEqual GridSample GroupNormalization HammingWindow HannWindow HardSigmoid HardSwish Hardmax
Identity If InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg
NonMaxSuppression NonZero Not OneHot Or PRelu Pad ParametricSoftplus Pow QuantizeLinear RNN RandomNormal
RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
RoiAlign Round STFT ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh
Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

#: op -> the input positions that must be constants (initializers) for the parser
_CONSTANT_INPUTS: dict[str, tuple[int, ...]] = {
    "Conv": (1,), "ConvTranspose": (1,), "Slice": (3,), "Squeeze": (1,), "Unsqueeze": (1,), "TopK": (1,),
}


@dataclass(frozen=True)
class OpIssue:
    """One reason TensorRT may refuse a graph: an operator (and how many nodes) or a restriction."""

    op_type: str
    count: int
    first_node: str
    reason: str

    def line(self) -> str:
        return f"{self.op_type} x{self.count} (first: {self.first_node!r}): {self.reason}"


def check_ops(model, *, allow: frozenset[str] | set[str] = frozenset()) -> list[OpIssue]:
    """The graph's operators TensorRT 10.x may refuse (empty when none), grouped by operator.

    Args:
        model: an ONNX ModelProto, best sanitised first (folding turns computed weights into
            the initializers the parser needs).
        allow: operator names to accept even though they are not in :data:`TRT10_SUPPORTED_OPS`.
    """
    constants = {t.name for t in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    found: dict[tuple[str, str], list[str]] = {}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    for node in model.graph.node:
        name = node.name or (node.output[0] if node.output else "?")
        if node.domain not in ("", "ai.onnx"):
            reason = f"custom domain {node.domain!r}: TensorRT needs a plugin for it"
            found.setdefault((f"{node.domain}.{node.op_type}", reason), []).append(name)
            continue
        if node.op_type not in TRT10_SUPPORTED_OPS and node.op_type not in allow:
            reason = f"not in TensorRT {TRT_TARGET}'s ONNX operator list"
            found.setdefault((node.op_type, reason), []).append(name)
            continue
        for position in _CONSTANT_INPUTS.get(node.op_type, ()):
            if len(node.input) > position and node.input[position] and node.input[position] not in constants:
                reason = f"input {position} ({node.input[position]!r}) must be a constant for TensorRT's parser"
                found.setdefault((node.op_type, reason), []).append(name)
        if node.op_type == "Einsum":
            equation = next((a.s.decode() for a in node.attribute if a.name == "equation"), "")
            if "..." in equation:
                found.setdefault((node.op_type, "an ellipsis ('...') in the equation is not supported"),
                                 []).append(name)
    issues = [OpIssue(op, len(names), names[0], reason) for (op, reason), names in sorted(found.items())]
    if opset is not None and not TRT_OPSETS[0] <= opset <= TRT_OPSETS[1]:
        issues.insert(0, OpIssue("opset", 1, model.graph.name,
                                 f"opset {opset} is outside TensorRT {TRT_TARGET}'s {TRT_OPSETS[0]}..{TRT_OPSETS[1]}"))
    return issues


def report(issues: list[OpIssue], graph: str) -> str:
    """One line for the user: the graph and each issue, ``; ``-separated."""
    if not issues:
        return f"{graph}: every operator is in TensorRT {TRT_TARGET}'s ONNX operator list"
    return f"{graph}: TensorRT {TRT_TARGET} may refuse: " + "; ".join(i.line() for i in issues)

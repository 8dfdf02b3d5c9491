"""``voxflip build-trt MODEL``: TensorRT engines for an exported flow model, cached, with profiles.

For each graph of the model (``step``, ``encoder``, ``decoder``):

1. sanitise it (:mod:`.sanitize`: batch axis, shape inference, constant folding) and write
   ``trt/model.<role>.onnx`` beside the manifest (weights inside);
2. report operators TensorRT 10.x may refuse (:mod:`.ops`); any stops the build unless named
   with ``allow_ops``;
3. choose the precision: ``auto`` converts the graph to float16 (:mod:`.fp16`) and streams
   seeded chunks through both under ONNX Runtime CPU; fp16 where every output is within
   tolerance, fp32 otherwise;
4. unless ``onnx_only``: parse it with TensorRT's ``OnnxParser``, give the builder config one
   optimisation profile (:mod:`.profiles`: batch 1..max_streams, frames from the manifest's
   chunking), the FP16 flag for fp16 with the float32-sensitive layers pinned to float32
   (``OBEY_PRECISION_CONSTRAINTS``), the shared timing cache, and serialise the engine as
   ``trt/model.<role>.<precision>.<key>.plan``; a plan whose key (:mod:`.cache`) is already
   there is reused;
5. write the manifest's ``trt`` section (:mod:`.manifest`).

TensorRT is imported only in step 4; where it is missing the build stops before any work with
:class:`~.errors.TensorRTMissingError` (one line: what is missing and how to get it). The
TensorRT calls follow TensorRT 10's Python API; they have not run on a TensorRT machine yet
(docs/gpu.md says what was verified where).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .cache import GpuIdentity, detect_gpu, engine_key, plan_name, timing_cache_name
from .errors import TENSORRT_HINT, BuildConfigError, GraphMismatchError, TensorRTMissingError
from .fp16 import KEEP_FLOAT32, fp16_parity, to_float16
from .manifest import GRAPH_ROLES, graph_entry, manifest_path, read_manifest, with_section, write_manifest
from .ops import check_ops, report
from .profiles import ProfileConfig, ShapeRange, graph_profile, profile_to_json
from .sanitize import graph_sha256, load_graph, sanitise

PRECISION_CHOICES = ("auto", "fp16", "fp32")
CACHE_FOLDER = "trt"


@dataclass(frozen=True)
class BuildConfig:
    """What ``build-trt`` builds.

    Attributes:
        precision: ``auto`` (fp16 where its parity check passes, else fp32), ``fp16`` or ``fp32``.
        profiles: streams per call and the decoder's frame expansion (:class:`.profiles.ProfileConfig`).
        workspace_mib: TensorRT's workspace memory pool, 16..65536 MiB.
        onnx_only: sanitise, check and choose precision, but build no engine (no TensorRT needed).
        allow_ops: operators to build despite the operator report.
    """

    precision: str = "auto"
    profiles: ProfileConfig = field(default_factory=ProfileConfig)
    workspace_mib: int = 1024
    onnx_only: bool = False
    allow_ops: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.precision not in PRECISION_CHOICES:
            raise BuildConfigError(f"precision={self.precision!r} must be one of {', '.join(PRECISION_CHOICES)}")
        if not isinstance(self.workspace_mib, int) or not 16 <= self.workspace_mib <= 65536:
            raise BuildConfigError(f"workspace_mib={self.workspace_mib!r} must be a whole number of MiB in 16..65536")


@dataclass
class PreparedGraph:
    """One sanitised graph, ready for TensorRT."""

    role: str
    onnx_file: str                   # relative to the manifest's folder
    sha256: str
    precision: str
    fp16_error: float | None
    profile: dict[str, ShapeRange]


@dataclass
class BuildReport:
    manifest: Path
    graphs: list[PreparedGraph]
    engines: list[dict[str, Any]]
    reused: list[str]
    lines: list[str]


def import_tensorrt() -> ModuleType:
    """``import tensorrt``, or :class:`TensorRTMissingError` with the one line the user reads."""
    try:
        import tensorrt
    except ImportError:
        raise TensorRTMissingError(TENSORRT_HINT) from None
    return tensorrt


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def prepare_graph(role: str, manifest: dict[str, Any], mpath: Path, config: BuildConfig,
                  say: Callable[[str], None]) -> PreparedGraph:
    """Steps 1-3 of the module docstring for one graph."""
    folder = mpath.parent
    source = folder / manifest["files"][role]
    model = sanitise(load_graph(source))
    issues = check_ops(model, allow=config.allow_ops)
    say(report(issues, f"{role} ({source.name})"))
    if issues and not config.onnx_only:
        raise GraphMismatchError(f"{report(issues, str(source))}; rebuild with --allow-op NAME to let TensorRT's "
                                 "parser try anyway")
    fp16_error = None
    precision = config.precision
    if precision in ("auto", "fp16"):
        parity = fp16_parity(model, to_float16(model), frames=int(manifest["chunk_frames"]))
        fp16_error = parity.worst
        if precision == "auto":
            precision = "fp16" if parity.ok else "fp32"
        say(f"{role}: float16 under ONNX Runtime CPU: worst error {parity.worst:.4g} "
            f"({'within' if parity.ok else 'outside'} tolerance) -> {precision}")
    out_dir = folder / CACHE_FOLDER
    out_dir.mkdir(exist_ok=True)
    onnx_file = f"{CACHE_FOLDER}/model.{role}.onnx"
    _write_atomic(folder / onnx_file, model.SerializeToString())
    profile = graph_profile(role, manifest, config.profiles)
    return PreparedGraph(role, onnx_file, graph_sha256(model), precision, fp16_error, profile)


def _pin_float32_layers(trt: ModuleType, network: Any) -> int:
    """Pin the layers :data:`.fp16.KEEP_FLOAT32` names (reductions, pow, div, exp, erf, sqrt...) to float32."""
    unary = {getattr(trt.UnaryOperation, n) for n in ("EXP", "SQRT", "ERF", "LOG", "RECIP") if
             hasattr(trt.UnaryOperation, n)}
    elementwise = {trt.ElementWiseOperation.POW, trt.ElementWiseOperation.DIV}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        keep = layer.type in (trt.LayerType.REDUCE, trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX)
        if layer.type == trt.LayerType.UNARY:
            layer.__class__ = trt.IUnaryLayer      # the Python binding's way to reach the subclass
            keep = layer.op in unary
        elif layer.type == trt.LayerType.ELEMENTWISE:
            layer.__class__ = trt.IElementWiseLayer
            keep = layer.op in elementwise
        if keep:
            layer.precision = trt.float32
            for k in range(layer.num_outputs):
                layer.set_output_type(k, trt.float32)
            pinned += 1
    return pinned


def build_engine(trt: ModuleType, graph: PreparedGraph, folder: Path, config: BuildConfig, timing_blob: bytes,
                 say: Callable[[str], None]) -> tuple[bytes, bytes]:
    """Parse, configure and build one engine; returns (serialized plan, updated timing cache)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)            # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(folder / graph.onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise GraphMismatchError(f"{graph.onnx_file}: TensorRT's ONNX parser refused it: {' '.join(errors.split())[:400]}")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mib << 20)
    if graph.precision == "fp16":
        builder_config.set_flag(trt.BuilderFlag.FP16)
        builder_config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        say(f"{graph.role}: fp16, {_pin_float32_layers(trt, network)} layers pinned to fp32 "
            f"({', '.join(sorted(KEEP_FLOAT32)[:4])}, ...)")
    profile = builder.create_optimization_profile()
    for name, shapes in graph.profile.items():
        profile.set_shape(name, shapes.min, shapes.opt, shapes.max)
    builder_config.add_optimization_profile(profile)
    cache = builder_config.create_timing_cache(timing_blob)
    builder_config.set_timing_cache(cache, False)
    plan = builder.build_serialized_network(network, builder_config)
    if plan is None:
        raise GraphMismatchError(f"{graph.onnx_file}: TensorRT could not build an engine (see its log above)")
    if trt.Runtime(logger).deserialize_cuda_engine(plan) is None:
        raise GraphMismatchError(f"{graph.onnx_file}: the engine TensorRT built does not deserialize")
    return bytes(plan), bytes(builder_config.get_timing_cache().serialize())


def build_trt(model: str | Path, config: BuildConfig, *, say: Callable[[str], None] = print,
              check: Callable[[dict[str, Any], Path], Any] | None = None, gpu: GpuIdentity | None = None) -> BuildReport:
    """The whole build (see the module docstring); returns what was written.

    Args:
        model: an exported model folder or its ``*.manifest.json``.
        config: precision, profiles, workspace, ``onnx_only``.
        say: where progress lines go.
        check: the engine's manifest checker, run on the manifest as read and as written
            (the front door passes ``voxflip.engine.backends.onnx_step.check_manifest``).
        gpu: the GPU to build for (default: the one CUDA device 0 is).

    Raises:
        TensorRTMissingError: TensorRT or a CUDA GPU is missing (and not ``onnx_only``).
        GraphMismatchError: a graph cannot be read, sanitised, parsed or built.
        BuildConfigError: a bad option or manifest.
    """
    trt = None if config.onnx_only else import_tensorrt()
    mpath = manifest_path(model)
    manifest = read_manifest(mpath)
    if check is not None:
        check(manifest, mpath)
    if not config.onnx_only and gpu is None:
        gpu = detect_gpu()
        if gpu is None:
            raise TensorRTMissingError("TensorRT is installed but no CUDA GPU is visible (cuda-python and nvidia-smi "
                                       "found none); build engines on the GPU machine that will run them")
    folder = mpath.parent
    roles = [r for r in GRAPH_ROLES if r in manifest["files"]]
    graphs = [prepare_graph(role, manifest, mpath, config, say) for role in roles]
    engines: list[dict[str, Any]] = []
    reused: list[str] = []
    timing_file = None
    if trt is not None and gpu is not None:
        version = str(trt.__version__)
        timing_file = f"{CACHE_FOLDER}/{timing_cache_name(version, gpu)}"
        blob = (folder / timing_file).read_bytes() if (folder / timing_file).is_file() else b""
        for graph in graphs:
            key = engine_key(graph.sha256, version, gpu, graph.precision, graph.profile)
            plan_file = f"{CACHE_FOLDER}/{plan_name(graph.role, graph.precision, key)}"
            if (folder / plan_file).is_file():
                reused.append(plan_file)
                say(f"{graph.role}: cached engine {plan_file}")
            else:
                plan, blob = build_engine(trt, graph, folder, config, blob, say)
                _write_atomic(folder / plan_file, plan)
                say(f"{graph.role}: built {plan_file} ({len(plan) / 2**20:.1f} MiB) for {gpu.name} "
                    f"(sm {gpu.compute_capability}), TensorRT {version}, {graph.precision}")
            engines.append({"role": graph.role, "file": plan_file, "key": key, "precision": graph.precision,
                            "tensorrt_version": version, "gpu": gpu.name,
                            "compute_capability": gpu.compute_capability, "graph_sha256": graph.sha256})
        if blob:
            _write_atomic(folder / timing_file, blob)
    entries = {g.role: graph_entry(g.onnx_file, g.sha256, g.precision, g.fp16_error, profile_to_json(g.profile))
               for g in graphs}
    new = with_section(manifest, max_streams=config.profiles.max_streams, graphs=entries, engines=engines,
                       timing_cache=timing_file)
    if check is not None:
        check(new, mpath)
    write_manifest(mpath, new)
    return BuildReport(mpath, graphs, engines, reused, [])

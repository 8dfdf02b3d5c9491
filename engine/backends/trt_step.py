"""The flow model's graphs on the fastest backend this machine has: TensorRT engine, else ONNX Runtime.

For each graph (``step``, ``encoder``, ``decoder``) :class:`GpuStepModel` opens, in order:

1. the TensorRT engine ``voxflip build-trt`` listed in the manifest's ``trt.engines`` for this
   graph, when ``tensorrt`` and ``cuda-python`` import, a CUDA GPU is visible, and the entry's
   TensorRT version, GPU name and compute capability are this machine's
   (:class:`TrtSession`);
2. else an ONNX Runtime session whose providers are TensorRT -> CUDA -> CPU, those this
   ONNX Runtime has (:func:`provider_chain`; the ``gpu`` extra's onnxruntime-gpu has all three,
   the ``cpu`` extra's only CPU).

It has :class:`~.onnx_step.OnnxStepModel`'s interface (``init_state``, ``step``, ``encode``,
``decode``) and logs one line at start-up saying what runs each graph. The TensorRT path is
written against TensorRT 10's Python API and cuda-python's runtime bindings and has never run
(no machine here has TensorRT; docs/gpu.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import ArtifactMismatchError, MissingDependencyError
from .onnx_step import OnnxStepModel
from .runtime import PROVIDER_ORDER, ort_session, provider_chain, provider_options  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

def _import_trt() -> tuple[ModuleType, ModuleType]:
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError("TensorRT engines need tensorrt: pip install tensorrt==10.* cuda-python "
                                     "(on a CUDA machine; docs/gpu.md)") from None
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
    except ImportError:
        raise MissingDependencyError("TensorRT engines need cuda-python for device memory: pip install "
                                     "cuda-python") from None
    return tensorrt, cudart


def cuda_device() -> tuple[str, str] | None:
    """(name, compute capability) of CUDA device 0 through cuda-python, or None."""
    try:
        _, cudart = _import_trt()
        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) != 0:
            return None
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return name.strip("\0 "), f"{props.major}.{props.minor}"
    except Exception:  # no tensorrt, no cuda-python, no driver
        return None


def pick_engine(manifest: dict[str, Any], role: str, tensorrt_version: str, gpu: tuple[str, str]) -> dict | None:
    """The manifest's engine entry for ``role`` built for this TensorRT version and GPU, or None.

    Only an engine built from the graph the manifest lists for ``role`` counts (same sha256).
    """
    section = manifest.get("trt") or {}
    graph = (section.get("graphs") or {}).get(role)
    for entry in section.get("engines", []):
        if (entry["role"] == role and entry["tensorrt_version"] == tensorrt_version and entry["gpu"] == gpu[0]
                and entry["compute_capability"] == gpu[1] and graph is not None
                and entry["graph_sha256"] == graph["sha256"]):
            return entry
    return None


@dataclass(frozen=True)
class IoInfo:
    """What ``get_inputs()`` / ``get_outputs()`` return: ONNX Runtime's NodeArg fields we use."""

    name: str
    shape: tuple


class TrtSession:
    """A TensorRT engine behind ONNX Runtime's session interface (``get_inputs``, ``get_outputs``, ``run``).

    Inputs are copied to device buffers (grown as needed, kept between calls), the engine runs
    on its own CUDA stream with ``execute_async_v3``, and outputs come back as numpy arrays.
    """

    def __init__(self, plan: Path) -> None:
        trt, cudart = _import_trt()
        self._trt, self._cudart = trt, cudart
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
        if self._engine is None:
            raise ArtifactMismatchError(f"{plan}: TensorRT {trt.__version__} cannot deserialize this engine (built "
                                        "for another version or GPU?); rebuild: voxflip build-trt MODEL")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == mode]
        self._outputs = [n for n in names if self._engine.get_tensor_mode(n) != mode]
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        err, self._stream = cudart.cudaStreamCreate()
        self._check(err, "cudaStreamCreate")
        self._buffers: dict[str, tuple[int, int]] = {}

    def _check(self, err: Any, what: str) -> None:
        if int(err) != 0:
            raise ArtifactMismatchError(f"CUDA call {what} failed with error {int(err)}")

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self._cudart.cudaFree(ptr)
            err, ptr = self._cudart.cudaMalloc(max(nbytes, 256))
            self._check(err, "cudaMalloc")
            self._buffers[name] = (ptr, max(nbytes, 256))
        return self._buffers[name][0]

    def get_inputs(self) -> list[IoInfo]:
        return [IoInfo(n, tuple(self._engine.get_tensor_shape(n))) for n in self._inputs]

    def get_outputs(self) -> list[IoInfo]:
        return [IoInfo(n, tuple(self._engine.get_tensor_shape(n))) for n in self._outputs]

    def run(self, output_names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Like ``InferenceSession.run(None, feeds)``: every output, in the engine's order."""
        kind = self._cudart.cudaMemcpyKind
        hold = []
        for name in self._inputs:
            array = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
            hold.append(array)
            self._context.set_input_shape(name, array.shape)
            ptr = self._buffer(name, array.nbytes)
            self._check(self._cudart.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes,
                                                     kind.cudaMemcpyHostToDevice, self._stream)[0], "cudaMemcpyAsync")
            self._context.set_tensor_address(name, ptr)
        outs = []
        for name in self._outputs:
            array = np.empty(tuple(self._context.get_tensor_shape(name)), self._dtypes[name])
            self._context.set_tensor_address(name, self._buffer(name, array.nbytes))
            outs.append(array)
        if not self._context.execute_async_v3(self._stream):
            raise ArtifactMismatchError("the TensorRT engine failed to run (see its log)")
        for name, array in zip(self._outputs, outs, strict=True):
            self._check(self._cudart.cudaMemcpyAsync(array.ctypes.data, self._buffers[name][0], array.nbytes,
                                                     kind.cudaMemcpyDeviceToHost, self._stream)[0], "cudaMemcpyAsync")
        self._check(self._cudart.cudaStreamSynchronize(self._stream)[0], "cudaStreamSynchronize")
        return outs


def open_graph(manifest_path: Path, manifest: dict[str, Any], role: str, file: str, threads: int,
               *, allow_trt: bool = True) -> tuple[Any, str]:
    """A session for one graph and a few words on what runs it (see the module docstring)."""
    folder = manifest_path.parent
    if allow_trt and manifest.get("trt", {}).get("engines"):
        gpu = cuda_device()
        if gpu is not None:
            trt, _ = _import_trt()
            entry = pick_engine(manifest, role, str(trt.__version__), gpu)
            if entry is not None:
                return TrtSession(folder / entry["file"]), f"TensorRT {trt.__version__} {entry['precision']} engine"
    session, providers = ort_session(folder / file, threads, cache_dir=folder / "trt")
    return session, f"onnxruntime [{', '.join(p.removesuffix('ExecutionProvider') for p in providers)}]"


class GpuStepModel(OnnxStepModel):
    """:class:`~.onnx_step.OnnxStepModel` on a TensorRT engine where one fits, else ONNX Runtime's best providers."""

    def __init__(self, manifest_path: str | Path, *, threads: int = 1, allow_trt: bool = True) -> None:
        self._allow_trt = allow_trt
        self.runs_on: dict[str, str] = {}
        path = Path(manifest_path)
        if path.is_dir():   # an exported model folder: its one manifest
            found = sorted(path.glob("*.manifest.json"))
            path = found[0] if len(found) == 1 else path / "model.manifest.json"
        super().__init__(path, threads=threads)
        log.info("flow model %s: %s", self.path.name, "; ".join(f"{r} on {w}" for r, w in self.runs_on.items()))

    def _open(self, name: str, inputs: list[str], states: list[str], outputs: int):
        role = next(r for r, f in self.manifest["files"].items() if f == name)
        session, what = open_graph(self.path, self.manifest, role, name, self._threads, allow_trt=self._allow_trt)
        self.runs_on[role] = what
        wanted = {*inputs, *(f"state_in.{n}" for n in states)}
        got = {i.name for i in session.get_inputs()}
        if wanted != got:
            raise ArtifactMismatchError(f"{self.path}: the graph {name!r} takes inputs {sorted(got)[:12]}, "
                                        f"not the manifest's {sorted(wanted)[:12]}")
        if len(session.get_outputs()) != outputs + len(states):
            raise ArtifactMismatchError(f"{self.path}: the graph {name!r} has {len(session.get_outputs())} outputs; "
                                        f"its manifest state needs {outputs + len(states)}")
        return session

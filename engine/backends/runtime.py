"""Which ONNX Runtime this process has, and one clear error when it has none.

voxflip runs trained models with ONNX Runtime, from one of two distributions that install
the same ``onnxruntime`` module: ``onnxruntime`` (CPU; the ``cpu`` extra) or
``onnxruntime-gpu`` (CUDA and TensorRT providers; the ``gpu`` extra). Installed together
they overwrite each other's files, and removing either breaks the other, so neither is a
core dependency: an install names exactly one (docs/install.md).
"""

from __future__ import annotations

import logging
import os
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ArtifactMismatchError, MissingDependencyError, install_hint

log = logging.getLogger(__name__)

RUNTIME_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu")
_warned = False


def installed_runtimes() -> list[str]:
    """The ONNX Runtime distributions installed in this environment (by their metadata)."""
    found = []
    for name in RUNTIME_DISTRIBUTIONS:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def conflict_warning(distributions: list[str]) -> str | None:
    """The warning for an environment holding both runtimes, or None when it holds at most one."""
    if len(set(distributions) & set(RUNTIME_DISTRIBUTIONS)) < 2:
        return None
    return ("both onnxruntime and onnxruntime-gpu are installed; they share one folder, so what runs is whichever "
            "was installed last. Keep one: pip uninstall -y onnxruntime onnxruntime-gpu, then "
            f"{install_hint('cpu')} or the same with [gpu]")


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/voxflip`` (default ``~/.cache/voxflip``): caches that must not go beside an installed model."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "voxflip"


def import_onnxruntime(purpose: str = "trained models") -> ModuleType:
    """``import onnxruntime``, or a :class:`MissingDependencyError` naming the extras that provide it.

    Args:
        purpose: what needs it, for the message (``"the flow converters"``).
    """
    global _warned
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError(
            f"{purpose} need an ONNX runtime and none is installed: {install_hint('cpu')}, "
            'or "voxflip[gpu]" on a CUDA machine'
        ) from None
    if not _warned:
        _warned = True
        warning = conflict_warning(installed_runtimes())
        if warning:
            log.warning(warning)
    return onnxruntime


#: ONNX Runtime execution providers, fastest first
PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def provider_chain(available: list[str] | tuple[str, ...]) -> list[str]:
    """The providers of :data:`PROVIDER_ORDER` that ``available`` has, in that order; CPU always last."""
    chain = [p for p in PROVIDER_ORDER[:-1] if p in available]
    return [*chain, "CPUExecutionProvider"]


def provider_options(chain: list[str], cache_dir: Path) -> list[Any]:
    """``providers`` for ``InferenceSession``: TensorRT's with its engine and timing caches in ``cache_dir``."""
    out: list[Any] = []
    for name in chain:
        if name == "TensorrtExecutionProvider":
            out.append((name, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
                               "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache_dir),
                               "trt_fp16_enable": True}))
        else:
            out.append(name)
    return out


def ort_session(path: Path, threads: int, *, cache_dir: Path | None = None, purpose: str = "trained models",
                hint: str = ""):
    """An ONNX Runtime session on ``path`` with the provider chain; returns (session, the providers it uses).

    ``threads`` intra-op threads that do not spin (an audio engine shares its core with the audio
    thread); a graph ONNX Runtime cannot load is a one-line ArtifactMismatchError ending in ``hint``.
    """
    ort = import_onnxruntime(purpose)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    chain = provider_chain(ort.get_available_providers())
    try:
        session = ort.InferenceSession(str(path), sess_options=options,
                                       providers=provider_options(chain, cache_dir or user_cache_dir() / "ort-trt"))
    except Exception as exc:  # onnxruntime raises InvalidProtobuf, Fail, InvalidGraph, RuntimeException ...
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ArtifactMismatchError(f"{path}: onnxruntime cannot load this graph: {reason}{hint}") from None
    return session, list(session.get_providers())

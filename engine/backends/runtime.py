"""Which ONNX Runtime this process has, and one clear error when it has none.

voxflip runs trained models with ONNX Runtime, from one of two distributions that install
the same ``onnxruntime`` module: ``onnxruntime`` (CPU; the ``cpu`` extra) or
``onnxruntime-gpu`` (CUDA and TensorRT providers; the ``gpu`` extra). Installed together
they overwrite each other's files, and removing either breaks the other, so neither is a
core dependency: an install names exactly one (docs/install.md).
"""

from __future__ import annotations

import logging
from importlib import metadata
from types import ModuleType

from ..errors import MissingDependencyError, install_hint

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

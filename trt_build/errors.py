"""The errors ``voxflip.trt_build`` raises.

``trt_build`` imports nothing else of voxflip (its only input is an exported model folder), so
it has its own small family; the front door (:mod:`voxflip.cli_trt`) turns each into the
matching :mod:`voxflip.engine.errors` type, and every message is one line that names the value
received, what is allowed and how to fix it.
"""

from __future__ import annotations


class TrtBuildError(Exception):
    """Base class of every error trt_build raises on purpose."""


class BuildConfigError(TrtBuildError, ValueError):
    """A build option or a manifest field is invalid (the engine's ``ConfigError``)."""


class GraphMismatchError(TrtBuildError):
    """An exported graph cannot be built as it is (the engine's ``ArtifactMismatchError``)."""


class TensorRTMissingError(TrtBuildError, ImportError):
    """TensorRT (or the CUDA runtime it needs) is not importable here (the engine's ``MissingDependencyError``)."""


#: what the user reads when ``import tensorrt`` fails: what is missing and how to get it
TENSORRT_HINT = ("TensorRT is not installed in this environment (import tensorrt failed); build-trt needs an NVIDIA "
                 "GPU machine with it: pip install tensorrt==10.* cuda-python (see docs/gpu.md), or run with "
                 "--onnx-only to write only the sanitised graphs")

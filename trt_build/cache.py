"""Engine cache keys and file names, and which GPU this process sees.

A TensorRT engine (a "plan") runs only on the TensorRT version and the GPU model it was built
for, and its speed depends on the precision and shape profile. :func:`engine_key` hashes
exactly those: the sanitised graph's sha256 (weights included), the TensorRT version, the GPU's
name and compute capability, the precision and the profile. A plan whose key is already in the
cache folder is reused, not rebuilt. The timing cache (kernel timings, shared by every graph)
is kept per TensorRT version and GPU.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import BuildConfigError
from .profiles import ShapeRange, profile_to_json

PRECISIONS = ("fp16", "fp32")
KEY_VERSION = 1


@dataclass(frozen=True)
class GpuIdentity:
    """The GPU an engine is built for: its name and compute capability (``"9.0"``)."""

    name: str
    compute_capability: str

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 128:
            raise BuildConfigError(f"GPU name {self.name!r} must be 1..128 characters")
        if not re.fullmatch(r"\d{1,2}\.\d{1,2}", self.compute_capability):
            raise BuildConfigError(f"compute capability {self.compute_capability!r} must look like '9.0'")

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") + f"-sm{self.compute_capability.replace('.', '')}"


def engine_key(graph_sha256: str, tensorrt_version: str, gpu: GpuIdentity, precision: str,
               profile: Mapping[str, ShapeRange]) -> str:
    """The cache key of one engine (24 hex digits); any change of its inputs changes it."""
    if precision not in PRECISIONS:
        raise BuildConfigError(f"precision={precision!r} must be one of {', '.join(PRECISIONS)}")
    if not re.fullmatch(r"[0-9a-f]{64}", graph_sha256):
        raise BuildConfigError(f"graph_sha256={graph_sha256[:80]!r} must be 64 hex digits (a sha256)")
    text = json.dumps({"v": KEY_VERSION, "graph": graph_sha256, "tensorrt": tensorrt_version, "gpu": gpu.name,
                       "cc": gpu.compute_capability, "precision": precision, "profile": profile_to_json(profile)},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def plan_name(role: str, precision: str, key: str) -> str:
    """The engine's file name in the cache folder: ``model.step.fp16.<key>.plan``."""
    return f"model.{role}.{precision}.{key}.plan"


def timing_cache_name(tensorrt_version: str, gpu: GpuIdentity) -> str:
    version = re.sub(r"[^0-9A-Za-z.]+", "-", tensorrt_version)
    return f"timing.trt{version}.{gpu.slug}.cache"


def detect_gpu(device: int = 0) -> GpuIdentity | None:
    """The name and compute capability of CUDA device ``device``, or None where none is seen.

    Asks cuda-python's runtime first, then ``nvidia-smi``; never imports torch.
    """
    try:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python
        err, props = cudart.cudaGetDeviceProperties(device)
        if int(err) == 0:
            name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
            return GpuIdentity(name.strip("\0 "), f"{props.major}.{props.minor}")
    except Exception:  # no cuda-python, no driver, no device: try nvidia-smi
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader", f"--id={device}"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    parts = [p.strip() for p in out.strip().splitlines()[0].split(",")] if out.strip() else []
    return GpuIdentity(parts[0], parts[1]) if len(parts) == 2 else None

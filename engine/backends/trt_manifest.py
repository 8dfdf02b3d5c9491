"""Check the ``trt`` section ``voxflip build-trt`` adds to a flow model's manifest.

The section lists the sanitised graphs (batch axis, folded constants) and the TensorRT engines
built from them (format: ``voxflip.trt_build.manifest``). Like every other manifest field it is
data from elsewhere, so each value is checked before anything is opened: types, bounded
sizes, and file paths that stay inside the manifest's folder; a bad one is a one-line
:class:`~voxflip.engine.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import ArtifactMismatchError, ConfigError

SECTION_VERSION = 1
GRAPH_ROLES = ("step", "encoder", "decoder")
PRECISIONS = ("fp16", "fp32")
MAX_STREAMS = 4096
MAX_ENGINES = 64
MAX_PROFILE_INPUTS = 300
MAX_PROFILE_DIM = 1 << 16
_SECTION_KEYS = ("format_version", "max_streams", "graphs", "engines", "timing_cache")
_GRAPH_KEYS = {"file", "sha256", "precision", "profile", "fp16_error"}
_ENGINE_KEYS = {"role", "file", "key", "precision", "tensorrt_version", "gpu", "compute_capability", "graph_sha256"}
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_KEY = re.compile(r"[0-9a-f]{8,64}\Z")
_VERSION = re.compile(r"[0-9A-Za-z.+_-]{1,40}\Z")
_CC = re.compile(r"\d{1,2}\.\d{1,2}\Z")


def _file(folder: Path, value: Any, where: str, path: Path) -> Path:
    from .onnx_step import _file_in  # the same path rules as the manifest's files (import here: no cycle)

    return _file_in(folder, value, where, path)


def _profile(value: Any, where: str, path: Path) -> None:
    if not isinstance(value, dict) or not 1 <= len(value) <= MAX_PROFILE_INPUTS:
        raise ConfigError(f"{path}: {where} must be an object of 1..{MAX_PROFILE_INPUTS} input: [min, opt, max] "
                          f"shapes, got {str(value)[:60]}")
    for name, shapes in value.items():
        ok = (isinstance(shapes, list) and len(shapes) == 3
              and all(isinstance(s, list) and 1 <= len(s) <= 4 and len(s) == len(shapes[0]) for s in shapes)
              and all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_PROFILE_DIM
                      for s in shapes for d in s)
              and all(lo <= mid <= hi for lo, mid, hi in zip(*shapes, strict=True)))
        if not ok:
            raise ConfigError(f"{path}: {where}.{str(name)[:60]}={str(shapes)[:80]} must be [min, opt, max] shapes of "
                              f"equal rank 1..4, whole numbers in 1..{MAX_PROFILE_DIM}, min <= opt <= max")


def check_trt_section(section: Any, path: Path) -> dict[str, Any]:
    """Check the manifest's ``trt`` section (see the module docstring); returns it unchanged.

    Raises:
        ArtifactMismatchError: another section format version.
        ConfigError: a missing, unknown or out-of-range field, a path leaving the folder.
    """
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: trt must be an object (written by voxflip build-trt), got {type(section).__name__}")
    unknown = sorted(str(k) for k in section if k not in _SECTION_KEYS)
    if unknown:
        raise ConfigError(f"{path}: trt has an unknown field {unknown[0][:60]!r}; it has: {', '.join(_SECTION_KEYS)}")
    if section.get("format_version") != SECTION_VERSION:
        raise ArtifactMismatchError(f"{path}: trt.format_version={str(section.get('format_version'))[:20]} is not "
                                    f"{SECTION_VERSION}; rebuild: voxflip build-trt {path.parent}")
    streams = section.get("max_streams")
    if not isinstance(streams, int) or isinstance(streams, bool) or not 1 <= streams <= MAX_STREAMS:
        raise ConfigError(f"{path}: trt.max_streams={str(streams)[:20]} must be a whole number in 1..{MAX_STREAMS}")
    graphs = section.get("graphs")
    if not isinstance(graphs, dict) or not set(graphs) <= set(GRAPH_ROLES):
        raise ConfigError(f"{path}: trt.graphs must be an object with roles among {', '.join(GRAPH_ROLES)}, "
                          f"got {str(graphs)[:60]}")
    for role, entry in graphs.items():
        where = f"trt.graphs.{role}"
        if not isinstance(entry, dict) or not {"file", "sha256", "precision", "profile"} <= set(entry) <= _GRAPH_KEYS:
            raise ConfigError(f"{path}: {where} must have file, sha256, precision and profile (and fp16_error), "
                              f"got {str(entry)[:60]}")
        _file(path.parent, entry["file"], f"{where}.file", path)
        if not isinstance(entry["sha256"], str) or not _SHA256.match(entry["sha256"]):
            raise ConfigError(f"{path}: {where}.sha256={str(entry['sha256'])[:70]!r} must be 64 hex digits")
        if entry["precision"] not in PRECISIONS:
            raise ConfigError(f"{path}: {where}.precision={str(entry['precision'])[:20]!r} must be one of "
                              f"{', '.join(PRECISIONS)}")
        error = entry.get("fp16_error", 0.0)
        if isinstance(error, bool) or not isinstance(error, int | float) or not 0 <= error < 1e6:
            raise ConfigError(f"{path}: {where}.fp16_error={str(error)[:20]} must be a number >= 0")
        _profile(entry["profile"], f"{where}.profile", path)
    engines = section.get("engines")
    if not isinstance(engines, list) or len(engines) > MAX_ENGINES:
        raise ConfigError(f"{path}: trt.engines must be a list of at most {MAX_ENGINES} objects, got {str(engines)[:60]}")
    for i, entry in enumerate(engines):
        where = f"trt.engines[{i}]"
        if not isinstance(entry, dict) or set(entry) != _ENGINE_KEYS:
            raise ConfigError(f"{path}: {where} must have exactly {', '.join(sorted(_ENGINE_KEYS))}, got "
                              f"{str(entry)[:60]}")
        if entry["role"] not in GRAPH_ROLES or entry["precision"] not in PRECISIONS:
            raise ConfigError(f"{path}: {where}: role {str(entry['role'])[:20]!r} must be one of "
                              f"{', '.join(GRAPH_ROLES)} and precision {str(entry['precision'])[:20]!r} one of "
                              f"{', '.join(PRECISIONS)}")
        _file(path.parent, entry["file"], f"{where}.file", path)
        checks = (("key", _KEY), ("graph_sha256", _SHA256), ("tensorrt_version", _VERSION),
                  ("compute_capability", _CC))
        for field, pattern in checks:
            if not isinstance(entry[field], str) or not pattern.match(entry[field]):
                raise ConfigError(f"{path}: {where}.{field}={str(entry[field])[:70]!r} is malformed")
        if not isinstance(entry["gpu"], str) or not 1 <= len(entry["gpu"]) <= 128:
            raise ConfigError(f"{path}: {where}.gpu={str(entry['gpu'])[:70]!r} must be a GPU name of 1..128 characters")
    if "timing_cache" in section:
        _file(path.parent, section["timing_cache"], "trt.timing_cache", path)
    return section

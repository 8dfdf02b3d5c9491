"""Read an exported model's manifest and write its ``trt`` section (sanitised graphs and engines).

``voxflip build-trt`` adds one field to ``model.manifest.json``::

    "trt": {
      "format_version": 1,
      "max_streams": 64,                                   # the profiles' max batch
      "graphs": {"step": {"file": "trt/model.step.onnx",   # sanitised, batch axis, weights inside
                          "sha256": "...", "precision": "fp16", "fp16_error": 0.013,
                          "profile": {"mel": [[1, 80, 1], [8, 80, 2], [64, 80, 5]], ...}}, ...},
      "engines": [{"role": "step", "file": "trt/model.step.fp16.<key>.plan", "key": "<key>",
                   "precision": "fp16", "tensorrt_version": "10.3.0", "gpu": "NVIDIA H100 80GB HBM3",
                   "compute_capability": "9.0", "graph_sha256": "..."}],
      "timing_cache": "trt/timing.trt10.3.0.nvidia-h100-80gb-hbm3-sm90.cache"
    }

Every path is relative to the manifest's folder. The engine checks this section on load
(``voxflip.engine.backends.trt_manifest``) with the rest of the manifest; ``engines`` is empty
after ``--onnx-only``. Engines built for another GPU or TensorRT version stay listed (a
folder can carry plans for several machines); the runtime picks the one that fits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import BuildConfigError, GraphMismatchError

SECTION = "trt"
SECTION_VERSION = 1
#: the largest manifest read (the engine's limit too)
MAX_MANIFEST_BYTES = 1 << 20
GRAPH_ROLES = ("step", "encoder", "decoder")


def manifest_path(model: str | Path) -> Path:
    """The manifest of ``model``: a ``*.manifest.json`` itself, or the one manifest in a folder."""
    path = Path(model)
    if path.is_dir():
        found = sorted(path.glob("*.manifest.json"))
        if len(found) != 1:
            raise BuildConfigError(f"{str(path)!r} holds {len(found)} *.manifest.json files; build-trt takes an "
                                   "exported model folder with exactly one, or the manifest itself")
        return found[0]
    if path.suffix == ".onnx":
        path = path.with_suffix(".manifest.json")
    if not path.name.endswith(".manifest.json") or not path.is_file():
        raise BuildConfigError(f"MODEL={str(model)!r} is not an exported model folder or its *.manifest.json "
                               "(voxflip export CHECKPOINT -o DIR/model.onnx writes one)")
    return path


def read_manifest(path: Path) -> dict[str, Any]:
    """The parsed manifest (size-limited; the engine's checker validates its fields)."""
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise BuildConfigError(f"{path}: {size} bytes is too large for a model manifest (at most {MAX_MANIFEST_BYTES})")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise GraphMismatchError(f"{path}: not a valid JSON model manifest ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise BuildConfigError(f"{path}: a model manifest is a JSON object, got {type(value).__name__}")
    return value


def graph_entry(file: str, sha256: str, precision: str, fp16_error: float | None,
                profile: dict[str, list[list[int]]]) -> dict[str, Any]:
    entry: dict[str, Any] = {"file": file, "sha256": sha256, "precision": precision, "profile": profile}
    if fp16_error is not None:
        entry["fp16_error"] = float(fp16_error)
    return entry


def with_section(manifest: dict[str, Any], *, max_streams: int, graphs: dict[str, dict[str, Any]],
                 engines: list[dict[str, Any]], timing_cache: str | None) -> dict[str, Any]:
    """A copy of ``manifest`` whose ``trt`` section lists ``graphs`` and ``engines``.

    Engines already listed for another key (another GPU or TensorRT version) are kept, unless
    their file is gone; an entry with the same key is replaced.
    """
    old = manifest.get(SECTION) if isinstance(manifest.get(SECTION), dict) else {}
    keys = {e["key"] for e in engines}
    kept = [e for e in old.get("engines", []) if isinstance(e, dict) and e.get("key") not in keys]
    section: dict[str, Any] = {"format_version": SECTION_VERSION, "max_streams": max_streams, "graphs": graphs,
                               "engines": kept + engines}
    if timing_cache is not None:
        section["timing_cache"] = timing_cache
    elif "timing_cache" in old:
        section["timing_cache"] = old["timing_cache"]
    out = dict(manifest)
    out[SECTION] = section
    return out


def prune_missing(manifest: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Drop listed engines whose plan file is no longer in ``folder``."""
    section = manifest.get(SECTION)
    if not isinstance(section, dict):
        return manifest
    section = dict(section)
    section["engines"] = [e for e in section.get("engines", []) if (folder / e["file"]).is_file()]
    return {**manifest, SECTION: section}


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` to ``path`` atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)

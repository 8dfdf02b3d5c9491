"""Run a streaming step graph exported by ``voxflip export`` with ONNX Runtime (no torch).

The artifact is ``model.onnx`` + ``model.decoder.onnx`` + ``model.manifest.json``, and
``model.weights`` (the graphs' shared external data) from exports that write it. Loading
checks the manifest against this engine (format version, model kind, mel setup, the
state tensors the graph takes) and refuses a mismatch with an
:class:`~voxflip.engine.errors.ArtifactMismatchError` that says what differs.

A model folder is data from elsewhere (docs/security.md): before anything is allocated or
opened, every manifest field is checked -- its type, sizes within the ``MAX_*`` limits below,
``files`` relative paths that stay inside the manifest's folder -- and a bad one is a one-line
:class:`~voxflip.engine.errors.ConfigError` naming the manifest, the field and what is allowed.
A graph ONNX Runtime cannot load (a corrupt ``.onnx``) is a one-line ArtifactMismatchError.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import ArtifactMismatchError, ConfigError
from ..features.mel import MelConfig
from .runtime import ort_session
from .trt_manifest import check_trt_section

FORMAT_VERSION = 1
#: the largest manifest read (a real one is about 4 kB)
MAX_MANIFEST_BYTES = 1 << 20
#: chunk_frames: 1 s at the 10 ms mel hop, the longest chunk a flow converter streams
MAX_CHUNK_FRAMES = 100
#: lookahead_frames: 0.5 s of future frames
MAX_LOOKAHEAD_FRAMES = 50
#: state: tensors, dimensions per tensor, size of one dimension, and values of all tensors together (64 MiB)
MAX_STATE_TENSORS = 256
MAX_STATE_DIMS = 4
MAX_STATE_DIM = 4096
MAX_STATE_VALUES = 1 << 24
#: noise_scale: prior noise at inference (exports write 0 or a value near 1)
MAX_NOISE_SCALE = 10.0
FILE_ROLES = ("step", "decoder", "encoder", "weights")
_REQUIRED_FILES = ("step", "decoder")
_MANIFEST_KEYS = ("format_version", "model", "onnx_opset", "files", "sample_rate", "hop_samples", "mel",
                  "chunk_frames", "lookahead_frames", "noise_scale", "residual", "state", "config_hash",
                  "model_config", "trt")
_STATE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


def _session(path: Path, threads: int):
    """An ONNX Runtime session with the provider chain (TensorRT -> CUDA -> CPU, as this runtime has them)."""
    return ort_session(path, threads, purpose="flow models",
                       hint="; re-export it: voxflip export CHECKPOINT -o model.onnx")[0]


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _file_in(folder: Path, value: Any, where: str, path: Path) -> Path:
    """``files.<role>``: a relative path that stays inside the manifest's folder."""
    if not isinstance(value, str) or not value or len(value) > 255 or "\\" in value or "\0" in value:
        raise ConfigError(f"{path}: {where}={str(value)[:80]!r} must be a file name relative to the manifest's "
                          "folder, e.g. 'model.onnx'")
    rel = PurePosixPath(value)
    if rel.is_absolute() or ".." in rel.parts or Path(value).is_absolute():
        raise ConfigError(f"{path}: {where}={value!r} must be a relative path inside the manifest's folder "
                          f"{str(folder)!r} (no absolute path, no '..')")
    target = folder / rel
    try:
        inside = target.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        raise ConfigError(f"{path}: {where}={value!r} leads outside the manifest's folder {str(folder)!r} "
                          "(through a link); keep the model's files in its folder")
    return target


def find_manifest(model: str | Path, what: str, export: str, suffix: str = ".manifest.json") -> Path:
    """An export folder (holding exactly one ``*{suffix}``), its ``.onnx`` or its manifest -> the manifest's
    path; ``what`` names the model in messages, ``export`` is the command that writes one."""
    path = Path(model)
    if path.is_dir():
        found = sorted(path.glob(f"*{suffix}"))
        if len(found) != 1:
            raise ConfigError(f"{what} folder {str(path)!r} holds {len(found)} manifests (*{suffix}); it needs "
                              f"exactly one ({export} writes it)")
        return found[0]
    if path.suffix == ".onnx":
        path = path.with_name(path.stem + suffix)
    if not path.is_file():
        raise ConfigError(f"{what} {str(model)!r}: no manifest at {str(path)!r}; export one with {export}")
    return path


def read_manifest(path: Path, what: str) -> Any:
    """A manifest's JSON, refused in one line when too large, not JSON or nested too deeply."""
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size} bytes is too large for a {what} manifest "
                          f"(at most {MAX_MANIFEST_BYTES}); is it the right file?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactMismatchError(f"{path}: not valid JSON ({getattr(exc, 'msg', None) or exc.reason})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a {what} manifest") from None


def single_graph(manifest: dict[str, Any], path: Path, example: str) -> Path:
    """``files`` of a one-graph export: ``{"graph": NAME}``, NAME inside the manifest's folder."""
    files = manifest["files"]
    if not isinstance(files, dict) or sorted(files) != ["graph"]:
        raise ConfigError(f"{path}: files={_show(files, 80)} must be {{\"graph\": \"{example}\"}}")
    return _file_in(path.parent, files["graph"], "files.graph", path)


def check_header(manifest: Any, path: Path, *, keys: tuple[str, ...], kind: str, version: int, what: str,
                 export: str) -> None:
    """What every manifest checks first: a JSON object, no field beyond ``keys``, ``format_version`` and
    ``model`` this voxflip reads (``export``: the command that writes a current one)."""
    if not isinstance(manifest, dict):
        raise ConfigError(f"{path}: a {what} manifest is a JSON object, got {type(manifest).__name__}")
    unknown = sorted(k for k in manifest if k not in keys)
    if unknown:
        raise ConfigError(f"{path}: unknown field {str(unknown[0])[:60]!r}; a {what} manifest has: {', '.join(keys)}")
    if manifest.get("format_version") != version or manifest.get("model") != kind:
        raise ArtifactMismatchError(f"{path} is format {_show(manifest.get('format_version'))} of model "
                                    f"{_show(manifest.get('model'))}; this voxflip reads format {version} of "
                                    f"{kind!r}. Re-export it: {export}")


def check_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    """Check every field a flow model's manifest needs, before anything is allocated or opened.

    Args:
        manifest: the parsed ``model.manifest.json``.
        path: where it was read from (for messages; ``files`` are relative to its folder).

    Returns:
        The manifest, unchanged.

    Raises:
        ArtifactMismatchError: another format version or model kind, another mel setup.
        ConfigError: a missing or unknown field, a value of the wrong type or outside
            its limit, a file path that is absolute or leaves the folder (one line each).
    """
    check_header(manifest, path, keys=_MANIFEST_KEYS, kind="s2s-flow", version=FORMAT_VERSION, what="flow model",
                 export="voxflip export CHECKPOINT -o model.onnx")
    missing = [k for k in ("files", "mel", "chunk_frames", "lookahead_frames", "noise_scale", "state") if k not in manifest]
    if missing:
        raise ConfigError(f"{path}: the field {missing[0]!r} is missing; a flow model's manifest has files, mel, "
                          "chunk_frames, lookahead_frames, noise_scale and state. Re-export it: voxflip export "
                          "CHECKPOINT -o model.onnx")
    if MelConfig.engine_setup(manifest.get("mel"), (MelConfig.for_to_speech,)) is None:
        mel, default = manifest.get("mel"), MelConfig.for_to_speech()
        raise ArtifactMismatchError(
            f"{path} was exported for the mel setup {str(mel)[:300]!r}; this engine computes {asdict(default)!r}, "
            f"with win_samples in {default.hop_samples}..{default.n_fft}"
        )
    for key, low, high in (("chunk_frames", 1, MAX_CHUNK_FRAMES), ("lookahead_frames", 0, MAX_LOOKAHEAD_FRAMES)):
        if not _whole(manifest.get(key, "missing"), low, high):
            raise ConfigError(f"{path}: {key}={str(manifest.get(key, 'missing'))[:40]} must be a whole number of "
                              f"frames in {low}..{high}")
    noise = manifest.get("noise_scale", "missing")
    if (isinstance(noise, bool) or not isinstance(noise, int | float) or not math.isfinite(noise)
            or not 0 <= noise <= MAX_NOISE_SCALE):
        raise ConfigError(f"{path}: noise_scale={str(noise)[:40]} must be a number in [0, {MAX_NOISE_SCALE:g}]")
    if not isinstance(manifest.get("residual", False), bool):
        raise ConfigError(f"{path}: residual={str(manifest['residual'])[:40]} must be true or false")
    state = manifest.get("state", "missing")
    if not isinstance(state, list) or not 1 <= len(state) <= MAX_STATE_TENSORS:
        raise ConfigError(f"{path}: state must be a list of 1..{MAX_STATE_TENSORS} objects "
                          '{"name": ..., "shape": [...]}' f", got {str(state)[:60]}")
    names: set[str] = set()
    values = 0
    for i, entry in enumerate(state):
        where = f"state[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"name", "shape"}:
            raise ConfigError(f'{path}: {where} must be an object {{"name": ..., "shape": [...]}}, got {str(entry)[:60]}')
        name, shape = entry["name"], entry["shape"]
        if not isinstance(name, str) or not _STATE_NAME.match(name) or name in names:
            raise ConfigError(f"{path}: {where}.name={str(name)[:60]!r} must be a unique identifier "
                              "(letters, digits, '_', at most 64)")
        names.add(name)
        if (not isinstance(shape, list) or not 1 <= len(shape) <= MAX_STATE_DIMS
                or not all(_whole(d, 1, MAX_STATE_DIM) for d in shape)):
            raise ConfigError(f"{path}: {where}.shape={str(shape)[:60]} must be 1..{MAX_STATE_DIMS} whole "
                              f"numbers in 1..{MAX_STATE_DIM}")
        values += math.prod(shape)
    if values > MAX_STATE_VALUES:
        raise ConfigError(f"{path}: state: its tensors hold {values} values together; at most {MAX_STATE_VALUES} "
                          f"({MAX_STATE_VALUES * 4 // (1 << 20)} MiB of float32) are allowed")
    files = manifest.get("files", "missing")
    if not isinstance(files, dict):
        raise ConfigError(f"{path}: files must be an object of role: file name ({', '.join(FILE_ROLES)}), "
                          f"got {str(files)[:60]}")
    for role in files:
        if role not in FILE_ROLES:
            raise ConfigError(f"{path}: files has an unknown role {str(role)[:40]!r}; roles: {', '.join(FILE_ROLES)}")
    for role in _REQUIRED_FILES:
        if role not in files:
            raise ConfigError(f"{path}: files.{role} is missing; a flow model needs files.step and files.decoder "
                              "(re-export it: voxflip export CHECKPOINT -o model.onnx)")
    for role, value in files.items():
        _file_in(path.parent, value, f"files.{role}", path)
    if "trt" in manifest:   # written by voxflip build-trt: sanitised graphs and TensorRT engines
        check_trt_section(manifest["trt"], path)
    return manifest


class OnnxStepModel:
    """The exported S2S flow model: ``step`` on the main graph, ``decode`` on the decoder graph."""

    def __init__(self, manifest_path: str | Path, *, threads: int = 1) -> None:
        path = Path(manifest_path)
        if path.suffix == ".onnx":
            path = path.with_suffix(".manifest.json")
        if not path.is_file():
            raise ConfigError(f"model manifest {str(path)!r} does not exist; export one with: voxflip export CHECKPOINT -o model.onnx")
        manifest = read_manifest(path, "model")
        self.manifest = check_manifest(manifest, path)
        self.path = path
        self.mel = MelConfig(**manifest["mel"])
        self.chunk_frames = manifest["chunk_frames"]
        self.lookahead_frames = manifest["lookahead_frames"]
        # residual: the flow decodes a correction to the singing frame, which the graphs add back
        self.residual = manifest.get("residual", False)
        self.n_mels = self.mel.n_mels
        self.state_names = [s["name"] for s in manifest["state"]]
        self.state_shapes = [tuple(s["shape"]) for s in manifest["state"]]
        files = manifest["files"]
        for role in FILE_ROLES:
            if role in files and not (path.parent / files[role]).is_file():
                raise ArtifactMismatchError(
                    f"{path}: its {role} file {files[role]!r} is missing beside it; keep the files "
                    f"{', '.join(sorted(files.values()))} and the manifest together"
                )
        if self.residual and "encoder" not in files:
            raise ArtifactMismatchError(f"{path}: a residual model needs its encoder graph ('files' has no 'encoder'); "
                                        "re-export it: voxflip export CHECKPOINT -o model.onnx")
        self.flow_names = [n for n in self.state_names if n.startswith("flow")]
        self.encoder_names = [n for n in self.state_names if not n.startswith("flow")]
        self._decoder_path = path.parent / files["decoder"]
        self._encoder_path = path.parent / files["encoder"] if "encoder" in files else None
        self._threads = threads
        # every graph is opened and its inputs and outputs checked here, so a corrupt or foreign
        # graph fails at start-up with one line, never in the audio worker
        self._step = self._open(files["step"], ["mel", "noise"], self.state_names, 4)
        self._decoder = self._open(files["decoder"], ["z", *(["skip"] if self.residual else [])], self.flow_names, 1)
        self._encoder = (self._open(files["encoder"], ["mel"], self.encoder_names, 4 if self.residual else 3)
                         if self._encoder_path is not None else None)

    def _open(self, name: str, inputs: list[str], states: list[str], outputs: int):
        """A session on the graph file ``name``, checked: its inputs and how many outputs it has."""
        session = _session(self.path.parent / name, self._threads)
        wanted = {*inputs, *(f"state_in.{n}" for n in states)}
        got = {i.name for i in session.get_inputs()}
        if wanted != got:
            raise ArtifactMismatchError(f"{self.path}: the graph {name!r} takes inputs {sorted(got)[:12]}, "
                                        f"not the manifest's {sorted(wanted)[:12]}")
        count = len(session.get_outputs())
        if count != outputs + len(states):
            raise ArtifactMismatchError(f"{self.path}: the graph {name!r} has {count} outputs; its manifest "
                                        f"state needs {outputs + len(states)}")
        return session

    def init_state(self) -> dict[str, np.ndarray]:
        return {n: np.zeros(s, np.float32) for n, s in zip(self.state_names, self.state_shapes, strict=True)}

    def step(self, mel: np.ndarray, noise: np.ndarray, state: dict[str, np.ndarray]):
        """``mel``, ``noise``: (frames, n_mels). Returns (speech_mel, mu, logs, log_dur, new state), frames first."""
        feeds = {"mel": np.ascontiguousarray(mel.T[None], np.float32),
                 "noise": np.ascontiguousarray(noise.T[None], np.float32)}
        feeds.update({f"state_in.{n}": v for n, v in state.items()})
        out = self._step.run(None, feeds)
        new = dict(zip(self.state_names, out[4:], strict=True))
        return out[0][0].T, out[1][0].T, out[2][0].T, out[3][0], new

    def encode(self, mel: np.ndarray, state: dict[str, np.ndarray]):
        """The step without the flow: ``(mu, logs, log_dur, skip, new state)``, frames first; ``skip``
        is the input mel delayed to meet ``mu`` (what :meth:`decode` adds back) for a residual model,
        else None. The flow's state entries pass through unchanged. Artifacts without an encoder
        graph run the whole step."""
        if self._encoder is None:
            _, mu, logs, log_dur, new = self.step(mel, np.zeros_like(mel), state)
            return mu, logs, log_dur, None, new
        feeds = {"mel": np.ascontiguousarray(mel.T[None], np.float32)}
        feeds.update({f"state_in.{n}": state[n] for n in self.encoder_names})
        out = self._encoder.run(None, feeds)
        skip = out[3][0].T if self.residual else None
        new = dict(state)
        new.update(zip(self.encoder_names, out[4 if self.residual else 3 :], strict=True))
        return out[0][0].T, out[1][0].T, out[2][0], skip, new

    def init_decoder_state(self) -> dict[str, np.ndarray]:
        return {n: v for n, v in self.init_state().items() if n.startswith("flow")}

    def decode(self, z: np.ndarray, state: dict[str, np.ndarray],
               skip: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The flow alone on latent frames ``z`` (frames, n_mels); a residual model adds ``skip``
        (the singing mel frames the latents came from, frames first) to its output."""
        feeds = {"z": np.ascontiguousarray(z.T[None], np.float32)}
        if self.residual:
            if skip is None or skip.shape != z.shape:
                raise ValueError(f"a residual model decodes with skip frames shaped like z {z.shape}, got "
                                 f"{None if skip is None else skip.shape}")
            feeds["skip"] = np.ascontiguousarray(skip.T[None], np.float32)
        feeds.update({f"state_in.{n}": state[n] for n in self.flow_names})
        out = self._decoder.run(None, feeds)
        return out[0][0].T, dict(zip(self.flow_names, out[1:], strict=True))

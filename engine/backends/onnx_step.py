"""Run a streaming step graph exported by ``voxflip export`` with ONNX Runtime (no torch).

The artifact is ``model.onnx`` + ``model.decoder.onnx`` + ``model.manifest.json``, and
``model.weights`` (the graphs' shared external data) from exports that write it. Loading
checks the manifest against this engine (format version, model kind, mel setup, the
state tensors the graph takes) and refuses a mismatch with an
:class:`~voxflip.engine.errors.ArtifactMismatchError` that says what differs.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import ArtifactMismatchError, ConfigError
from ..features.mel import MelConfig
from .runtime import import_onnxruntime

FORMAT_VERSION = 1


def _session(path: Path, threads: int):
    ort = import_onnxruntime("flow models")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # an audio engine shares its core with the audio thread: no busy-waiting worker threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


class OnnxStepModel:
    """The exported S2S flow model: ``step`` on the main graph, ``decode`` on the decoder graph."""

    def __init__(self, manifest_path: str | Path, *, threads: int = 1) -> None:
        path = Path(manifest_path)
        if path.suffix == ".onnx":
            path = path.with_suffix(".manifest.json")
        if not path.is_file():
            raise ConfigError(f"model manifest {str(path)!r} does not exist; export one with: voxflip export CHECKPOINT -o model.onnx")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ArtifactMismatchError(f"{path}: not valid JSON ({exc.msg})") from None
        self.manifest = manifest
        self.path = path
        if manifest.get("format_version") != FORMAT_VERSION or manifest.get("model") != "s2s-flow":
            raise ArtifactMismatchError(
                f"{path} is format {manifest.get('format_version')!r} of model {manifest.get('model')!r}; this voxflip "
                f"reads format {FORMAT_VERSION} of 's2s-flow'. Re-export it: voxflip export CHECKPOINT -o model.onnx"
            )
        expected = asdict(MelConfig.for_to_speech())
        if manifest.get("mel") != expected:
            raise ArtifactMismatchError(
                f"{path} was exported for the mel setup {manifest.get('mel')!r}; this engine computes {expected!r}"
            )
        self.mel = MelConfig(**manifest["mel"])
        self.chunk_frames = int(manifest["chunk_frames"])
        self.lookahead_frames = int(manifest["lookahead_frames"])
        # residual: the flow decodes a correction to the singing frame, which the graphs add back
        self.residual = bool(manifest.get("residual", False))
        self.n_mels = self.mel.n_mels
        self.state_names = [s["name"] for s in manifest["state"]]
        self.state_shapes = [tuple(s["shape"]) for s in manifest["state"]]
        files = manifest.get("files", {})
        for role in ("step", "decoder", "encoder", "weights"):
            if role in files and not (path.parent / files[role]).is_file():
                raise ArtifactMismatchError(
                    f"{path}: its {role} file {files[role]!r} is missing beside it; keep the files "
                    f"{', '.join(sorted(files.values()))} and the manifest together"
                )
        self._step = _session(path.parent / files["step"], threads)
        wanted = {"mel", "noise", *(f"state_in.{n}" for n in self.state_names)}
        got = {i.name for i in self._step.get_inputs()}
        if wanted != got:
            raise ArtifactMismatchError(f"{path}: the graph's inputs {sorted(got)} do not match the manifest's {sorted(wanted)}")
        self._decoder_path = path.parent / files["decoder"]
        self._decoder = None
        self._encoder_path = path.parent / files["encoder"] if "encoder" in files else None
        self._encoder = None
        self._threads = threads
        if self.residual and self._encoder_path is None:
            raise ArtifactMismatchError(f"{path}: a residual model needs its encoder graph ('files' has no 'encoder'); "
                                        "re-export it: voxflip export CHECKPOINT -o model.onnx")
        self.flow_names = [n for n in self.state_names if n.startswith("flow")]
        self.encoder_names = [n for n in self.state_names if not n.startswith("flow")]

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
        if self._encoder_path is None:
            _, mu, logs, log_dur, new = self.step(mel, np.zeros_like(mel), state)
            return mu, logs, log_dur, None, new
        if self._encoder is None:
            self._encoder = _session(self._encoder_path, self._threads)
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
        if self._decoder is None:
            self._decoder = _session(self._decoder_path, self._threads)
        feeds = {"z": np.ascontiguousarray(z.T[None], np.float32)}
        if self.residual:
            if skip is None or skip.shape != z.shape:
                raise ValueError(f"a residual model decodes with skip frames shaped like z {z.shape}, got "
                                 f"{None if skip is None else skip.shape}")
            feeds["skip"] = np.ascontiguousarray(skip.T[None], np.float32)
        feeds.update({f"state_in.{n}": state[n] for n in self.flow_names})
        out = self._decoder.run(None, feeds)
        return out[0][0].T, dict(zip(self.flow_names, out[1:], strict=True))

"""Neural vocoders (HiFi-GAN, Parallel WaveGAN, harmonic-plus-noise) exported by ``voxflip export-vocoder``, run by ONNX Runtime.

:class:`NeuralVocoder` has the face of :class:`~.mel_vocoder.MelVocoder`: ``init_state()``,
``step(log_mel, f0, state) -> (audio, state)`` and ``__call__(log_mel, f0)`` for a whole
utterance, so a converter takes either. As there, sample 0 is the centre of frame 0 and the
interval after frame ``j`` comes out when frame ``j + lookahead_frames`` goes in: a step returns
``hop`` samples per frame, less ``lookahead_frames`` hops on the first call (the graph's blocks
before frame 0 are dropped). No torch: the graph's streaming state is a dict of arrays, and the noise of
Parallel WaveGAN and harmonic-plus-noise comes from a seeded generator in the state, so a stream is reproducible.

An export folder holds ``vocoder.onnx`` and ``vocoder.manifest.json``. The manifest is data
from elsewhere (docs/security.md): every field is checked before anything is opened, and a bad
one is a one-line :class:`~voxflip.engine.errors.ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.onnx_step import (
    MAX_STATE_DIM,
    MAX_STATE_TENSORS,
    _session,
    _show,
    _whole,
    check_header,
    find_manifest,
    read_manifest,
    single_graph,
)
from ..errors import ArtifactMismatchError, ConfigError
from ..features.mel import MelConfig

FORMAT_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
VOCODERS = ("dsp", "hifigan", "pwg", "hn")
#: the neural kinds, each the name of a vocoder the package may ship (``--vocoder hn``)
NEURAL_KINDS = VOCODERS[1:]
_KEYS = ("format_version", "model", "onnx_opset", "files", "mel", "kind", "variant", "lookahead_frames", "inputs",
         "state", "model_config", "config_hash", "trained_steps")
_INPUTS = ("mel", "f0", "noise")
#: the engine's mel setups a vocoder may read (the flow converters', the speech -> singing models')
MEL_SETUPS = (MelConfig.for_to_speech, MelConfig.for_to_singing)


@dataclass
class NeuralVocoderState:
    tensors: dict[str, np.ndarray]
    rng: np.random.Generator
    skip: int                      # samples still to drop: the blocks before the first frame


def manifest_path(model: str | Path) -> Path:
    """A vocoder export folder, its ``.onnx`` or its manifest -> the manifest's path."""
    return find_manifest(model, "vocoder", "voxflip export-vocoder CHECKPOINT -o folder/vocoder.onnx", MANIFEST_SUFFIX)


def check_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    """Every field a vocoder manifest needs, checked before anything is opened (one-line errors)."""
    check_header(manifest, path, keys=_KEYS, kind="vocoder", version=FORMAT_VERSION, what="vocoder",
                 export="voxflip export-vocoder CHECKPOINT -o vocoder.onnx")
    missing = [k for k in ("files", "mel", "kind", "lookahead_frames", "inputs", "state") if k not in manifest]
    if missing:
        raise ConfigError(f"{path}: the field {missing[0]!r} is missing; re-export it with voxflip export-vocoder")
    if MelConfig.engine_setup(manifest["mel"], MEL_SETUPS) is None:
        raise ArtifactMismatchError(f"{path} was exported for the mel setup {str(manifest['mel'])[:300]!r}; this engine "
                                    "computes MelConfig.for_to_speech() and MelConfig.for_to_singing() only, with "
                                    "windows from their hop to their FFT size")
    if manifest["kind"] not in NEURAL_KINDS:
        raise ConfigError(f"{path}: kind={_show(manifest['kind'])} must be one of {', '.join(NEURAL_KINDS)}")
    if not _whole(manifest["lookahead_frames"], 0, 8):
        raise ConfigError(f"{path}: lookahead_frames={_show(manifest['lookahead_frames'])} must be a whole number in 0..8")
    inputs = manifest["inputs"]
    if (not isinstance(inputs, list) or not inputs or inputs[0] != "mel" or len(set(inputs)) != len(inputs)
            or any(i not in _INPUTS for i in inputs)):
        raise ConfigError(f"{path}: inputs={_show(inputs)} must list 'mel' first, then any of 'f0', 'noise'")
    state = manifest["state"]
    if not isinstance(state, list) or len(state) > MAX_STATE_TENSORS:
        raise ConfigError(f"{path}: state must be a list of at most {MAX_STATE_TENSORS} objects")
    for i, entry in enumerate(state):
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if (not isinstance(entry, dict) or entry.get("name") != f"s{i}" or not isinstance(shape, list)
                or len(shape) != 2 or not all(_whole(v, 1, MAX_STATE_DIM) for v in shape)):
            raise ConfigError(f"{path}: state[{i}]={_show(entry, 80)} must be {{\"name\": \"s{i}\", \"shape\": [channels, "
                              f"samples]}} with sizes in 1..{MAX_STATE_DIM}")
    single_graph(manifest, path, "vocoder.onnx")
    return manifest


class NeuralVocoder:
    """Log-mel frames (+ F0) -> audio through an exported HiFi-GAN, Parallel WaveGAN or harmonic-plus-noise graph."""

    def __init__(self, model: str | Path, *, threads: int = 1, seed: int = 0) -> None:
        self.manifest_path = path = manifest_path(model)
        self.manifest = check_manifest(read_manifest(path, "vocoder"), path)
        self.kind = self.manifest["kind"]
        self.mel = MelConfig(**self.manifest["mel"])
        self.hop = self.mel.hop_samples
        self.lookahead_frames = int(self.manifest["lookahead_frames"])
        self.inputs = list(self.manifest["inputs"])
        self._state_shapes = [(s["name"], tuple(s["shape"])) for s in self.manifest["state"]]
        self.session = _session(path.parent / self.manifest["files"]["graph"], threads)
        graph_inputs = [i.name for i in self.session.get_inputs()]
        wanted = [*self.inputs, *[f"state_in.{n}" for n, _ in self._state_shapes]]
        if graph_inputs != wanted:
            raise ArtifactMismatchError(f"{path}: the graph takes {graph_inputs[:6]}..., the manifest says "
                                        f"{wanted[:6]}...; re-export it")
        self._seed = seed

    def describe(self) -> str:
        return f"{self.kind} {self.manifest.get('variant', '')} ({self.manifest_path.parent.name})".replace("  ", " ")

    def init_state(self) -> NeuralVocoderState:
        return NeuralVocoderState({n: np.zeros((1, *shape), np.float32) for n, shape in self._state_shapes},
                                  np.random.default_rng(self._seed), self.lookahead_frames * self.hop)

    def step(self, log_mel: np.ndarray, f0_hz: np.ndarray,
             state: NeuralVocoderState) -> tuple[np.ndarray, NeuralVocoderState]:
        """``(n, n_mels)`` log-mel and ``(n,)`` F0 -> ``n * hop`` samples (``lookahead_frames`` behind;
        the first call returns ``lookahead_frames`` hops less)."""
        log_mel = np.asarray(log_mel, dtype=np.float32)
        n = log_mel.shape[0]
        if n == 0:
            return np.zeros(0, np.float32), state
        feed: dict[str, np.ndarray] = {"mel": np.ascontiguousarray(log_mel.T[None])}
        if "f0" in self.inputs:
            feed["f0"] = np.asarray(f0_hz, dtype=np.float32).reshape(1, n)
        if "noise" in self.inputs:
            feed["noise"] = state.rng.standard_normal((1, 1, n * self.hop), dtype=np.float32)
        for name, _ in self._state_shapes:
            feed[f"state_in.{name}"] = state.tensors[name]
        out = self.session.run(None, feed)
        state.tensors = {name: value for (name, _), value in zip(self._state_shapes, out[1:], strict=True)}
        audio = out[0].reshape(-1)
        if state.skip:
            drop = min(state.skip, audio.shape[0])
            audio, state.skip = audio[drop:], state.skip - drop
        return audio, state

    def __call__(self, log_mel: np.ndarray, f0_hz: np.ndarray) -> np.ndarray:
        """Whole utterance: every frame's interval (the last frame is repeated to flush the lookahead)."""
        log_mel = np.asarray(log_mel)
        f0_hz = np.asarray(f0_hz, dtype=np.float64)
        k = self.lookahead_frames
        mel = np.concatenate([log_mel, np.repeat(log_mel[-1:], k, axis=0)])
        f0 = np.concatenate([f0_hz, np.repeat(f0_hz[-1:], k)])
        return self.step(mel, f0, self.init_state())[0]

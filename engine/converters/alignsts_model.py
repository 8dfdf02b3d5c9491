"""A trained AlignSTS (``voxflip export-alignsts``) run by ONNX Runtime: content, target F0 and a voice in,
a sung mel out. No torch.

The graph converts one utterance (:mod:`voxflip.trainer.alignsts_export` names its inputs). This
module prepares them the way training did: the target F0 on the model's 24 kHz frame grid
(:func:`notes_f0` from notes, with the WORLD converters' portamento and vibrato), its classes
(:func:`f0_classes`, uniform on the mel scale, 0 unvoiced), the diffusion decoder's noise from a
seeded generator (so a render is reproducible). A model with absolute windows is run chunk by
chunk on exactly the inputs each chunk needs
(:class:`~.alignsts_context.AlignSTSContext`; the output equals the whole utterance's); one with
the paper's relative windows needs the whole utterance, at most :data:`MAX_TARGET_FRAMES`.

The manifest is data from elsewhere (docs/security.md): every field is checked before the graph
is opened, and a bad one is one line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.onnx_step import _show, _whole, check_header, find_manifest, read_manifest, single_graph
from ..backends.runtime import ort_session
from ..errors import ArtifactMismatchError, AudioInputError, ConfigError
from ..features.content import CONTENT_DIM, CONTENT_FRAME_S, CONTENT_KIND
from ..features.mel import MelConfig
from ..melody import Melody
from .alignsts_context import BASELINES, AlignSTSContext
from .alignsts_step import StepGraphs, check_step_section
from .world_to_singing import WorldToSingingConfig, midi_hz, sung_midi, sung_pitch_hz

FORMAT_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
#: the kind of model in manifests and checkpoints (spelled as the converter that runs it, which the
#: registry names; the one literal of it outside the registry, tests/test_engine_registry.py)
MODEL_KIND = "alignsts"
#: the longest singing a whole-utterance model converts at once (frames of 5.3 ms: 60 s)
MAX_TARGET_FRAMES = 11_250
#: the most content frames (20 ms) a whole-utterance model reads at once: 60 s of speech
MAX_CONTENT_FRAMES = 3_000
#: target frames per call for a model with absolute windows (each call adds its context on both sides)
STREAM_CHUNK_FRAMES = 512
_KEYS = ("format_version", "model", "onnx_opset", "files", "inputs", "mel", "content", "f0", "decoder",
         "diffusion_steps", "window_mode", "stream_context", "model_config", "config_hash", "trained_steps", "step")
#: what a manifest's ``model_config.architecture`` may name: the paper's model and its baselines
ARCHITECTURES = (MODEL_KIND, *BASELINES)
INPUTS = ("content", "content_len", "f0_bins", "t_len", "timbre_mel", "timbre_len", "t_offset", "n_offset", "ratio")


#: the diffusion decoder's noise for target frames ``[ta, tb)``: ``(steps, 1, n_mels, tb - ta)``
NoiseSource = Callable[[int, int], np.ndarray]


class BlockNoise:
    """The diffusion decoder's noise for a song of unknown or unbounded length: frames in blocks of
    :attr:`BLOCK` drawn from ``(seed, block)``, so any range comes out the same whenever it is asked for."""

    BLOCK = 256

    def __init__(self, seed: int, steps: int, n_mels: int) -> None:
        self.seed, self.shape = int(seed), (steps, 1, n_mels)
        self._blocks: dict[int, np.ndarray] = {}

    def _block(self, k: int) -> np.ndarray:
        if k not in self._blocks:
            if len(self._blocks) > 64:     # a stream moves forward: forget the oldest
                self._blocks.pop(min(self._blocks))
            rng = np.random.default_rng([self.seed, k])
            self._blocks[k] = rng.standard_normal((*self.shape, self.BLOCK), dtype=np.float32)
        return self._blocks[k]

    def __call__(self, ta: int, tb: int) -> np.ndarray:
        if tb <= ta:
            return np.zeros((*self.shape, 0), np.float32)
        first, last = ta // self.BLOCK, (tb - 1) // self.BLOCK
        joined = np.concatenate([self._block(k) for k in range(first, last + 1)], axis=-1)
        return joined[..., ta - first * self.BLOCK : tb - first * self.BLOCK]


def target_mel() -> MelConfig:
    """The mel setup AlignSTS predicts (24 kHz, hop 128, 80 bands)."""
    return MelConfig.for_to_singing()


def f0_classes(f0_hz: np.ndarray, bins: int = 256, f0_min: float = 50.0, f0_max: float = 1100.0) -> np.ndarray:
    """F0 to ``bins`` classes, uniform on the mel scale between ``f0_min`` and ``f0_max``; 0 = unvoiced.

    Voiced frames take classes ``1..bins-1``; F0 outside the range is clipped to it (int64).
    """
    f0 = np.asarray(f0_hz, np.float32)
    lo, hi = 1127.0 * math.log1p(f0_min / 700.0), 1127.0 * math.log1p(f0_max / 700.0)
    mel = (1127.0 * np.log1p(np.maximum(f0, 0.0) / 700.0)).astype(np.float32)
    q = np.round(np.clip((mel - lo) / (hi - lo) * (bins - 2), 0, bins - 2)).astype(np.int64) + 1
    return np.where(f0 > 0, q, 0).astype(np.int64)


def notes_f0(melody: Melody, frames: int | None = None, config: WorldToSingingConfig | None = None) -> np.ndarray:
    """``(frames,)`` F0 in Hz on the model's frame grid; 0 in rests. ``frames`` defaults to the melody's end."""
    cfg = config or WorldToSingingConfig()
    frame_s = target_mel().frame_s
    end = melody.notes[-1].end_s
    n = int(np.ceil(end / frame_s)) if frames is None else frames
    f0 = np.zeros(n, np.float32)
    previous = None
    for note in melody.notes:
        a, b = int(round(note.start_s / frame_s)), min(n, int(round(note.end_s / frame_s)))
        legato = previous is not None and abs(note.start_s - previous.end_s) < 1e-3
        for k in range(a, b):
            sung = sung_midi(melody, k * frame_s)   # --melody-pitch sung
            f0[k] = midi_hz(sung + cfg.transpose_semitones) if sung is not None else sung_pitch_hz(
                note.midi_note + cfg.transpose_semitones, (k - a) * frame_s,
                previous.midi_note + cfg.transpose_semitones if legato else None, cfg)
        previous = note
    return f0


_EXPORT = "voxflip export-alignsts CHECKPOINT -o folder/alignsts.onnx"


def manifest_path(model: str | Path) -> Path:
    """An export folder, its ``.onnx`` or its manifest -> the manifest's path."""
    return find_manifest(model, "AlignSTS", _EXPORT, MANIFEST_SUFFIX)


def check_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    """Every field an AlignSTS manifest needs, checked before anything is opened (one-line errors)."""
    check_header(manifest, path, keys=_KEYS, kind=MODEL_KIND, version=FORMAT_VERSION, what="AlignSTS", export=_EXPORT)
    missing = [k for k in ("files", "inputs", "mel", "content", "f0", "decoder", "diffusion_steps", "window_mode",
                           "model_config") if k not in manifest]
    if missing:
        raise ConfigError(f"{path}: the field {missing[0]!r} is missing; re-export it with voxflip export-alignsts")
    if manifest["mel"] != asdict(target_mel()):
        raise ArtifactMismatchError(f"{path} was exported for the mel setup {str(manifest['mel'])[:300]!r}; this engine "
                                    "computes MelConfig.for_to_singing() only")
    content = manifest["content"]
    if content != {"kind": CONTENT_KIND, "dim": CONTENT_DIM, "frame_s": CONTENT_FRAME_S}:
        raise ArtifactMismatchError(f"{path}: content={_show(content, 120)}; this engine computes "
                                    f"{CONTENT_KIND} states ({CONTENT_DIM} wide, every {CONTENT_FRAME_S} s)")
    f0 = manifest["f0"]
    if (not isinstance(f0, dict) or sorted(f0) != ["bins", "max_hz", "min_hz", "scale"] or f0["scale"] != "mel"
            or not _whole(f0["bins"], 3, 4096) or not all(isinstance(f0[k], int | float) and not isinstance(f0[k], bool)
                                                             for k in ("min_hz", "max_hz"))
            or not 0 < f0["min_hz"] < f0["max_hz"] <= 20_000):
        raise ConfigError(f"{path}: f0={_show(f0, 120)} must be {{\"bins\": 3..4096, \"min_hz\": >0, \"max_hz\": "
                          "> min_hz, \"scale\": \"mel\"}")
    decoder, steps = manifest["decoder"], manifest["diffusion_steps"]
    if decoder not in ("diffusion", "fs2", "conv"):
        raise ConfigError(f"{path}: decoder={_show(decoder)} must be 'diffusion', 'fs2' or 'conv'")
    if not _whole(steps, 1 if decoder == "diffusion" else 0, 64 if decoder == "diffusion" else 0):
        raise ConfigError(f"{path}: diffusion_steps={_show(steps)} must be 1..64 for the diffusion decoder, 0 for "
                          f"{decoder}")
    if manifest["window_mode"] not in ("relative", "absolute"):
        raise ConfigError(f"{path}: window_mode={_show(manifest['window_mode'])} must be 'relative' or 'absolute'")
    config = manifest["model_config"]
    if not isinstance(config, dict) or config.get("window_mode") != manifest["window_mode"]:
        raise ConfigError(f"{path}: model_config must be the trained model's configuration, with the manifest's "
                          f"window_mode {manifest['window_mode']!r}")
    architecture = config.get("architecture", MODEL_KIND)
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"{path}: model_config.architecture={_show(architecture)} must be one of "
                          f"{', '.join(ARCHITECTURES)}")
    wanted = [*INPUTS, "noise"] if decoder == "diffusion" else list(INPUTS)
    if architecture == "speechsplit2" and config.get("ss_rhythm_input") == "target":
        wanted.append("target_mel")
    if manifest["inputs"] != wanted:
        raise ConfigError(f"{path}: inputs={_show(manifest['inputs'], 120)} must be {wanted}")
    if "trained_steps" in manifest and not _whole(manifest["trained_steps"], 0, 10**12):
        raise ConfigError(f"{path}: trained_steps={_show(manifest['trained_steps'])} must be a whole number >= 0")
    if manifest["window_mode"] == "absolute":
        context = manifest.get("stream_context")
        try:
            wanted = asdict(AlignSTSContext.of(config))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: model_config does not give the streaming context ({_show(str(exc), 80)}); "
                              "re-export it") from None
        if context != wanted:
            raise ConfigError(f"{path}: stream_context={_show(context, 80)} must be {wanted} (what model_config's "
                              "layers reach) for a model with absolute windows")
    if "step" in manifest:
        check_step_section(manifest["step"], path, config)
    single_graph(manifest, path, "alignsts.onnx")
    return manifest


class AlignSTSModel:
    """An exported AlignSTS: :meth:`sing` turns content, a target F0 and a voice into a sung log-mel."""

    def __init__(self, model: str | Path, *, threads: int = 1) -> None:
        self.manifest_path = path = manifest_path(model)
        self.manifest = check_manifest(read_manifest(path, "AlignSTS"), path)
        self.decoder = self.manifest["decoder"]
        self.architecture = self.manifest["model_config"].get("architecture", MODEL_KIND)
        #: a SpeechSplit 2.0 "w/ SE" reads the real singing's mel (an oracle): :meth:`sing` needs ``target_mel``
        self.needs_target_mel = "target_mel" in self.manifest["inputs"]
        self.steps = int(self.manifest["diffusion_steps"])
        self.n_mels = target_mel().n_mels
        f0 = self.manifest["f0"]
        self._f0 = (int(f0["bins"]), float(f0["min_hz"]), float(f0["max_hz"]))
        self.context = (AlignSTSContext(**self.manifest["stream_context"])
                        if self.manifest["window_mode"] == "absolute" else None)
        self.threads = threads
        self._step_graphs: StepGraphs | None = None
        self.session = ort_session(path.parent / self.manifest["files"]["graph"], threads, purpose="AlignSTS models",
                                   hint="; re-export it: voxflip export-alignsts CHECKPOINT -o alignsts.onnx")[0]
        graph_inputs = [i.name for i in self.session.get_inputs()]
        if graph_inputs != list(self.manifest["inputs"]):
            raise ArtifactMismatchError(f"{path}: the graph takes {graph_inputs}, the manifest says "
                                        f"{self.manifest['inputs']}; re-export it")

    @property
    def has_step_graphs(self) -> bool:
        """Whether the export carries step graphs (:mod:`.alignsts_step`: a stream computes each frame once)."""
        return "step" in self.manifest

    def step_graphs(self) -> StepGraphs:
        """The step graphs, opened on first use."""
        if self._step_graphs is None:
            if not self.has_step_graphs:
                raise ConfigError(f"{self.describe()} has no step graphs; re-export it with voxflip export-alignsts")
            self._step_graphs = StepGraphs(self.manifest_path, self.manifest["step"],
                                           window_frames=int(self.manifest["model_config"]["window_frames"]),
                                           n_mels=self.n_mels, steps=self.steps, threads=self.threads)
        return self._step_graphs

    @property
    def streams(self) -> bool:
        """Whether the model has absolute windows (chunked output equals the whole utterance's)."""
        return self.context is not None

    def describe(self) -> str:
        name = "AlignSTS" if self.architecture == MODEL_KIND else f"the {self.architecture} baseline"
        return (f"{name}, {self.decoder} decoder, {self.manifest['window_mode']} windows, "
                f"{self.manifest.get('trained_steps', 0)} steps ({self.manifest_path.parent.name})")

    def sing(self, content: np.ndarray, f0_hz: np.ndarray, timbre_mel: np.ndarray, *, seed: int = 0,
             chunk_frames: int = STREAM_CHUNK_FRAMES, target_mel: np.ndarray | None = None,
             ratio: float | None = None, noise: NoiseSource | None = None) -> np.ndarray:
        """The sung ``(T, n_mels)`` log-mel.

        Args:
            content: ``(N, 512)`` Whisper encoder states of the speech.
            f0_hz: ``(T,)`` the target F0 on the 24 kHz frame grid, 0 where unvoiced.
            timbre_mel: ``(M, n_mels)`` log-mel of the voice to sing with (the speech itself).
            seed: the diffusion decoder's noise.
            chunk_frames: target frames per call, for a model with absolute windows.
            target_mel: ``(T, n_mels)`` the real singing's log-mel on the same frames, for a model that
                reads it (:attr:`needs_target_mel`); ignored otherwise.
            ratio: content frames per target frame, where the windows are centred (``None``: ``N / T``,
                the speech stretched over the song); another value only for a model with absolute windows.
            noise: the diffusion decoder's noise by frame range (``None``: one draw for the whole song
                from ``seed``); :class:`BlockNoise` gives a stream's.
        """
        if np.ndim(f0_hz) != 1 or np.shape(f0_hz)[0] == 0 or np.ndim(content) != 2 or np.shape(content)[0] == 0:
            raise ConfigError(f"AlignSTS sings a non-empty F0 contour (T,) from non-empty content (N, 512); got "
                              f"{np.shape(f0_hz)} and {np.shape(content)}")
        if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise ConfigError(f"chunk_frames={chunk_frames!r} must be a whole number >= 1")
        if self.needs_target_mel and (target_mel is None or np.shape(target_mel) != (len(f0_hz), self.n_mels)):
            raise ConfigError(f"{self.describe()} reads the real singing's envelope: give its mel, ({len(f0_hz)}, "
                              f"{self.n_mels}) on the F0's frames (the ref: systems of voxflip eval do); got "
                              f"{None if target_mel is None else np.shape(target_mel)}")
        if ratio is not None and self.context is None:
            raise ConfigError(f"{self.describe()} centres its windows on the whole lengths (relative windows); a "
                              "ratio of its own needs a model with absolute windows")
        target = (np.ascontiguousarray(np.asarray(target_mel, np.float32).T[None]) if self.needs_target_mel
                  else None)
        rows = np.asarray(content, np.float32)
        bins = self.f0_input(f0_hz)
        timbre = self.timbre_input(timbre_mel)
        t_total, n_total = bins.shape[1], rows.shape[0]
        if self.context is None and (t_total > MAX_TARGET_FRAMES or n_total > MAX_CONTENT_FRAMES):
            raise AudioInputError(f"this AlignSTS model (relative windows) converts at most 60 s of speech into 60 s of "
                              f"singing at once; got {n_total * CONTENT_FRAME_S:.1f} s of speech, "
                              f"{t_total * MelConfig.for_to_singing().frame_s:.1f} s of singing: cut the input into phrases")
        if noise is None and self.decoder == "diffusion":
            whole = np.random.default_rng(seed).standard_normal((self.steps, 1, self.n_mels, t_total), dtype=np.float32)
            noise = lambda ta, tb: whole[..., ta:tb]  # noqa: E731
        ratio = n_total / t_total if ratio is None else float(ratio)
        if self.context is None:
            return self._run(self.content_input(rows), bins, timbre, noise, target, 0, t_total, 0, n_total, ratio).T
        pieces = [self.frames(rows, bins, timbre, a, min(t_total, a + chunk_frames), ratio=ratio, noise=noise,
                              target=target) for a in range(0, t_total, chunk_frames)]
        return np.concatenate(pieces, axis=1).T

    @staticmethod
    def content_input(content: np.ndarray) -> np.ndarray:
        """``(N, 512)`` content -> the graph's ``(1, 512, N)``."""
        return np.ascontiguousarray(np.asarray(content, np.float32).T[None])

    def f0_input(self, f0_hz: np.ndarray) -> np.ndarray:
        """``(T,)`` F0 in Hz -> the graph's ``(1, T)`` classes."""
        return f0_classes(f0_hz, *self._f0)[None]

    @staticmethod
    def timbre_input(timbre_mel: np.ndarray) -> np.ndarray:
        """``(M, n_mels)`` log-mel of the voice -> the graph's ``(1, n_mels, M)``."""
        return np.ascontiguousarray(np.asarray(timbre_mel, np.float32).T[None])

    def frames(self, content: np.ndarray, bins: np.ndarray, timbre: np.ndarray, a: int, b: int, *, ratio: float,
               noise: NoiseSource | None, target: np.ndarray | None = None, first: int = 0) -> np.ndarray:
        """Output frames ``[a, b)``, ``(n_mels, b - a)``, of a model with absolute windows, from the content's rows
        ``(N, 512)`` and the graph's other inputs (``bins (1, T)``, ``timbre (1, n_mels, M)``, ``target (1, n_mels,
        T)``): run on exactly the slices they reach (:meth:`AlignSTSContext.slices`), so equal to the whole song's
        frames. ``content[i]`` is content frame ``first + i``, and ``first + N`` are all known (a stream drops
        the frames no group reads any more, :meth:`content_first`, and calls this once frames ``[a, b)`` reach no
        further, :meth:`content_needed`)."""
        ta, tb, na, nb = self.context.slices(a, b, bins.shape[1], first + content.shape[0], ratio)
        if na < first or nb <= na:
            raise ValueError(f"output frames [{a}, {b}) read content frames [{na}, {nb}) of {first}.."
                             f"{first + content.shape[0]}: dropped or not there")
        return self._run(self.content_input(content[na - first : nb - first]), bins[:, ta:tb], timbre, noise,
                         None if target is None else target[..., ta:tb], ta, tb, na, nb, ratio)[:, a - ta : b - ta]

    def content_first(self, a: int, ratio: float) -> int:
        """The first content frame output frames from ``a`` on read (absolute windows)."""
        return max(0, self.context.content_span(max(0, a - self.context.target_frames), a + 1, ratio)[0])

    def content_needed(self, a: int, b: int, t_total: int, ratio: float) -> int:
        """How many content frames output frames ``[a, b)`` of a ``t_total``-frame song read (absolute windows)."""
        ta, tb = max(0, a - self.context.target_frames), min(t_total, b + self.context.target_frames)
        return max(0, self.context.content_span(ta, tb, ratio)[1])

    def _run(self, content, bins, timbre, noise, target, ta: int, tb: int, na: int, nb: int, ratio: float) -> np.ndarray:
        """The graph on target frames ``[ta, tb)`` and content frames ``[na, nb)`` (``content``, ``bins`` and
        ``target`` are those slices): ``(n_mels, tb - ta)``."""
        feed = {"content": content, "content_len": np.array([nb - na], np.int64),
                "f0_bins": bins, "t_len": np.array([tb - ta], np.int64),
                "timbre_mel": timbre, "timbre_len": np.array([timbre.shape[2]], np.int64),
                "t_offset": np.array([ta], np.float32), "n_offset": np.array([na], np.float32),
                "ratio": np.array([ratio], np.float32)}
        if noise is not None:
            feed["noise"] = np.ascontiguousarray(noise(ta, tb), np.float32)
        if target is not None:
            feed["target_mel"] = np.ascontiguousarray(target)
        return self.session.run(["mel"], feed)[0][0]

"""AlignSTS through its step graphs: every frame of every layer computed once, the state carried.

``voxflip export-alignsts`` writes them for AlignSTS with absolute windows (either decoder) (:mod:`voxflip.trainer.models.alignsts_step` says how they work) and names them in the
manifest's ``step`` section, checked here before anything is opened. :class:`StepStream` runs one
stream: content rows in as they arrive (the content graph turns them into the attention's keys,
``content_delay`` rows behind), the voice once, then the song's F0 frames; it answers with the sung
frames ``delay`` behind the frames fed, equal to the whole song's (a test) to float rounding.

The sliced path (:meth:`AlignSTSModel.frames`) recomputes both sides' context, ``2 x delay``
frames, for each group it sings; this one costs the same per frame at any group size, so a 21 ms
group runs in real time (docs/performance.md).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.onnx_step import MAX_STATE_DIM, MAX_STATE_TENSORS, MAX_STATE_VALUES, _file_in, _show
from ..backends.runtime import ort_session
from ..errors import ArtifactMismatchError, ConfigError
from .alignsts_context import ALIGNER_FFN_KERNEL, BASELINES

#: the step graphs, by role: their inputs before the state
STEP_INPUTS = {
    "content": ["content", "first", "total"],
    "timbre": ["timbre_mel"],
    "step": ["f0_bins", "noise", "keys", "key_first", "first", "total", "n_total", "ratio", "timbre"],
}
#: ``total`` while the end is not known (float32 counts frames exactly up to it; 24 h of song)
UNKNOWN_TOTAL = float(2**24)
_STEP_KEYS = ["content_delay", "content_state", "delay", "files", "noise_delays", "query_span", "state"]


def step_layout(cfg: dict) -> dict | None:
    """What a model configuration's step graphs are, torch-free: the delays, the noise draws' offsets, the
    attention queries' span and the shapes of the state each graph carries (lists, as a manifest writes them).
    ``None`` where there are none: not AlignSTS with absolute windows, a convolution kernel that is even or
    below 3 (it would carry no frames), no aligner layer, or a state beyond the manifest limits."""
    try:
        if cfg.get("architecture") in BASELINES or cfg["window_mode"] != "absolute" or cfg["decoder"] not in (
                "diffusion", "fs2"):
            return None
        fs2 = cfg["decoder"] == "fs2"
        kernels = [cfg["pitch_kernel"], cfg["content_kernel"], cfg["rp_ffn_kernel"], cfg["rp_conv_kernel"],
                   ALIGNER_FFN_KERNEL, *([cfg["decoder_kernel"]] if fs2 else [])]
        if any(k < 3 or k % 2 == 0 for k in kernels) or cfg["aligner_layers"] < 1:
            return None
        h, half = cfg["hidden"], (lambda k: k // 2)
        pitch = cfg["pitch_layers"] * half(cfg["pitch_kernel"])
        rp = half(cfg["rp_ffn_kernel"]) + cfg["rp_conv_layers"] * half(cfg["rp_conv_kernel"])
        aligner = cfg["aligner_layers"] * half(ALIGNER_FFN_KERNEL)
        cond = pitch + rp + aligner
        state = ([[1, h, cfg["pitch_kernel"] - 1]] * cfg["pitch_layers"] + [[1, h, cfg["rp_ffn_kernel"] - 1]]
                 + [[1, h, cfg["rp_conv_kernel"] - 1]] * cfg["rp_conv_layers"]
                 + [[1, h, ALIGNER_FFN_KERNEL - 1]] * cfg["aligner_layers"] + [[1, h, rp + aligner], [1, h, aligner]])
        if fs2:
            ctx = cfg["decoder_context"]
            if ctx < 1:
                return None
            delay, noise = cond + cfg["decoder_layers"] * (ctx + half(cfg["decoder_kernel"])), []
            state += [[1, h, 2 * ctx], [1, h, cfg["decoder_kernel"] - 1]] * cfg["decoder_layers"]
        else:
            steps, ch = cfg["diffusion_steps"], cfg["diffusion_channels"]
            dilations = [2 ** (i % cfg["diffusion_dilation_cycle"]) for i in range(5 * cfg["decoder_layers"])]
            step = sum(dilations)
            delay, noise = cond + steps * step, [cond + k * step for k in range(steps)]
            state.append([1, h, steps * step])
            for k in range(steps):
                state += [shape for d in dilations for shape in ([1, ch, 2 * d], [1, ch, d])]
                if k + 1 < steps:
                    state.append([1, cfg["n_mels"], step])
        content_state = [[1, h, cfg["content_kernel"] - 1]] * cfg["content_layers"]
        layout = {"delay": delay, "content_delay": cfg["content_layers"] * half(cfg["content_kernel"]),
                  "noise_delays": noise, "query_span": [cond - half(ALIGNER_FFN_KERNEL), pitch], "state": state,
                  "content_state": content_state}
    except (KeyError, TypeError):
        return None
    shapes = state + content_state
    if (len(state) > MAX_STATE_TENSORS or any(not 1 <= d <= MAX_STATE_DIM for s in shapes for d in s)
            or sum(math.prod(s) for s in shapes) > MAX_STATE_VALUES):
        return None
    return layout


def check_step_section(step: Any, path: Path, config: dict) -> dict:
    """The manifest's ``step`` section: its fields, the files inside the folder, and delays, offsets and state
    shapes exactly what ``config`` (the manifest's ``model_config``) gives (:func:`step_layout`)."""
    if not isinstance(step, dict) or sorted(step) != _STEP_KEYS:
        raise ConfigError(f"{path}: step must be an object with the fields {', '.join(_STEP_KEYS)}; re-export it")
    files = step["files"]
    if not isinstance(files, dict) or sorted(files) != sorted(STEP_INPUTS):
        raise ConfigError(f"{path}: step.files={_show(files, 80)} must name the graphs {', '.join(STEP_INPUTS)}")
    for role, name in files.items():
        _file_in(path.parent, name, f"step.files.{role}", path)
    layout = step_layout(config)
    if layout is None:
        raise ConfigError(f"{path}: model_config has no step graphs (AlignSTS with absolute windows and odd kernels "
                          "of 3 or more has them); re-export it")
    for key, wanted in layout.items():
        if step[key] != wanted:
            raise ConfigError(f"{path}: step.{key}={_show(step[key], 80)} must be {_show(wanted, 80)} (what "
                              "model_config's layers give); re-export it")
    return step


def key_span(first: int, count: int, ratio: float, n_total: int, query_span: tuple[int, int],
             window_frames: int) -> tuple[int, int]:
    """Content rows ``[a, b)`` (clipped to ``[0, n_total)``) that song frames ``[first, first + count)`` fed to
    the step graph read: every window their queries reach (the queries lie ``query_span = (lo, hi)`` frames
    behind, ``[first - lo, first + count - hi)``), a row to spare each side."""
    lo, hi = query_span
    last = n_total - 1
    a = math.floor(min((first - lo) * ratio, last)) - window_frames - 1
    b = math.ceil(min((first + count - hi - 1) * ratio, last)) + window_frames + 2
    return max(0, a), max(0, min(n_total, b))


class StepGraphs:
    """The three step graphs of an export, opened and checked (their inputs) once; :meth:`stream` starts one."""

    def __init__(self, manifest_path: Path, step: dict, *, window_frames: int, n_mels: int, steps: int,
                 threads: int = 1) -> None:
        self.path, self.section = manifest_path, step
        self.delay, self.content_delay = int(step["delay"]), int(step["content_delay"])
        self.noise_delays = [int(d) for d in step["noise_delays"]]
        self.query_span = tuple(int(d) for d in step["query_span"])
        self.state_shapes = [tuple(s) for s in step["state"]]
        self.content_shapes = [tuple(s) for s in step["content_state"]]
        self.window_frames, self.n_mels, self.steps = window_frames, n_mels, steps
        hint = "; re-export it: voxflip export-alignsts CHECKPOINT -o alignsts.onnx"
        self.sessions = {}
        for role, names in STEP_INPUTS.items():
            if role == "step" and steps == 0:                # the fs2 decoder draws no noise
                names = [n for n in names if n != "noise"]
            shapes = {"content": self.content_shapes, "step": self.state_shapes}.get(role, [])
            session = ort_session(manifest_path.parent / step["files"][role], threads, purpose="AlignSTS models",
                                  hint=hint)[0]
            wanted = names + [f"state_{i}" for i in range(len(shapes))]
            got = [i.name for i in session.get_inputs()]
            if got != wanted:
                raise ArtifactMismatchError(f"{manifest_path}: the {role} graph takes {_show(got, 120)}, the manifest "
                                            f"says {_show(wanted, 120)}{hint}")
            for i, (meta, shape) in enumerate(zip(session.get_inputs()[len(names):], shapes, strict=True)):
                if list(meta.shape) != list(shape):
                    raise ArtifactMismatchError(f"{manifest_path}: the {role} graph's state_{i} is {meta.shape}, the "
                                                f"manifest says {list(shape)}{hint}")
            self.sessions[role] = session

    def key_span(self, first: int, count: int, ratio: float, n_total: int) -> tuple[int, int]:
        """Content rows that frames ``[first, first + count)`` fed read (:func:`key_span`)."""
        return key_span(first, count, ratio, n_total, self.query_span, self.window_frames)

    def stream(self, ratio: float, total: int, noise) -> StepStream:
        return StepStream(self, ratio, total, noise)


class StepStream:
    """One stream through :class:`StepGraphs`.

    Args:
        ratio: content rows per song frame (the windows' slope).
        total: the song's frames.
        noise: the diffusion decoder's noise by frame range (``noise(ta, tb)``, ``ta >= 0``), e.g. a
            :class:`~.alignsts_model.BlockNoise`.
    """

    def __init__(self, graphs: StepGraphs, ratio: float, total: int, noise) -> None:
        self.graphs, self.ratio, self.total, self.noise = graphs, float(ratio), int(total), noise
        self.content_state = [np.zeros(s, np.float32) for s in graphs.content_shapes]
        self.state = [np.zeros(s, np.float32) for s in graphs.state_shapes]
        self.rows_in = 0                          # content rows pushed
        self.n_total: int | None = None           # content rows in all, once the content has ended
        # the content encoder's rows key_first .. key_first + held, in a buffer that grows by doubling
        self._keys = np.zeros((0, 0), np.float32)
        self._held = 0
        self.key_first = 0
        #: the rows the whole song reads, and the encoder's delay: rows past them are not computed (speech
        #: read faster than the song would otherwise pile up keys no frame reads)
        self.rows_read = graphs.key_span(0, self.total + graphs.delay, self.ratio, 1 << 40)[1] + graphs.content_delay
        self.timbre: np.ndarray | None = None
        self.fed = 0                              # song frames fed
        self.mel = np.zeros((graphs.n_mels, 0), np.float32)   # sung frames mel_first .. (log mel)
        self.mel_first = 0

    # -- inputs ------------------------------------------------------------------------------------
    @property
    def keys(self) -> np.ndarray:
        """The keys held: the content encoder's rows ``key_first ..`` ``(held, H)``."""
        return self._keys[: self._held]

    @property
    def keys_known(self) -> int:
        """Content rows whose keys are computed."""
        return self.key_first + self._held

    def push_content(self, rows: np.ndarray) -> None:
        """``(n, content_dim)`` content rows, the next ones of the speech (those past :attr:`rows_read` are
        not computed: no frame of the song reads them)."""
        room = self.rows_read - self.rows_in
        if rows.shape[0] and room > 0:
            self._content(np.asarray(rows[:room], np.float32), UNKNOWN_TOTAL)

    def end_content(self) -> None:
        """The content has ended: the encoder's last ``content_delay`` rows come out."""
        if self.n_total is None:
            self.n_total = self.rows_in
            if self.graphs.content_delay:
                self._content(np.zeros((self.graphs.content_delay, self._content_dim), np.float32), float(self.n_total))

    @property
    def _content_dim(self) -> int:
        return int(self.graphs.sessions["content"].get_inputs()[0].shape[1])

    def _content(self, rows: np.ndarray, total: float) -> None:
        feed = {"content": np.ascontiguousarray(rows.T[None]), "first": np.array([float(self.rows_in)], np.float32),
                "total": np.array([total], np.float32)}
        feed.update({f"state_{i}": s for i, s in enumerate(self.content_state)})
        out = self.graphs.sessions["content"].run(None, feed)
        self.content_state = out[1:]
        first = self.rows_in - self.graphs.content_delay
        self.rows_in += rows.shape[0]
        new = out[0][0]
        if first < 0:
            new = new[-first:]
        if self.n_total is not None:
            new = new[: max(0, self.n_total - self.keys_known)]
        if not new.shape[0]:
            return
        if self._held + new.shape[0] > self._keys.shape[0]:
            grown = np.zeros((max(256, 2 * self._keys.shape[0], self._held + new.shape[0]), new.shape[1]), np.float32)
            if self._held:
                grown[: self._held] = self._keys[: self._held]
            self._keys = grown
        self._keys[self._held : self._held + new.shape[0]] = new
        self._held += new.shape[0]

    def set_voice(self, timbre_mel: np.ndarray) -> None:
        """The voice: the graph's ``(1, n_mels, M)`` reference mel."""
        self.timbre = self.graphs.sessions["timbre"].run(None, {"timbre_mel": timbre_mel})[0]

    # -- the song ----------------------------------------------------------------------------------
    def ready(self, upto: int) -> bool:
        """Whether the keys are in for feeding the song frames up to ``upto``."""
        n_total = self.n_total if self.n_total is not None else 1 << 40
        return self.timbre is not None and self.graphs.key_span(self.fed, upto - self.fed, self.ratio,
                                                                n_total)[1] <= self.keys_known

    def feedable(self, limit: int) -> int:
        """The furthest song frame, at most ``limit``, that the keys in allow feeding up to (``fed`` if none)."""
        lo, hi = self.fed, max(self.fed, limit)
        if self.timbre is None or hi == lo or self.ready(hi):
            return hi if self.timbre is not None else lo
        while hi - lo > 1:                      # ready() is monotone in its frame: the last one that holds
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.ready(mid) else (lo, mid)
        return lo

    def feed(self, bins: np.ndarray, upto: int) -> None:
        """Feed the song frames ``fed .. upto`` (``bins``: the whole song's ``(1, total)`` F0 classes); their keys
        must be in (:meth:`ready`). The frames ``delay`` behind come out (:meth:`take`)."""
        g, first, count = self.graphs, self.fed, upto - self.fed
        if count <= 0:
            return
        n_total = self.n_total if self.n_total is not None else 1 << 40
        a, b = g.key_span(first, count, self.ratio, n_total)
        if b > self.keys_known or a < self.key_first:
            raise ValueError(f"song frames [{first}, {upto}) read content rows [{a}, {b}) of {self.key_first}.."
                             f"{self.keys_known}: dropped or not there")
        chunk = np.zeros((1, count), np.int64)
        have = bins[:, first : min(upto, self.total)]
        chunk[:, : have.shape[1]] = have
        feed = {"f0_bins": chunk,
                "keys": np.ascontiguousarray(self.keys[a - self.key_first : b - self.key_first][None]),
                "key_first": np.array([float(a)], np.float32), "first": np.array([float(first)], np.float32),
                "total": np.array([float(self.total)], np.float32),
                "n_total": np.array([float(self.n_total) if self.n_total is not None else UNKNOWN_TOTAL], np.float32),
                "ratio": np.array([self.ratio], np.float32), "timbre": self.timbre}
        if g.steps:
            feed["noise"] = self._noise(first, count)
        feed.update({f"state_{i}": s for i, s in enumerate(self.state)})
        out = g.sessions["step"].run(None, feed)
        self.state = out[1:]
        self.fed = upto
        mel, start = out[0][0], first - g.delay
        if start < 0:
            mel, start = mel[:, -start:], 0
        if self.mel.shape[1] == 0:
            self.mel, self.mel_first = mel, start
        else:
            self.mel = np.concatenate([self.mel, mel], axis=1)
        # the keys no later call reads go
        keep = g.key_span(self.fed, 1, self.ratio, n_total)[0]
        drop = keep - self.key_first
        if drop > 256:
            self._keys[: self._held - drop] = self._keys[drop : self._held]
            self._held -= drop
            self.key_first = keep

    def _noise(self, first: int, count: int) -> np.ndarray:
        out = np.zeros((self.graphs.steps, 1, self.graphs.n_mels, count), np.float32)
        if self.noise is None:
            return out
        for k, d in enumerate(self.graphs.noise_delays):
            a, b = max(0, first - d), min(self.total, first - d + count)
            if b > a:
                out[k, :, :, a - (first - d) : b - (first - d)] = self.noise(a, b)[k]
        return out

    def take(self, a: int, b: int) -> np.ndarray:
        """Sung frames ``[a, b)`` ``(n_mels, b - a)``, once fed (``b + delay`` frames); frames before ``a`` go."""
        if a < self.mel_first or b > self.mel_first + self.mel.shape[1]:
            raise ValueError(f"sung frames [{a}, {b}) are not in {self.mel_first}..{self.mel_first + self.mel.shape[1]}")
        out = self.mel[:, a - self.mel_first : b - self.mel_first]
        self.mel, self.mel_first = self.mel[:, b - self.mel_first :], b
        return out

"""Content features as they are said: a causal student of Whisper's encoder, run with ONNX Runtime.

Whisper's encoder (:mod:`.content`) reads 30 s windows; the student
(``voxflip train-content``, :mod:`voxflip.trainer.models.content_student`) reads the 16 kHz
log-mel of :data:`STUDENT_MEL` through causal convolutions and gives Whisper-like states
``lookahead`` mel frames (10 ms each) after the end of the 20 ms frame they describe. Torch-free:
the ``alignsts`` converter reads it in place of Whisper with ``content=DIR``.

An export (``voxflip export-content``) is a folder with ``content.onnx`` (a chunk of mel frames of
any length with every layer's cache in and out; a whole recording is one call with zero caches) and
``content.manifest.json``.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .content import CONTENT_DIM, CONTENT_HOP, CONTENT_RATE, content_frames
from .mel import MelAnalyzer, MelConfig
from .resample import PedalboardResampler

#: the student's input: the low-latency flow model's mel (16 kHz, 10 ms hop, 25 ms window)
STUDENT_MEL = MelConfig.for_to_speech(400)
#: mel frames per content frame
MEL_PER_CONTENT = CONTENT_HOP // STUDENT_MEL.hop_samples
MODEL_KIND = "voxflip-content-student"
FORMAT = 1


def to_content_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono audio at 16 kHz (float64), resampled by the rational ratio if needed."""
    x = np.asarray(audio, np.float64)
    if int(sample_rate) != CONTENT_RATE:
        from scipy.signal import resample_poly

        ratio = Fraction(CONTENT_RATE, int(sample_rate))
        x = resample_poly(x, ratio.numerator, ratio.denominator)
    return x


def student_log_mel(audio_16k: np.ndarray, lookahead: int) -> np.ndarray:
    """``(frames, 80)`` log-mel of 16 kHz audio, with silence after it for the last frames' lookahead.

    Covers output frame ``2k + 1 + lookahead`` of every content frame ``k`` of the audio."""
    x = np.asarray(audio_16k, np.float64)
    needed = MEL_PER_CONTENT * content_frames(x.shape[0]) + lookahead
    hop = STUDENT_MEL.hop_samples
    pad = max(0, needed * hop - x.shape[0])
    return MelAnalyzer(STUDENT_MEL).log_mel(np.pad(x, (0, pad)))[:needed].astype(np.float32)


def content_positions(count: int, lookahead: int) -> np.ndarray:
    """The student's output frames that give content frames ``0 .. count - 1``."""
    return MEL_PER_CONTENT * np.arange(count) + MEL_PER_CONTENT - 1 + lookahead


class ContentStudentModel:
    """An exported content student (module docstring)."""

    def __init__(self, folder: str | Path, *, threads: int = 1) -> None:
        folder = Path(folder)
        path = folder / "content.manifest.json" if folder.is_dir() else folder
        if not path.is_file():
            raise ConfigError(f"content model {str(folder)!r} has no content.manifest.json (an export of "
                              "voxflip export-content)")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not a readable manifest ({exc})") from None
        if manifest.get("kind") != MODEL_KIND or manifest.get("format") != FORMAT:
            raise ConfigError(f"{path}: not a content student export (kind {manifest.get('kind')!r}, "
                              f"format {manifest.get('format')!r}; expected {MODEL_KIND!r}, {FORMAT})")
        if manifest.get("mel") != asdict(STUDENT_MEL) or manifest.get("out_dim") != CONTENT_DIM:
            raise ConfigError(f"{path}: reads another mel setup or gives {manifest.get('out_dim')}-wide states "
                              f"(this engine: {CONTENT_DIM})")
        from ..backends.runtime import import_onnxruntime

        ort = import_onnxruntime("the content student")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.folder = path.parent
        self.manifest = manifest
        self.lookahead = int(manifest["lookahead"])
        self.cache_shapes = [tuple(s) for s in manifest["caches"]]
        self._graph = ort.InferenceSession(str(self.folder / manifest["graph"]), options,
                                           providers=["CPUExecutionProvider"])
        self.teacher = manifest.get("teacher", "")

    def describe(self) -> str:
        return f"content student ({self.folder.name}, {self.lookahead * STUDENT_MEL.frame_s * 1000:.0f} ms lookahead)"

    @property
    def latency_s(self) -> float:
        """How long after a content frame ends its state is known (the mel window's half and the lookahead)."""
        return (self.lookahead * STUDENT_MEL.hop_samples + STUDENT_MEL.win_samples // 2) / STUDENT_MEL.sample_rate

    def run_mel(self, log_mel: np.ndarray) -> np.ndarray:
        """``(frames, 80)`` log-mel -> ``(frames, 512)`` output frames of a whole recording (zero caches)."""
        return self.step_mel(log_mel, self.init_state())[0]

    def init_state(self) -> list[np.ndarray]:
        return [np.zeros(s, np.float32) for s in self.cache_shapes]

    def step_mel(self, log_mel: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """A chunk of log-mel frames -> their output frames and the next state."""
        feeds = {"mel": np.ascontiguousarray(np.asarray(log_mel, np.float32).T[None])}
        feeds.update({f"cache_{i}": c for i, c in enumerate(state)})
        out = self._graph.run(None, feeds)
        return out[0][0].T, list(out[1:])

    def states(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """``(frames, 512)`` float32 states of ``audio`` (mono, any rate), one per 20 ms, as
        :func:`~.content.whisper_states` gives them."""
        x = to_content_rate(audio, sample_rate)
        count = content_frames(x.shape[0])
        out = self.run_mel(student_log_mel(x, self.lookahead))
        return np.ascontiguousarray(out[content_positions(count, self.lookahead)], np.float32)

    def stream(self, sample_rate: int = CONTENT_RATE) -> ContentStream:
        """A :class:`ContentStream`: samples at ``sample_rate`` in, content frames out as soon as they are known."""
        return ContentStream(self, sample_rate)

    def samples_needed(self, count: int, sample_rate: int = CONTENT_RATE) -> int:
        """Input samples at ``sample_rate`` after which a :meth:`stream` has given ``count`` content frames
        (the mel window and the lookahead; at another rate, the resampler's delay too)."""
        if count <= 0:
            return 0
        mel_frame = MEL_PER_CONTENT * count - 1 + self.lookahead
        at_16k = mel_frame * STUDENT_MEL.hop_samples + STUDENT_MEL.win_samples // 2
        if int(sample_rate) == CONTENT_RATE:
            return at_16k
        return math.ceil(at_16k * int(sample_rate) / CONTENT_RATE) + _resampler_delay(int(sample_rate)) + 1


@functools.lru_cache(maxsize=8)
def _resampler_delay(sample_rate: int) -> int:
    """Input samples the stream's resampler to 16 kHz holds back at ``sample_rate``."""
    return PedalboardResampler(sample_rate, CONTENT_RATE).latency


class ContentStream:
    """The student chunk by chunk: :meth:`push` samples, get the content frames that became known.

    At a rate other than 16 kHz a streaming resampler (pedalboard's) goes first.

    Mel frame ``j`` (centred on sample ``160 j``, 25 ms window) is analysed once its window has
    arrived; content frame ``k`` is out with the student's output frame ``2k + 1 + lookahead``. After
    :meth:`flush` (silence in place of what never came, as :meth:`ContentStudentModel.states` pads), the
    frames are those of the whole recording, whatever the blocks were.
    """

    def __init__(self, model: ContentStudentModel, sample_rate: int = CONTENT_RATE) -> None:
        self.model = model
        self.resampler = None if int(sample_rate) == CONTENT_RATE else PedalboardResampler(int(sample_rate), CONTENT_RATE)
        self.analyzer = MelAnalyzer(STUDENT_MEL)
        self.state = model.init_state()
        self.buffer = np.zeros(STUDENT_MEL.win_samples // 2)   # the whole analysis's zeros before the first sample
        self.mel_frames = 0      # analysed so far
        self.samples = 0         # received so far
        self.content = 0         # content frames given so far
        self.outputs = 0         # student output frames so far

    def _frames(self, limit: int | None = None) -> np.ndarray:
        """Student outputs of every mel frame whose window is in the buffer (at most up to frame ``limit``)."""
        hop, win = STUDENT_MEL.hop_samples, STUDENT_MEL.win_samples
        ready = (self.buffer.shape[0] - win) // hop + 1 if self.buffer.shape[0] >= win else 0
        if limit is not None:
            ready = min(ready, limit - self.mel_frames)
        if ready <= 0:
            return np.zeros((0, CONTENT_DIM), np.float32)
        windows = np.lib.stride_tricks.sliding_window_view(self.buffer, win)[: ready * hop : hop]
        out, self.state = self.model.step_mel(self.analyzer.log_mel_frames(windows).astype(np.float32), self.state)
        self.buffer = self.buffer[ready * hop :]
        self.mel_frames += ready
        return out

    def _content(self, out: np.ndarray, upto: int | None = None) -> np.ndarray:
        first = self.outputs
        self.outputs += out.shape[0]
        look = self.model.lookahead
        picks = []
        while True:
            j = MEL_PER_CONTENT * self.content + MEL_PER_CONTENT - 1 + look
            if j >= self.outputs or (upto is not None and self.content >= upto):
                break
            picks.append(out[j - first])
            self.content += 1
        return np.asarray(picks, np.float32).reshape(-1, CONTENT_DIM)

    def push(self, audio: np.ndarray) -> np.ndarray:
        """``(new frames, 512)``: the content frames this block (at the stream's rate) made known."""
        if self.resampler is not None:
            audio = self.resampler.process(np.asarray(audio, np.float32).ravel())
        x = np.asarray(audio, np.float64).ravel()
        self.samples += x.shape[0]
        self.buffer = np.concatenate([self.buffer, x])
        return self._content(self._frames())

    def flush(self) -> np.ndarray:
        """The rest: every content frame of what was pushed (``ceil(samples / 320)`` in all, at 16 kHz)."""
        if self.resampler is not None:
            x = np.asarray(self.resampler.flush(), np.float64)
            self.samples += x.shape[0]
            self.buffer = np.concatenate([self.buffer, x])
        count = content_frames(self.samples)
        needed = MEL_PER_CONTENT * count + self.model.lookahead
        tail = max(0, (needed - self.mel_frames) * STUDENT_MEL.hop_samples + STUDENT_MEL.win_samples)
        self.buffer = np.concatenate([self.buffer, np.zeros(tail)])
        return self._content(self._frames(limit=needed), upto=count)

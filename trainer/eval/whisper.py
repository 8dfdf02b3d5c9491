"""Whisper, the recogniser that reads singing: faster-whisper (CTranslate2) on the CPU, int8, no torch.

pocketsphinx cannot read real singing (CER about 0.72 on English real singing against Whisper
base's 0.13), so it cannot rank converters on it; Whisper is the ruler of ``voxflip eval``.

Models (``--asr``): :mod:`voxflip.engine.features.whisper_model` (where the weights come from and how
they are loaded, shared with the AlignSTS converter's content encoder).

Decoding is deterministic: beam 5, temperature 0 only (no sampling fallback), no conditioning
on previous text, no voice activity filter, the language given (from the manifest), not
detected. The same clip gives the same transcript alone and after others (a test).
"""

from __future__ import annotations

import numpy as np

from voxflip.engine.errors import ConfigError
from voxflip.engine.features.whisper_model import (  # noqa: F401  (ASR_NAMES re-exported: the ruler's models)
    ASR_NAMES,
    DEFAULT_ASR,
    PACKAGED,
    load_model,
)

from .metrics import check_audio, check_sample_rate, resample

WHISPER_SAMPLE_RATE = 16_000


def transcribe(audio: np.ndarray, sample_rate: int, *, language: str = "en", asr: str = DEFAULT_ASR) -> str:
    """Transcribe ``audio`` with Whisper, deterministically (see the module docstring).

    Args:
        audio: ``(samples,)`` float mono in [-1, 1], any rate (resampled to 16 kHz).
        sample_rate: in Hz.
        language: the language spoken or sung (ISO 639-1, ``de``); Whisper is told, not asked.
        asr: a model name of :data:`PACKAGED`, a model folder, or a hub name.

    Raises:
        MissingDependencyError: faster-whisper or the weights are not installed.
        ConfigError: the model is corrupt, or English-only and ``language`` is not English.
    """
    samples = check_audio(audio)
    rate = check_sample_rate(sample_rate)
    spec = PACKAGED.get(asr)
    language = language.lower().split("-")[0]
    if spec is not None and spec.english_only and language != "en":
        raise ConfigError(f"--asr {asr} knows English only; this clip is {language!r}: use whisper-base")
    model = load_model(asr)
    x = resample(samples, rate, WHISPER_SAMPLE_RATE).astype(np.float32)
    segments, _ = model.transcribe(
        x, language=language, beam_size=5,
        temperature=0.0, condition_on_previous_text=False, vad_filter=False,
    )
    return " ".join(segment.text.strip() for segment in segments).strip()

"""Learned, reference-free judges: DNSMOS (predicted MOS) and speaker similarity (resemblyzer).

Both run offline on models that ship inside their pip packages:

- DNSMOS P.835 (Reddy et al., ICASSP 2022) through ``speechmos``: the ONNX models
  ``dnsmos_models/sig_bak_ovr.onnx`` (SIG, BAK, OVRL) and ``model_v8.onnx`` (P.808 overall)
  are in the wheel; inference is onnxruntime on 16 kHz audio, in 9.01 s windows hopped by 1 s
  (shorter clips are repeated up to 9.01 s), averaged over the windows.
- Speaker similarity: the cosine of the 256-dimensional GE2E d-vectors of resemblyzer's
  ``VoiceEncoder`` (Wan et al., ICASSP 2018), whose weights ``pretrained.pt`` are in its wheel.
  Inputs go through resemblyzer's ``preprocess_wav`` (16 kHz, level normalised, long silences
  removed with webrtcvad). It needs torch: install ``torch==2.13.0`` first (docs/metrics.md).

Each model is loaded once, on first use, and reused.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .metrics import check_audio, check_sample_rate, missing_dependency, resample

MODEL_SAMPLE_RATE = 16_000
_encoder: Any = None
_encoder_lock = threading.Lock()
_dnsmos_lock = threading.Lock()


def _check_full_scale(samples: np.ndarray, name: str) -> None:
    peak = float(np.max(np.abs(samples)))
    if peak > 1.0:
        raise ValueError(f"{name} peaks at {peak:.3f}, outside [-1, 1]; scale it down (audio / {peak:.3f}) "
                         "rather than clip, so the metric judges the signal you meant")


def dnsmos(audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """DNSMOS P.835 scores of one clip (no reference needed).

    Args:
        audio: ``(samples,)`` float mono in [-1, 1]; resampled to 16 kHz.
        sample_rate: in Hz.

    Returns:
        ``{"sig": float, "bak": float, "ovrl": float, "p808": float}``, each a predicted MOS on
        the 1-5 scale: SIG speech signal quality, BAK background noise (5 = none), OVRL overall
        (the P.835 model), P808 the overall score of the older P.808 model.

    Raises:
        ImportError: speechmos (or onnxruntime, librosa, requests, which it imports) is missing.
        ValueError: the audio leaves [-1, 1]. (Overshoots that resampling itself adds to a
            signal within [-1, 1] are clipped.)
    """
    samples = check_audio(audio)
    rate = check_sample_rate(sample_rate)
    _check_full_scale(samples, "audio")
    try:
        from speechmos import dnsmos as speechmos_dnsmos
    except ImportError as exc:
        raise missing_dependency("DNSMOS", "speechmos with onnxruntime, librosa and requests", exc) from exc
    clip = np.clip(resample(samples, rate, MODEL_SAMPLE_RATE), -1.0, 1.0)
    with _dnsmos_lock:  # speechmos keeps its model in a module global
        scores = speechmos_dnsmos.run(clip.astype(np.float32), MODEL_SAMPLE_RATE)
    return {"sig": float(scores["sig_mos"]), "bak": float(scores["bak_mos"]),
            "ovrl": float(scores["ovrl_mos"]), "p808": float(scores["p808_mos"])}


def _get_encoder() -> Any:
    global _encoder
    if _encoder is None:
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as exc:
            raise missing_dependency("speaker similarity", "resemblyzer and torch==2.13.0", exc) from exc
        _encoder = VoiceEncoder(device="cpu", verbose=False)
    return _encoder


def speaker_embedding(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """``(256,)`` unit-norm resemblyzer d-vector of one utterance.

    Raises:
        ImportError: resemblyzer or torch is missing.
        ValueError: nothing is left after resemblyzer's silence removal.
    """
    samples = check_audio(audio)
    rate = check_sample_rate(sample_rate)
    with _encoder_lock:
        encoder = _get_encoder()
        from resemblyzer import preprocess_wav

        wav = preprocess_wav(resample(samples, rate, MODEL_SAMPLE_RATE).astype(np.float32),
                             source_sr=MODEL_SAMPLE_RATE)
        if wav.size == 0:
            raise ValueError("no speech left after resemblyzer's silence removal; is the audio silent?")
        return np.asarray(encoder.embed_utterance(wav), dtype=np.float64)


def speaker_similarity(audio_a: np.ndarray, sample_rate_a: int, audio_b: np.ndarray, sample_rate_b: int) -> float:
    """Cosine similarity of the speaker embeddings of two utterances.

    Args:
        audio_a, audio_b: ``(samples,)`` float mono in [-1, 1].
        sample_rate_a, sample_rate_b: their rates in Hz (they may differ).

    Returns:
        A value in [-1, 1]; 1 for identical audio. docs/metrics.md lists measured values for
        same-speaker and different-speaker pairs.
    """
    a = speaker_embedding(audio_a, sample_rate_a)
    b = speaker_embedding(audio_b, sample_rate_b)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))

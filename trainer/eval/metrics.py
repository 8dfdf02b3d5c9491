"""Shared ground of the evaluation metrics: input checks, resampling, the eval-extra hint, the 95% CI.

The metrics themselves live one subject per module:

- :mod:`voxflip.trainer.eval.asr`: ``transcribe``, ``wer``, ``cer``, ``asr_scores`` (pocketsphinx, jiwer)
- :mod:`voxflip.trainer.eval.srmr`: ``srmr`` (speech-to-reverberation modulation energy ratio)
- :mod:`voxflip.trainer.eval.quality`: ``dnsmos`` (speechmos), ``speaker_similarity`` (resemblyzer)
- :mod:`voxflip.trainer.eval.to_singing_metrics`: ``lsd``, ``rca``, ``rrd``, ``f0_rmse_cents``

Every metric takes mono audio as a 1-D float array in [-1, 1] (float32 preferred) and its
``sample_rate`` in Hz, and resamples internally to what its tool needs. docs/metrics.md describes
each metric, its units and what a good value is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction

import numpy as np

EVAL_EXTRA_HINT = 'Install the eval extra: pip install -e ".[eval]"'


def missing_dependency(what: str, packages: str, exc: ImportError) -> ImportError:
    """The one-line ImportError raised when an optional evaluation package is absent.

    Example: ``ImportError: WER needs pocketsphinx. Install the eval extra: pip install -e ".[eval]"``.
    The caller raises it ``from exc``, so the original error (which module failed and why)
    stays in the traceback.
    """
    error = ImportError(f"{what} needs {packages}. {EVAL_EXTRA_HINT}")
    error.name = getattr(exc, "name", None)
    return error


def check_audio(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """Validate mono audio and return it as a contiguous float64 array.

    Args:
        audio: ``(samples,)`` floating-point samples in [-1, 1].
        name: what to call the argument in messages.

    Raises:
        TypeError: not a floating-point array (convert int16 PCM with ``x / 32768``).
        ValueError: not 1-D, empty, or containing NaN or infinity.
    """
    array = np.asarray(audio)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} must be float32 samples in [-1, 1], got dtype {array.dtype}; "
                        "convert int16 PCM with audio.astype(np.float32) / 32768")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D mono (samples,), got shape {array.shape}; "
                         "mix down first, e.g. audio.mean(axis=0)")
    if array.size == 0:
        raise ValueError(f"{name} is empty; a metric needs at least one sample")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite samples")
    return np.ascontiguousarray(array, dtype=np.float64)


def check_sample_rate(sample_rate: int, name: str = "sample_rate") -> int:
    """Return ``sample_rate`` as an int, refusing non-positive or fractional rates."""
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"{name} must be a positive whole number of Hz, got {sample_rate!r}")
    return int(sample_rate)


def resample(audio: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy ``resample_poly``, Kaiser window) from one rate to another.

    Args:
        audio: ``(samples,)`` float array.
        sample_rate: rate of ``audio`` in Hz.
        target_rate: wanted rate in Hz.

    Returns:
        ``(round(samples * target_rate / sample_rate),)`` float64 samples; ``audio`` itself
        (as float64) when the rates are equal.
    """
    audio = np.asarray(audio, dtype=np.float64)
    if sample_rate == target_rate:
        return audio
    from scipy.signal import resample_poly

    ratio = Fraction(int(target_rate), int(sample_rate))
    return resample_poly(audio, ratio.numerator, ratio.denominator)


def confidence_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float, int]:
    """Mean and the half width of its two-sided confidence interval (Student's t).

    ``half_width = t_{(1 + level) / 2, n - 1} * s / sqrt(n)`` with ``s`` the sample standard
    deviation (``ddof=1``). Report it as ``mean ± half_width (n = n)``, as the papers do for MOS.

    Args:
        values: per-utterance scores (finite numbers).
        level: coverage of the interval, 0.95 by default.

    Returns:
        ``(mean, half_width, n)``; with a single value the half width is ``nan`` (no spread
        can be estimated from one sample).

    Raises:
        ValueError: no values, a NaN or infinite value (filter those rows first and report
            how many were dropped), or ``level`` outside (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level!r}")
    data = np.asarray(list(values), dtype=np.float64)
    if data.ndim != 1 or data.size == 0:
        raise ValueError("confidence_interval needs at least one value")
    if not np.all(np.isfinite(data)):
        bad = int(np.sum(~np.isfinite(data)))
        raise ValueError(f"confidence_interval got {bad} NaN or infinite value(s) among {data.size}; "
                         "drop those rows first and report how many were dropped")
    n = int(data.size)
    mean = float(data.mean())
    if n == 1:
        return mean, math.nan, 1
    from scipy.stats import t

    half_width = float(t.ppf(0.5 + level / 2.0, n - 1) * data.std(ddof=1) / math.sqrt(n))
    return mean, half_width, n


def held_pitch_fraction(f0_hz: np.ndarray, frame_s: float, tolerance_semitones: float = 0.3,
                        min_s: float = 0.1) -> float:
    """Share of voiced frames inside a held-pitch stretch (how sung, not spoken, a pitch track is).

    A stretch is held when every frame of it is voiced for at least ``min_s`` and its pitch
    stays within ``tolerance_semitones`` (max - min). Read speech scores about 0.16 (mean of
    the 25 development recordings, Praat pitch), their sung versions about 0.52.
    """
    f0_hz = np.asarray(f0_hz, dtype=np.float64)
    voiced = f0_hz > 0
    st = 12.0 * np.log2(np.where(voiced, f0_hz, 1.0))
    width = int(round(min_s / frame_s))
    held = np.zeros(f0_hz.shape[0], dtype=bool)
    for i in range(f0_hz.shape[0] - width + 1):
        seg = slice(i, i + width)
        if voiced[seg].all() and np.ptp(st[seg]) <= tolerance_semitones:
            held[seg] = True
    return float(held[voiced].mean()) if voiced.any() else 0.0

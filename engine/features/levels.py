"""Level safety: analysis that does not care how loud the input is, and output that stays finite.

A float WAV may hold samples far beyond full scale (``1e30`` is a valid float32 sample), or
far below it (``1e-30``). WORLD's analyses (pyworld's CheapTrick and D4C) are not
scale-invariant: they add absolute safeguard constants, and D4C returns NaN aperiodicity once a
voiced frame peaks above about 1.5 (a 150 Hz tone at +4 dBFS is enough). The trained flow model
was trained on levels up to full scale, and its durations run away on a louder input.

The rule, everywhere an analysis meets the signal:

* a frame whose analysis window peaks above full scale (1.0) is analysed scaled down by a power
  of two, ``2**-k``, so that its peak lies in [0.5, 1); a power of two makes the scaling and its
  undoing exact in floating point. The gain is carried back where it belongs: into the power
  envelope (``* 4**k``) or the log-mel (``+ k * ln 2``), so a loud input comes out loud.
* a frame at or below full scale is analysed exactly as before (``k = 0``), so quiet and
  normal-level output does not change by a single bit.
* every log has a floor, and everything a converter returns is limited to
  :data:`OUTPUT_CEILING` (see :func:`limit_output`).

A tiny input (``1e-30``, -600 dBFS) is not scaled up: it lies under every silence floor and is
converted as the silence it is.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter1d

from ..errors import ConfigError
from . import _spectral

#: peak above which a frame is analysed scaled down (full scale)
FULL_SCALE = 1.0
#: the largest magnitude a converter returns: +600 dBFS. Anything near it is clipped to [-1, 1]
#: by the output writer anyway; the ceiling keeps every float32 stage after the converter
#: (resampling, effects, gain: at most a few hundred times the level) far from float32's 3.4e38.
OUTPUT_CEILING = 1e30
#: the cut-offs an output's fixed high-pass (``dc_block_hz``) may take, in Hz: from 5, where an
#: offset's wander is gone within a fraction of a second, to 60, under every voice's fundamental
DC_BLOCK_RANGE_HZ = (5.0, 60.0)


def frame_peaks(segment: np.ndarray, centres: np.ndarray, half_width: int) -> np.ndarray:
    """Peak magnitude of ``segment`` within ``half_width`` samples of each centre.

    Args:
        segment: ``(samples,)`` float samples.
        centres: ``(frames,)`` indices into ``segment``.
        half_width: samples on each side of a centre (the frame's analysis reach).

    Returns:
        ``(frames,)`` float64 peaks (samples outside ``segment`` count as 0).
    """
    centres = np.asarray(centres, dtype=np.int64)
    if centres.size == 0 or segment.shape[0] == 0:
        return np.zeros(centres.shape[0])
    peaks = maximum_filter1d(np.abs(np.asarray(segment, dtype=np.float64)), size=2 * int(half_width) + 1,
                             mode="constant", cval=0.0)
    return peaks[np.clip(centres, 0, segment.shape[0] - 1)]


def scale_exponents(peaks: np.ndarray) -> np.ndarray:
    """``k`` per frame such that ``peak * 2**-k`` lies in [0.5, 1) above full scale; 0 at or below it.

    Args:
        peaks: ``(frames,)`` non-negative peak magnitudes (finite).

    Returns:
        ``(frames,)`` int64 exponents, >= 0.
    """
    peaks = np.asarray(peaks, dtype=np.float64)
    _, exponent = np.frexp(peaks)          # peak = m * 2**e with m in [0.5, 1)
    return np.where(peaks > FULL_SCALE, exponent, 0).astype(np.int64)


def limit_output(audio: np.ndarray) -> np.ndarray:
    """A converter's output as float32, limited to +-:data:`OUTPUT_CEILING` (NaN stays NaN: a bug to see)."""
    return np.clip(np.asarray(audio, dtype=np.float64), -OUTPUT_CEILING, OUTPUT_CEILING).astype(np.float32)


def repair_aperiodicity(ap: np.ndarray) -> np.ndarray:
    """D4C's aperiodicity with any non-finite value made fully aperiodic (1.0), and all clipped to [0, 1].

    D4C returns NaN for some voiced frames of a loud signal (see the module docstring); scaled
    analysis avoids it, and this catches whatever content still trips it.
    """
    ap = np.asarray(ap, dtype=np.float64)
    return np.clip(np.where(np.isfinite(ap), ap, 1.0), 0.0, 1.0)


def active_rms(audio: np.ndarray, sample_rate: int, *, frame_s: float = 0.02, range_db: float = 30.0) -> float:
    """The RMS of the frames that carry the signal: ``frame_s`` frames within ``range_db`` of the loud ones
    (the 95th percentile of frame levels), so leading and trailing silence do not count. 0 for silence.

    Computed at 2**-k of the input's level where it is above full scale (:func:`scale_exponents`), so
    any finite float input gives a finite answer.
    """
    x = np.asarray(audio, np.float64)
    hop = max(1, int(round(frame_s * sample_rate)))
    n = x.shape[0] // hop
    if n == 0:
        x, n = np.pad(x, (0, hop - x.shape[0])), 1
    peak = float(np.max(np.abs(x), initial=0.0))
    if peak == 0.0 or not np.isfinite(peak):
        return 0.0
    k = int(scale_exponents(np.array([peak]))[0])
    frames = np.ldexp(x[: n * hop], -k).reshape(n, hop)
    energy = np.mean(frames**2, axis=1)
    loud = np.percentile(energy, 95)
    active = energy[energy >= loud * 10.0 ** (-range_db / 10.0)]
    return float(np.ldexp(np.sqrt(np.mean(active)), k))


def check_dc_block_hz(owner: str, hz: float) -> None:
    """Raise a one-line :class:`ConfigError` unless ``hz`` is 0 (off) or within :data:`DC_BLOCK_RANGE_HZ`."""
    low, high = DC_BLOCK_RANGE_HZ
    if not (hz == 0.0 or low <= hz <= high):
        raise ConfigError(f"{owner}.dc_block_hz={hz!r} must be 0 (off) or within {low:g}..{high:g} Hz")


def block_dc(audio: np.ndarray, hz: float, sample_rate: int, state: np.ndarray) -> np.ndarray:
    """``audio`` high-passed at ``hz``: a fourth-order Butterworth, causal, no latency (the engine's
    compiled ``tracking_highpass`` at a fixed cut-off). ``state`` (5 values, zeros to start) is updated
    in place, so a signal filtered in pieces equals the whole."""
    return _spectral.tracking_highpass(np.asarray(audio, np.float64), np.full(audio.shape[0], float(hz)),
                                       float(sample_rate), state, 0.0)

"""The AlignSTS rhythm representation (its equation 3) and the RRD distance between two.

``r_t = sigmoid(beta * (e_t - mean(e)) / (std(e) + eps))``, then a Gaussian
filter with standard deviation ``sigma_frames`` (1.0 in the paper). ``e_t`` is
the frame energy: the L2 norm over frequency of the magnitude spectrum
(:meth:`MelAnalyzer.energy`). With the paper's beta of 400 the sigmoid is
nearly a step at the mean energy: what remains is the duration pattern of
loud and quiet stretches, with the relative loudness of syllables removed.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..errors import ConfigError

DEFAULT_BETA = 400.0
DEFAULT_SIGMA_FRAMES = 1.0


def rhythm(energy: np.ndarray, beta: float = DEFAULT_BETA, sigma_frames: float = DEFAULT_SIGMA_FRAMES,
           eps: float = 1e-8) -> np.ndarray:
    """Rhythm representation of one utterance's energy contour.

    Args:
        energy: ``(frames,)`` non-negative frame energies.
        beta: sigmoid sharpness (paper: 400).
        sigma_frames: Gaussian smoothing in frames (paper: 1.0); 0 disables it.
        eps: guards the division for a constant contour.

    Returns:
        ``(frames,)`` values in (0, 1).
    """
    e = np.asarray(energy, dtype=np.float64)
    if e.ndim != 1:
        raise ValueError(f"energy must be 1-D (frames,), got shape {e.shape}")
    if beta <= 0:
        raise ConfigError(f"rhythm beta={beta!r} must be > 0")
    if e.size == 0:
        return e
    z = beta * (e - e.mean()) / (e.std() + eps)
    r = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic sigmoid, without overflow
    if sigma_frames > 0:
        r = gaussian_filter1d(r, sigma_frames, mode="nearest")
    return r


def rhythm_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RRD: Euclidean distance between two rhythm contours, per frame (AlignSTS section 4.1.3).

    Contours of different lengths are compared after linear interpolation of
    the shorter onto the longer's frame count. Returns ``sqrt(mean((a - b)**2))``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("rhythm_distance needs two non-empty contours")
    n = max(a.size, b.size)
    if a.size != n:
        a = np.interp(np.linspace(0, a.size - 1, n), np.arange(a.size), a)
    if b.size != n:
        b = np.interp(np.linspace(0, b.size - 1, n), np.arange(b.size), b)
    return float(np.sqrt(np.mean((a - b) ** 2)))

"""MAST: the monotonic alignment search of the S2S paper, adapted so speech can be shorter than singing.

Glow-TTS's monotonic alignment search gives every text token at least one mel
frame. Aligning speech to singing, the *prior* side (singing frames) is the
longer one, so the search is turned around: every speech frame ``j`` is
assigned one singing frame ``a[j]``, monotonically, and singing frames may be
skipped (a held vowel has many more frames than its spoken version):

* ``a[j] - a[j-1]`` is in ``0 .. max_skip`` (0: two speech frames on one singing
  frame; ``k``: ``k - 1`` singing frames skipped);
* ``a[0] < max_skip`` and ``a[-1] >= T_singing - max_skip`` (the ends may trim
  up to ``max_skip - 1`` frames of silence);
* the path maximises ``sum_j score[a[j], j]``.

``score`` is whatever similarity the caller uses (the model: log phone-posterior
agreement plus the prior log-likelihood). ``mast`` runs the C++ kernel
(``voxflip.trainer._mast``, built by ``pip install``) and falls back to the
NumPy reference :func:`mast_reference`; both are tested against brute force.
"""

from __future__ import annotations

import numpy as np

NEG = -1e30


def feasible_skip(t_singing: int, t_speech: int, max_skip: int) -> int:
    """The smallest ``max_skip`` >= the given one for which a path exists."""
    k = max(1, int(max_skip))
    while (k - 1) + k * (t_speech - 1) < t_singing - k:
        k += 1
    return k


def mast_reference(score: np.ndarray, max_skip: int) -> np.ndarray:
    """NumPy dynamic programme. ``score``: (T_singing, T_speech); returns ``a``: (T_speech,) int64."""
    score = np.asarray(score, dtype=np.float64)
    t_si, t_sp = score.shape
    if t_si == 0 or t_sp == 0:
        raise ValueError(f"MAST needs a non-empty score matrix, got shape {score.shape}")
    k = feasible_skip(t_si, t_sp, max_skip)
    q = np.full((t_si, t_sp), NEG)
    back = np.zeros((t_si, t_sp), dtype=np.int64)
    q[: min(k, t_si), 0] = score[: min(k, t_si), 0]
    for j in range(1, t_sp):
        prev = q[:, j - 1]
        padded = np.concatenate([np.full(k, NEG), prev])          # padded[i + k] == prev[i]
        windows = np.lib.stride_tricks.sliding_window_view(padded, k + 1)[:t_si]  # prev[i-k .. i]
        best = np.argmax(windows[:, ::-1], axis=1)                  # ties -> the later predecessor
        back[:, j] = np.arange(t_si) - best
        q[:, j] = windows[np.arange(t_si), k - best] + score[:, j]
    last = np.arange(max(0, t_si - k), t_si)
    i = int(last[::-1][np.argmax(q[last, t_sp - 1][::-1])])  # ties -> the later end
    path = np.empty(t_sp, dtype=np.int64)
    for j in range(t_sp - 1, -1, -1):
        path[j] = i
        i = back[i, j]
    return path


def mast(score: np.ndarray, max_skip: int) -> np.ndarray:
    """The alignment (see the module docstring); the C++ kernel when it is built."""
    try:
        from ._mast import mast as kernel
    except ImportError:  # not built (e.g. a source checkout without pip install): the reference
        return mast_reference(score, max_skip)
    score = np.ascontiguousarray(score, dtype=np.float32)
    k = feasible_skip(score.shape[0], score.shape[1], max_skip)
    return np.asarray(kernel(score, k), dtype=np.int64)


def path_score(score: np.ndarray, path: np.ndarray) -> float:
    return float(np.asarray(score, dtype=np.float64)[path, np.arange(path.shape[0])].sum())


def durations(path: np.ndarray, t_singing: int) -> np.ndarray:
    """Speech frames per singing frame (0 for skipped ones): the duration predictor's target."""
    return np.bincount(np.asarray(path), minlength=t_singing)

"""MAST: the C++ kernel and the NumPy reference against brute force on small random cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from voxflip.trainer.mast import durations, feasible_skip, mast, mast_reference, path_score


def brute_force(score: np.ndarray, k: int) -> float:
    t_si, t_sp = score.shape
    best = -np.inf
    for path in itertools.product(range(t_si), repeat=t_sp):
        if path[0] >= k or path[-1] < t_si - k:
            continue
        if any(not 0 <= b - a <= k for a, b in itertools.pairwise(path)):
            continue
        best = max(best, float(score[list(path), range(t_sp)].sum()))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_both_find_the_best_path_on_small_random_cases(seed):
    rng = np.random.default_rng(seed)
    t_si = int(rng.integers(1, 8))
    t_sp = int(rng.integers(1, 5))
    k = feasible_skip(t_si, t_sp, int(rng.integers(1, 4)))
    score = rng.standard_normal((t_si, t_sp)).astype(np.float32)
    expected = brute_force(score, k)
    for fn in (mast_reference, mast):
        path = fn(score, k)
        assert path.shape == (t_sp,)
        assert path[0] < k and path[-1] >= t_si - k
        assert np.all((np.diff(path) >= 0) & (np.diff(path) <= k))
        assert path_score(score, path) == pytest.approx(expected, abs=1e-4), fn.__name__


def test_kernel_is_built_and_agrees_with_the_reference_on_big_cases():
    from voxflip.trainer import _mast  # noqa: F401  (the C++ extension must be there)

    rng = np.random.default_rng(1)
    for _ in range(5):
        score = rng.standard_normal((400, 250)).astype(np.float32)
        a, b = mast(score, 8), mast_reference(score, 8)
        assert path_score(score, a) == pytest.approx(path_score(score, b), rel=1e-5)


def test_a_diagonal_of_matches_is_found_with_the_skips():
    # speech frame j matches singing frame 3j: the path must skip two singing frames each step
    score = np.full((30, 10), -1.0, dtype=np.float32)
    score[np.arange(10) * 3, np.arange(10)] = 1.0
    path = mast(score, 4)
    assert path.tolist() == list(range(0, 30, 3))
    assert durations(path, 30).tolist() == [1, 0, 0] * 10


def test_the_skip_grows_when_the_singing_is_too_long_for_it():
    assert feasible_skip(100, 10, 2) >= 9
    path = mast(np.zeros((100, 10), np.float32), 2)
    assert path[-1] >= 100 - feasible_skip(100, 10, 2)


def test_empty_scores_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        mast_reference(np.zeros((0, 3)), 2)

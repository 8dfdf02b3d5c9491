"""A learned voicing decision for the short F0 window of the low-latency setting.

With ``--voice-floor 100`` the F0 estimator reads 20 ms around a frame instead of 33 ms, and its
voicing rule (YIN's normalised difference below 0.3 at the chosen lag) then disagrees with the
default window's on about 4% of the active frames of real singing and speech, mostly calling
voiced frames unvoiced: a burst of noise in a vowel, which costs words (docs/results.md, "The
low-latency setting"). This decision reads a few more things of the same 20 ms (the level, the
zero-crossing rate, the spectral tilt, the rule's own answer and F0) and weighs them with a
logistic regression trained to give the default window's answer.

It was trained on the synthetic corpus only (Festival speech and its singing, redistributable:
``python scripts/train_voicing.py --manifest data/synth30/manifest.jsonl``, which prints the
constants below) and checked on dev-data's real voices, which it never saw. A frame stays unvoiced
whatever the model says when it is below the silence level or its period is at the edge of the
search (the rule's two hard limits).
"""

from __future__ import annotations

import numpy as np

#: the features, in order (see :func:`voicing_features`)
FEATURES = ("periodicity", "level_db", "zero_crossings", "tilt_db", "rule_voiced", "log2_f0")

# scripts/train_voicing.py --items 160 on the synthetic corpus of `voxflip corpus synth --minutes 30 --seed 7`
# (267,613 active frames of its speech and singing):
# standardisation and weights of the logistic regression.
MEANS = np.array([0.797073, -24.344155, 0.072524, -15.153674, 0.709442, 0.710393])
SCALES = np.array([0.287474, 9.644792, 0.094640, 6.542424, 0.454020, 0.624822])
WEIGHTS = np.array([2.032023, 0.672429, -0.648356, -0.053751, 0.083554, 0.557106])
BIAS = 2.165546


def voicing_features(frames: np.ndarray, f0_hz: np.ndarray, periodicity: np.ndarray, level_db: np.ndarray,
                     rule_voiced: np.ndarray) -> np.ndarray:
    """``(frames, len(FEATURES))``: what the learned decision reads of each analysis window.

    Args:
        frames: the F0 estimator's windows, ``(n, window)``.
        f0_hz: the F0 of the chosen lag (whatever the rule said).
        periodicity: ``1 - d'`` at the chosen lag.
        level_db: each window's RMS level, dB full scale.
        rule_voiced: the periodicity rule's decision.
    """
    signs = np.signbit(frames)
    zero_crossings = np.mean(signs[:, 1:] != signs[:, :-1], axis=1)
    power = np.mean(frames * frames, axis=1)
    steps = np.diff(frames, axis=1)
    tilt_db = 10.0 * np.log10((np.mean(steps * steps, axis=1) + 1e-15) / (power + 1e-15))
    voiced = rule_voiced.astype(np.float64)
    log2_f0 = np.log2(np.maximum(f0_hz, 50.0) / 100.0) * voiced
    return np.stack([periodicity, level_db, zero_crossings, tilt_db, voiced, log2_f0], axis=1)


def learned_voicing(features: np.ndarray) -> np.ndarray:
    """The model's decision for each row of :func:`voicing_features` (True = voiced)."""
    z = np.full(features.shape[0], BIAS)
    for k in range(len(FEATURES)):   # feature by feature: a row's sum is the same whatever the block
        z += WEIGHTS[k] * ((features[:, k] - MEANS[k]) / SCALES[k])
    return z > 0.0

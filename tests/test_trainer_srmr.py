"""trainer/eval/srmr.py: SRMR falls as reverberation grows; the filterbanks are as the paper describes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import fftconvolve

from voxflip.trainer.eval.srmr import (
    MODULATION_CENTRES_HZ,
    erb_hz,
    gammatone_centres_hz,
    gammatone_filters,
    modulation_spectrum,
    srmr,
)

RT60S = (0.3, 0.6, 1.2)


def reverberate(audio: np.ndarray, sample_rate: int, rt60_s: float, seed: int = 0) -> np.ndarray:
    """Convolve with Gaussian noise decaying by 60 dB in ``rt60_s`` (a synthetic room response)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(1.5 * rt60_s * sample_rate)) / sample_rate
    response = rng.standard_normal(t.size) * np.exp(-3.0 * np.log(10.0) * t / rt60_s)
    wet = fftconvolve(audio, response)
    return (0.9 * wet / np.max(np.abs(wet))).astype(np.float32)


@pytest.fixture(scope="module")
def reverberant_arctic(example_speech):
    audio, rate = example_speech
    return rate, {0.0: audio, **{rt60: reverberate(audio, rate, rt60) for rt60 in RT60S}}


@pytest.mark.parametrize("analysis_rate", [16_000, 8_000])
def test_srmr_decreases_as_rt60_grows_and_dry_scores_highest(reverberant_arctic, analysis_rate):
    rate, signals = reverberant_arctic
    scores = {rt60: srmr(audio, rate, analysis_rate=analysis_rate) for rt60, audio in signals.items()}
    ordered = [scores[rt60] for rt60 in sorted(scores)]
    assert all(a > b for a, b in zip(ordered, ordered[1:], strict=False)), scores
    # Measured at 16 kHz (docs/metrics.md): dry 6.86, RT60 0.3 s 4.19, 0.6 s 2.75, 1.2 s 1.88.
    assert scores[0.0] > 1.4 * scores[0.3], scores


def test_srmr_matches_the_numbers_in_the_docs(reverberant_arctic):
    rate, signals = reverberant_arctic
    measured = {rt60: srmr(audio, rate) for rt60, audio in signals.items() if rt60 in (0.0, 1.2)}
    assert measured[0.0] == pytest.approx(6.86, abs=0.01)
    assert measured[1.2] == pytest.approx(1.88, abs=0.01)


def test_srmr_ignores_level_and_adaptive_bandwidth_is_k8_for_full_band_speech(example_speech):
    audio, rate = example_speech
    assert srmr(0.1 * audio, rate) == pytest.approx(srmr(audio, rate), rel=1e-6)
    spectrum = modulation_spectrum(audio, rate)
    assert spectrum.energies.shape == (23, 8) and np.all(spectrum.energies > 0)
    assert spectrum.k_star() == 8
    assert spectrum.ratio(adaptive_bandwidth=True) == spectrum.ratio(adaptive_bandwidth=False)


def test_gammatone_centres_follow_the_erb_scale():
    for rate in (8_000, 16_000):
        centres = gammatone_centres_hz(rate)
        assert centres.size == 23 and centres[0] == pytest.approx(125.0) and centres[-1] < rate / 2
        erb_rate = np.log(centres / 9.26449 + 24.7)
        assert np.allclose(np.diff(erb_rate), np.diff(erb_rate)[0])
    assert gammatone_centres_hz(16_000)[-1] == pytest.approx(6948, abs=1)


def test_gammatone_filters_have_unit_gain_at_their_centres():
    rate = 16_000
    centres = gammatone_centres_hz(rate)
    filters = gammatone_filters(rate, centres)
    for centre, taps in zip(centres, filters, strict=True):
        n = np.arange(taps.size)
        assert abs(np.sum(taps * np.exp(-2j * np.pi * centre * n / rate))) == pytest.approx(1.0)
    assert erb_hz(1000.0) == pytest.approx(132.64, abs=0.01)


def test_modulation_centres_are_the_papers():
    assert np.allclose(MODULATION_CENTRES_HZ, [4.0, 6.563, 10.767, 17.665, 28.983, 47.552, 78.017, 128.0], atol=0.001)
    assert np.allclose(MODULATION_CENTRES_HZ[1:] / MODULATION_CENTRES_HZ[:-1], 32.0 ** (1 / 7))


@pytest.mark.parametrize("kwargs, audio_s, match", [
    ({"analysis_rate": 22_050}, 1.0, "8000 or 16000"),
    ({}, 0.2, "at least 256 ms"),
])
def test_srmr_rejects_bad_settings(kwargs, audio_s, match):
    with pytest.raises(ValueError, match=match):
        srmr(np.full(int(audio_s * 16_000), 0.1, np.float32), 16_000, **kwargs)


def test_srmr_of_silence_is_an_error():
    with pytest.raises(ValueError, match="no modulation energy"):
        srmr(np.zeros(16_000, np.float32), 16_000)

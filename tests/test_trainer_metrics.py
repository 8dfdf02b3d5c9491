"""trainer/eval/metrics.py: input checks, resampling, the eval-extra hint and the 95% confidence interval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from voxflip.trainer.eval.metrics import (
    check_audio,
    check_sample_rate,
    confidence_interval,
    missing_dependency,
    resample,
)


def test_confidence_interval_matches_the_t_table():
    # mean 3, sample sd sqrt(2.5), t(0.975, 4) = 2.776445
    mean, half_width, n = confidence_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (mean, n) == (3.0, 5)
    assert half_width == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)


def test_confidence_interval_of_two_values_uses_t_with_one_degree_of_freedom():
    mean, half_width, n = confidence_interval(np.array([4.0, 6.0]))
    assert (mean, n) == (5.0, 2)
    assert half_width == pytest.approx(12.706205 * math.sqrt(2.0) / math.sqrt(2.0), rel=1e-6)


def test_confidence_interval_of_constant_values_has_zero_width():
    assert confidence_interval([3.5] * 10) == (3.5, 0.0, 10)


def test_confidence_interval_of_one_value_has_nan_half_width():
    mean, half_width, n = confidence_interval([0.25])
    assert mean == 0.25 and n == 1 and math.isnan(half_width)


@pytest.mark.parametrize("values, match", [
    ([], "at least one value"),
    ([1.0, float("nan")], "1 NaN or infinite"),
    ([1.0, float("inf"), 2.0], "drop those rows"),
])
def test_confidence_interval_rejects_bad_values(values, match):
    with pytest.raises(ValueError, match=match):
        confidence_interval(values)


@pytest.mark.parametrize("audio, exc, match", [
    (np.zeros((2, 480), np.float32), ValueError, "1-D mono"),
    (np.zeros(480, np.int16), TypeError, "float32"),
    (np.full(480, np.nan, np.float32), ValueError, "NaN"),
    (np.zeros(0, np.float32), ValueError, "empty"),
])
def test_check_audio_rejects_bad_audio(audio, exc, match):
    with pytest.raises(exc, match=match):
        check_audio(audio)


@pytest.mark.parametrize("rate", [0, -16000, 22050.5, True])
def test_check_sample_rate_rejects_non_positive_or_fractional_rates(rate):
    with pytest.raises(ValueError, match="positive whole number"):
        check_sample_rate(rate)


def test_resample_keeps_a_tone_and_the_duration():
    rate_in, rate_out = 22_050, 16_000
    t = np.arange(rate_in) / rate_in
    out = resample(np.sin(2 * np.pi * 440.0 * t), rate_in, rate_out)
    assert out.size == rate_out
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    assert np.argmax(spectrum) == 440  # 1 Hz bins over one second


def test_missing_dependency_is_one_line_with_the_install_hint():
    error = missing_dependency("WER", "pocketsphinx", ImportError("No module named 'pocketsphinx'"))
    assert isinstance(error, ImportError)
    assert str(error) == 'WER needs pocketsphinx. Install the eval extra: pip install -e ".[eval]"'

"""The DSP mel vocoder: level, pitch, streaming."""

from __future__ import annotations

import numpy as np
import pytest

from voxflip.engine.features.mel import MelAnalyzer, MelConfig
from voxflip.engine.features.pitch import estimate_f0
from voxflip.engine.vocoder.mel_vocoder import MelVocoder


@pytest.fixture(scope="module")
def speech_mel(example_speech):
    audio, rate = example_speech
    analyzer = MelAnalyzer(MelConfig.for_to_speech())
    mel = analyzer.log_mel(audio)
    f0 = estimate_f0(audio, rate, 160)[: mel.shape[0]]
    return audio, mel, f0, analyzer


def test_round_trip_keeps_level_and_spectral_shape(speech_mel):
    audio, mel, f0, analyzer = speech_mel
    out = MelVocoder()(mel, f0)
    assert out.shape == audio.shape
    back = analyzer.log_mel(out)[: mel.shape[0]]
    loud = mel.max(axis=1) > mel.max() - 8
    diff_db = 20 / np.log(10) * (back - mel)[loud]
    assert abs(diff_db.mean()) < 3.0          # measured +2.5 dB
    assert np.abs(diff_db).mean() < 6.0       # measured 4.8 dB
    assert abs(20 * np.log10(np.std(out) / np.std(audio))) < 2.0


def test_pitch_is_the_f0_given(speech_mel):
    _, mel, f0, _ = speech_mel
    voiced = f0 > 0
    target = np.where(voiced, 150.0, 0.0)
    out = MelVocoder()(mel, target)
    got = estimate_f0(out, 16_000, 160)[: mel.shape[0]]
    both = (got > 0) & voiced
    assert both.mean() > 0.5 * voiced.mean()
    assert np.median(np.abs(1200 * np.log2(got[both] / 150.0))) < 20


def test_streaming_in_chunks_equals_whole(speech_mel):
    _, mel, f0, _ = speech_mel
    vocoder = MelVocoder()
    whole, _ = vocoder.step(mel, f0, vocoder.init_state())
    state = vocoder.init_state()
    parts = []
    for i in range(0, mel.shape[0], 7):
        part, state = vocoder.step(mel[i : i + 7], f0[i : i + 7], state)
        parts.append(part)
    assert np.max(np.abs(np.concatenate(parts) - whole)) < 1e-6


def test_round_trip_at_24khz_the_speech_to_singing_setup(example_speech):
    """AlignSTS's mel (24 kHz, 512-point FFT) has two low bands on the same bins: the inverse must stay bounded."""
    from voxflip.engine.vocoder.mel_vocoder import MelVocoderConfig
    from voxflip.trainer.data.features import _resample

    audio, rate = example_speech
    cfg = MelConfig.for_to_singing()
    x = _resample(np.asarray(audio, np.float32), rate, cfg.sample_rate)
    analyzer = MelAnalyzer(cfg)
    mel = analyzer.log_mel(x)
    f0 = estimate_f0(x, cfg.sample_rate, cfg.hop_samples)[: mel.shape[0]]
    out = MelVocoder(MelVocoderConfig(mel=cfg))(mel, f0)
    back = analyzer.log_mel(out)[: mel.shape[0]]
    loud = mel.max(axis=1) > mel.max() - 8
    diff_db = 20 / np.log(10) * (back - mel)[loud]
    assert abs(diff_db.mean()) < 4.0 and np.abs(diff_db).mean() < 7.0
    assert abs(20 * np.log10(np.std(out) / np.std(x))) < 3.0   # was +180 dB with the plain pseudo-inverse


@pytest.mark.parametrize("mel", [MelConfig.for_to_speech(), MelConfig.for_to_singing()], ids=["16k", "24k"])
def test_smoothing_matrix_is_the_vocoders_smoothing(mel):
    """The neural harmonic-plus-noise vocoder smooths with this matrix inside its graph; it must be the
    DSP vocoder's own smoothing (edges repeated), row sums 1 (a flat envelope stays flat)."""
    from scipy.ndimage import convolve1d

    from voxflip.engine.vocoder.mel_vocoder import smoothing_kernel, smoothing_matrix

    matrix = smoothing_matrix(mel, 200.0)
    power = np.random.default_rng(0).random((6, mel.n_fft // 2 + 1))
    expected = convolve1d(power, smoothing_kernel(mel, 200.0), axis=1, mode="nearest")
    np.testing.assert_allclose(power @ matrix.T, expected, atol=1e-12)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)

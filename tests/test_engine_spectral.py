"""The compiled analysis (engine/features/_spectral.cpp): its FFT, CheapTrick, D4C and YIN.

pyworld is the reference for CheapTrick and D4C: the same methods, on the same pieces of real speech
(the bundled ARCTIC sentence at the analysis rate, F0 from our own estimator). They are meant to
agree to rounding wherever the signal is above pyworld's guard noise; where a band holds nothing
but that noise (above the 8 kHz of a 16 kHz recording), both read noise, and their values differ
by about as much as pyworld's differ from themselves with another grouping of the frames.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.signal import resample_poly

from voxflip.engine.features import _spectral
from voxflip.engine.features.world import AnalysisConfig, WorldAnalyzer

with warnings.catch_warnings():
    warnings.simplefilter("ignore")   # pyworld imports pkg_resources
    import pyworld

CFG = AnalysisConfig()
RATE, FFT, REACH = CFG.sample_rate, CFG.fft_size, CFG.envelope_margin_samples


@pytest.mark.parametrize("n", [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096])  # every stage count
def test_the_real_fft_and_its_inverse_match_numpy(n: int):
    x = np.random.default_rng(n).standard_normal(n)
    re, im = _spectral.rfft(x)
    expected = np.fft.rfft(x)
    np.testing.assert_allclose(re + 1j * im, expected, rtol=0, atol=1e-12 * n)
    np.testing.assert_allclose(_spectral.irfft(expected.real, expected.imag), n * x, rtol=0, atol=1e-12 * n)


@pytest.fixture(scope="module")
def speech_frames(example_speech):
    """The ARCTIC sentence at 24 kHz with its frame centres, F0 (ours) and pyworld's analysis of
    each frame on its own piece (how voxflip called pyworld before the compiled analysis)."""
    audio, rate = example_speech
    x = resample_poly(audio.astype(np.float64), RATE, rate)
    x = np.concatenate([np.zeros(REACH), x, np.zeros(REACH)])
    frames = WorldAnalyzer(CFG).analyze_signal(x[REACH:-REACH])
    centres = REACH + np.arange(len(frames)) * CFG.hop_samples
    keep = centres + REACH < x.shape[0]
    centres, f0 = centres[keep].astype(np.int64), frames.f0_hz[keep]
    f0_d4c = np.where(f0 > 0, np.maximum(f0, CFG.d4c_min_f0_hz), 0.0)
    at = np.array([REACH / RATE])
    sp_ref = np.empty((centres.size, CFG.bins))
    ap_ref = np.empty((centres.size, CFG.bins))
    for i, c in enumerate(centres):
        piece = x[c - REACH:c + REACH + 1]
        sp_ref[i] = pyworld.cheaptrick(piece, f0[i:i + 1], at, RATE, fft_size=FFT)[0]
        ap_ref[i] = pyworld.d4c(piece, f0_d4c[i:i + 1], at, RATE, threshold=0.0, fft_size=FFT)[0]
    return x, centres, f0, f0_d4c, sp_ref, ap_ref


def test_cheaptrick_agrees_with_pyworld_on_real_speech(speech_frames):
    x, centres, f0, _, sp_ref, _ = speech_frames
    sp = _spectral.cheaptrick(x, centres, f0, np.zeros(centres.size, np.int32), REACH, RATE, FFT)
    assert sp.shape == sp_ref.shape and np.all(np.isfinite(sp)) and np.all(sp > 0)
    level = 10 * np.log10(sp_ref.mean(axis=1))
    loud = level > level.max() - 60
    diff_db = np.abs(10 * np.log10(sp[loud] / sp_ref[loud]))
    assert np.median(diff_db) < 1e-5          # rounding
    assert np.percentile(diff_db, 99) < 0.05   # the guard noise counts in the deepest spectral valleys
    assert loud.sum() > 200 and (f0[loud] > 0).sum() > 100


def test_d4c_agrees_with_pyworld_on_real_speech(speech_frames):
    x, centres, _, f0_d4c, _, ap_ref = speech_frames
    ap = _spectral.d4c(x, centres, f0_d4c, np.zeros(centres.size, np.int32), REACH, RATE, FFT)
    voiced = f0_d4c > 0
    assert voiced.sum() > 100
    np.testing.assert_array_equal(ap[~voiced], 1.0 - 1e-12)   # pyworld's value for an unvoiced frame
    assert np.all((ap[voiced] > 0) & (ap[voiced] <= 1))
    diff_db = np.abs(20 * np.log10(ap[voiced] / ap_ref[voiced]))
    up_to_6k = np.arange(CFG.bins) * RATE / FFT <= 6000   # the bands at 3 and 6 kHz
    assert np.median(diff_db[:, up_to_6k]) < 0.01
    assert np.percentile(diff_db[:, up_to_6k], 99) < 0.2
    # the band at 9 kHz (interpolated above 6 kHz): this 16 kHz recording holds only the guard noise
    # there. Compare with pyworld's own spread (the same frames analysed after another frame in the
    # same call, whose noise came first)
    at = np.array([REACH / RATE])
    idx = np.nonzero(voiced)[0][:60]
    own = np.empty((idx.size, CFG.bins))
    for row, i in enumerate(idx):
        c = centres[i]
        piece = x[c - REACH - CFG.hop_samples:c + REACH + 1]
        pair = pyworld.d4c(piece, np.array([f0_d4c[i], f0_d4c[i]]), at + np.array([0, CFG.hop_samples / RATE]), RATE,
                           threshold=0.0, fft_size=FFT)
        own[row] = pair[1]
    own_spread = np.abs(20 * np.log10(own / ap_ref[idx]))[:, ~up_to_6k]
    ours = diff_db[np.isin(np.nonzero(voiced)[0], idx)][:, ~up_to_6k]
    print(f"above 6 kHz, median |dB|: ours vs pyworld {np.median(ours):.3f}, pyworld vs itself {np.median(own_spread):.3f}")
    assert np.median(ours) < 2 * np.median(own_spread) + 0.02


def test_every_frame_is_a_function_of_its_own_samples(speech_frames):
    """Alone, among others, or in another segment: the same bits."""
    x, centres, f0, f0_d4c, _, _ = speech_frames
    zeros = np.zeros(centres.size, np.int32)
    whole_sp = _spectral.cheaptrick(x, centres, f0, zeros, REACH, RATE, FFT)
    whole_ap = _spectral.d4c(x, centres, f0_d4c, zeros, REACH, RATE, FFT)
    for i in (5, 100, centres.size // 2, centres.size - 1):
        c = centres[i]
        piece = x[c - REACH:c + REACH + 1].copy()
        one = np.array([REACH], np.int64)
        alone_sp = _spectral.cheaptrick(piece, one, f0[i:i + 1], zeros[:1], REACH, RATE, FFT)
        alone_ap = _spectral.d4c(piece, one, f0_d4c[i:i + 1], zeros[:1], REACH, RATE, FFT)
        np.testing.assert_array_equal(alone_sp[0], whole_sp[i])
        np.testing.assert_array_equal(alone_ap[0], whole_ap[i])
    backwards = _spectral.d4c(x, centres[::-1].copy(), f0_d4c[::-1].copy(), zeros, REACH, RATE, FFT)
    np.testing.assert_array_equal(backwards[::-1], whole_ap)


def test_a_frame_scaled_down_comes_back_at_its_level(speech_frames):
    """The level-safety exponent (engine/features/levels.py): analysed at 2**-k, envelope times 4**k."""
    x, centres, f0, f0_d4c, _, _ = speech_frames
    pick = np.arange(40, 60)
    zeros = np.zeros(pick.size, np.int32)
    plain = _spectral.cheaptrick(x, centres[pick], f0[pick], zeros, REACH, RATE, FFT)
    loud = _spectral.cheaptrick(8.0 * x, centres[pick], f0[pick], zeros + 3, REACH, RATE, FFT)
    np.testing.assert_allclose(loud, 64.0 * plain, rtol=1e-12)
    ap = _spectral.d4c(x, centres[pick], f0_d4c[pick], zeros, REACH, RATE, FFT)
    np.testing.assert_array_equal(_spectral.d4c(8.0 * x, centres[pick], f0_d4c[pick], zeros + 3, REACH, RATE, FFT), ap)


def test_silence_and_tiny_input_stay_finite():
    x = np.zeros(4 * REACH)
    centres = np.array([2 * REACH], np.int64)
    for f0 in (0.0, 150.0):
        sp = _spectral.cheaptrick(x, centres, np.array([f0]), np.zeros(1, np.int32), REACH, RATE, FFT)
        ap = _spectral.d4c(x, centres, np.array([f0]), np.zeros(1, np.int32), REACH, RATE, FFT)
        assert np.all(np.isfinite(sp)) and np.all(sp > 0)
        assert np.all(np.isfinite(ap)) and np.all((ap > 0) & (ap <= 1))


@pytest.mark.parametrize("call", ["cheaptrick", "d4c"])
def test_bad_arguments_are_refused_with_what_is_wrong(call: str):
    fn = getattr(_spectral, call)
    x = np.zeros(1000)
    one = np.zeros(1, np.int32)
    with pytest.raises(ValueError, match=r"frame 0 at sample 100 does not have 510 samples on both sides in a segment of 1000"):
        fn(x, np.array([100], np.int64), np.array([150.0]), one, 510, RATE, FFT)
    with pytest.raises(ValueError, match="fft_size 1000 must be a power of two"):
        fn(x, np.array([500], np.int64), np.array([150.0]), one, 100, RATE, 1000)
    with pytest.raises(ValueError, match="f0 of frame 0 must be finite and >= 0"):
        fn(x, np.array([500], np.int64), np.array([np.nan]), one, 100, RATE, FFT)
    with pytest.raises(ValueError, match="one length"):
        fn(x, np.array([500, 501], np.int64), np.array([150.0]), one, 100, RATE, FFT)


def test_yin_finds_a_tone_and_refuses_noise_and_silence():
    from voxflip.engine.features.pitch import PitchConfig, yin_frames

    cfg = PitchConfig()
    length = cfg.window_samples(RATE)
    t = np.arange(length) / RATE
    tone = sum(np.sin(2 * np.pi * k * 187.0 * t) / k for k in range(1, 6))
    noise = np.random.default_rng(0).standard_normal(length) * 0.1
    f0, periodicity = yin_frames(np.stack([0.3 * tone, noise, np.zeros(length)]), RATE, cfg)
    assert abs(f0[0] - 187.0) < 0.2 and periodicity[0] > 0.95
    assert f0[1] == 0.0 and f0[2] == 0.0
    empty_f0, empty_p = yin_frames(np.zeros((0, length)), RATE, cfg)
    assert empty_f0.shape == empty_p.shape == (0,)


# -- the tracking high-pass ---------------------------------------------------------------------------

def test_the_tracking_highpass_at_a_fixed_cutoff_is_the_fourth_order_butterworth():
    from scipy.signal import butter, sosfilt

    x = np.random.default_rng(3).standard_normal(24_000)
    for cutoff in (60.0, 180.0, 2500.0):
        y = _spectral.tracking_highpass(x, np.full(x.shape[0], cutoff), 24_000.0, np.zeros(5))
        reference = sosfilt(butter(4, cutoff, "highpass", fs=24_000, output="sos"), x)
        np.testing.assert_allclose(y, reference, atol=1e-9)


def test_the_tracking_highpass_filtered_in_pieces_equals_the_whole():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(10_000)
    cutoff = np.repeat(rng.uniform(50.0, 400.0, 100), 100)      # a new cut-off every 100 samples
    whole = _spectral.tracking_highpass(x, cutoff, 24_000.0, np.zeros(5))
    state, parts = np.zeros(5), []
    for piece in np.array_split(np.arange(x.shape[0]), 13):
        parts.append(_spectral.tracking_highpass(x[piece], cutoff[piece], 24_000.0, state))
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_a_cutoff_that_follows_a_sung_line_leaves_the_level_bounded():
    """A 1 kHz tone passes at its level while the cut-off follows a tune (3 semitones up or down every
    100 ms, a 24-cent vibrato, a new value every 5 ms frame) and is gone once the cut-off sweeps far
    above it: no clicks, no build-up. Unsmoothed, the steps overshoot 11%."""
    frames = np.arange(200)
    tune = 150.0 * 2.0 ** (3.0 * ((frames // 20) % 3) / 12.0 + 0.24 / 12.0 * np.sin(2 * np.pi * 5.0 * frames * 0.005))
    line = np.repeat(tune, 120)
    sweep = np.geomspace(50.0, 5000.0, 24_000)
    t = np.arange(48_000) / 24_000.0
    y = _spectral.tracking_highpass(np.sin(2 * np.pi * 1000.0 * t), np.concatenate([line, sweep]), 24_000.0,
                                    np.zeros(5))
    assert np.all(np.isfinite(y))
    assert 0.97 < np.abs(y[2400:24_000]).max() < 1.03        # the tone's own level through the tune
    assert np.abs(y[-2400:]).max() < 0.05                     # the cut-off far above the tone: gone


@pytest.mark.parametrize(("args", "message"), [
    ((np.zeros(5), np.zeros(4), 24_000.0, np.zeros(5)), "one cut-off per sample"),
    ((np.zeros(5), np.zeros(5), 0.0, np.zeros(5)), "sample_rate"),
    ((np.zeros(5), np.zeros(5), 24_000.0, np.zeros(4)), "5 values"),
    ((np.zeros(5), np.zeros(5), 24_000.0, np.zeros(5), -1.0), "smooth_ms"),
])
def test_the_tracking_highpass_refuses_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        _spectral.tracking_highpass(*args)

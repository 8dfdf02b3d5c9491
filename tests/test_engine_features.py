"""Shared features: F0, WORLD analysis, log-mel, energy and the AlignSTS rhythm representation."""

from __future__ import annotations

import numpy as np
import pytest

from voxflip.engine.errors import ConfigError
from voxflip.engine.features.frames import frame_count, frame_matrix, pad_for_frames
from voxflip.engine.features.mel import MelAnalyzer, MelConfig, hz_to_mel, mel_filterbank, mel_to_hz
from voxflip.engine.features.pitch import PitchConfig, estimate_f0, refine_f0
from voxflip.engine.features.rhythm import rhythm, rhythm_distance
from voxflip.engine.features.world import AnalysisConfig, WorldAnalyzer

RATE = 24_000


def harmonic_tone(f0_hz: np.ndarray, rate: int = RATE, harmonics: int = 20, weights=None) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(f0_hz) / rate
    weights = weights or [1.0 / k for k in range(1, harmonics + 1)]
    return (0.3 * sum(w * np.sin(k * phase) for k, w in enumerate(weights, start=1))).astype(np.float64)


def test_f0_of_a_fast_glide_is_within_a_few_cents():
    t = np.arange(2 * RATE) / RATE
    f0 = 200 * 2 ** (0.5 * np.sin(2 * np.pi * 0.5 * t))  # +-6 semitones, up to 19 semitones per second
    est = estimate_f0(harmonic_tone(f0), RATE, 120)
    truth = f0[np.arange(est.shape[0]) * 120]
    inner = slice(10, -10)
    cents = 1200 * np.abs(np.log2(est[inner] / truth[inner]))
    assert np.median(cents) < 3.0 and np.max(cents) < 25.0


@pytest.mark.parametrize("f0_hz", [65.0, 110.0, 440.0, 1000.0])
def test_f0_across_the_range(f0_hz):
    est = estimate_f0(harmonic_tone(np.full(RATE, f0_hz)), RATE, 120)
    assert np.all(np.abs(1200 * np.log2(est[10:-10] / f0_hz)) < 5.0)


def test_f0_is_not_fooled_by_a_dominant_third_harmonic():
    # Pharyngeal singing: the 3rd harmonic far above the others. YIN's first dip lies at a third
    # of the period; the harmonic check must return the fundamental.
    est = estimate_f0(harmonic_tone(np.full(RATE, 220.0), weights=[0.2, 0.1, 1.0, 0.1, 0.05]), RATE, 120)
    assert np.median(est[10:-10]) == pytest.approx(220.0, rel=0.01)


def test_f0_is_not_fooled_by_a_third_harmonic_that_dwarfs_the_rest():
    # The third harmonic 20 dB above the others: a third of the period is already clearly periodic
    # (the normalised difference under 0.05), yet its double is no more so, and the period is.
    est = estimate_f0(harmonic_tone(np.full(RATE, 220.0), weights=[0.1, 0.05, 1.0, 0.05, 0.02]), RATE, 120)
    assert np.all(np.abs(1200 * np.log2(est[10:-10] / 220.0)) < 5.0)


def test_f0_of_a_voice_with_a_faint_subharmonic_is_its_pitch_not_the_octave_below():
    # A strong second harmonic puts YIN's first dip at half the period; a faint component at half
    # the pitch (-23 dB under the second harmonic, as a pressed tenor's vibrato on dev-data has
    # one) makes two periods repeat about as well as one. The pitch heard, and Praat's, is the
    # period's: the lowest multiple of the dip that is a period, not the most periodic multiple.
    t = np.arange(RATE) / RATE
    f0 = 278.0 * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.5 * t))
    x = harmonic_tone(f0, weights=[0.2, 1.0, 0.1, 0.4]) + 0.3 * 0.07 * np.sin(np.pi * np.cumsum(f0) / RATE)
    est = estimate_f0(x, RATE, 120)
    truth = f0[np.arange(est.shape[0]) * 120]
    assert np.all(np.abs(1200 * np.log2(est[10:-10] / truth[10:-10])) < 50.0)


def _cents_rms(est: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((1200 * np.log2(est / truth)) ** 2)))


@pytest.mark.parametrize("base_hz", [100.0, 220.0, 440.0])
def test_refined_f0_follows_a_vibrato_within_its_window(base_hz):
    # A 5.5 Hz vibrato of +-50 cents moves the pitch within YIN's 33 ms window; the harmonics'
    # instantaneous frequency at the frame's centre follows it. Noise 40 dB down, random phases.
    t = np.arange(2 * RATE) / RATE
    f0 = base_hz * 2 ** (0.5 / 12 * np.sin(2 * np.pi * 5.5 * t))
    rng = np.random.default_rng(0)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 20) if k * base_hz < 11_000)
    x = 0.3 * x + 0.003 * rng.standard_normal(t.shape[0])
    plain = estimate_f0(x, RATE, 120)
    refined = estimate_f0(x, RATE, 120, PitchConfig(refine=True))
    truth = f0[np.arange(plain.shape[0]) * 120]
    inner = slice(10, -10)
    assert np.array_equal(plain > 0, refined > 0)   # voicing is YIN's
    assert _cents_rms(refined[inner], truth[inner]) < 0.6 * _cents_rms(plain[inner], truth[inner])
    assert _cents_rms(refined[inner], truth[inner]) < 0.8


def test_refine_f0_keeps_what_it_cannot_read():
    config = PitchConfig()
    win = config.window_samples(RATE)
    x = harmonic_tone(np.full(RATE, 220.0))
    rows = frame_matrix(*pad_for_frames(x, 120, win)[:2], 40, 5, 120, win)
    # unvoiced stays unvoiced, silence keeps what it is given, and a guess an octave high is not
    # dragged down toward the fundamental its window cannot resolve (that reading moves too far to
    # be taken): it stays within 50 cents of its octave, as YIN's octave error was
    assert np.all(refine_f0(rows, np.zeros(5), RATE) == 0)
    assert np.all(refine_f0(np.zeros_like(rows), np.full(5, 220.0), RATE) == 220.0)
    assert np.all(np.abs(1200 * np.log2(refine_f0(rows, np.full(5, 445.0), RATE) / 440.0)) < 50.0)
    # a wrong F0 is moved onto the tone: 23.5 cents off, and 8% (133 cents) off
    for given in (223.0, 220.0 * 1.08):
        assert np.all(np.abs(1200 * np.log2(refine_f0(rows, np.full(5, given), RATE) / 220.0)) < 1.0)
    # under 1.5 times the search floor three periods do not fit the window: YIN's value stays
    low = harmonic_tone(np.full(RATE, 80.0))
    rows = frame_matrix(*pad_for_frames(low, 120, win)[:2], 40, 5, 120, win)
    assert np.all(refine_f0(rows, np.full(5, 80.3), RATE) == 80.3)


def test_silence_and_noise_are_unvoiced():
    silence = np.zeros(RATE)
    noise = np.random.default_rng(0).standard_normal(RATE) * 0.1
    assert np.all(estimate_f0(silence, RATE, 120) == 0)
    assert np.mean(estimate_f0(noise, RATE, 120) > 0) < 0.05


def test_pitch_config_rejects_bad_ranges():
    with pytest.raises(ConfigError, match="f0_min_hz"):
        PitchConfig(f0_min_hz=500.0, f0_max_hz=100.0)


def test_frame_matrix_on_a_segment_equals_the_whole_signal():
    x = np.random.default_rng(1).standard_normal(5000)
    padded, start, n = pad_for_frames(x, 120, 512)
    whole = frame_matrix(padded, start, 0, n, 120, 512)
    assert n == frame_count(5000, 120) == 42
    # a segment holding just frames 10..14 (absolute samples 10*120-256 .. 14*120+256)
    lo = 10 * 120 - 256
    seg = x[lo : 14 * 120 + 256]
    assert np.array_equal(frame_matrix(seg, lo, 10, 5, 120, 512), whole[10:15])
    with pytest.raises(ValueError, match="need"):
        frame_matrix(seg, lo, 9, 5, 120, 512)


def test_world_analysis_of_a_segment_matches_the_whole_signal():
    t = np.arange(RATE) / RATE
    x = harmonic_tone(180 * 2 ** (0.2 * np.sin(2 * np.pi * 3 * t)))
    analyzer = WorldAnalyzer(AnalysisConfig())
    whole = analyzer.analyze_signal(x)
    margin = analyzer.config.margin_samples
    lo = 50 * 120 - margin
    part = analyzer.analyze(x[lo : 60 * 120 + margin + 1], lo, 50, 10)
    assert np.array_equal(part.f0_hz, whole.f0_hz[50:60])
    # Every bin, the near-silent ones too: each frame is analysed alone, on its own samples.
    np.testing.assert_allclose(part.sp, whole.sp[50:60], rtol=1e-9)
    np.testing.assert_allclose(part.ap, whole.ap[50:60], rtol=1e-9, atol=1e-12)


def test_world_analysis_does_not_depend_on_how_frames_are_grouped():
    """CheapTrick and D4C add a guard noise whose generator restarts at every call; analysed among
    others, a frame depended on the frames before it in the call, and D4C's aperiodicity followed
    that noise wherever the input is near silence (here: a tone band-limited to 6 kHz)."""
    from scipy.signal import butter, sosfiltfilt

    t = np.arange(RATE) / RATE
    x = sosfiltfilt(butter(8, 6000, fs=RATE, output="sos"), harmonic_tone(160 * 2 ** (0.1 * np.sin(2 * np.pi * t))))
    analyzer = WorldAnalyzer(AnalysisConfig())
    margin, hop = analyzer.config.margin_samples, analyzer.config.hop_samples
    padded = np.concatenate([np.zeros(margin), x, np.zeros(margin + hop)])

    def grouped(size: int):
        parts = [analyzer.analyze(padded[f * hop:(f + size - 1) * hop + 2 * margin + 1], f * hop - margin, f, size)
                 for f in range(40, 160, size)]
        return np.concatenate([p.sp for p in parts]), np.concatenate([p.ap for p in parts])

    (sp1, ap1), (sp8, ap8), (sp40, ap40) = grouped(1), grouped(8), grouped(40)
    for sp, ap in ((sp8, ap8), (sp40, ap40)):
        np.testing.assert_allclose(sp, sp1, rtol=1e-9)
        np.testing.assert_allclose(ap, ap1, rtol=1e-9, atol=1e-12)


def test_a_voice_floor_shortens_every_window():
    default = AnalysisConfig()
    floored = default.for_voice_floor(100.0)
    # the envelopes to 1.5 floor periods, the F0 search from 0.82 of the floor (two of its periods)
    assert (floored.envelope_f0_floor_hz, floored.pitch.f0_min_hz) == (100.0, 82.0)
    assert floored.d4c_min_f0_hz == pytest.approx(400.0 / 3.0)      # two of its periods: 1.5 of 100 Hz
    assert floored.envelope_margin_samples == 362                   # 15 ms + 2 samples
    assert floored.pitch_margin_samples + 120 == 415                # one frame + 12.3 ms: the lookahead
    assert default.envelope_margin_samples == 510 and default.pitch_margin_samples == 402
    assert default.for_voice_floor(71.0).pitch.f0_min_hz == default.pitch.f0_min_hz   # never below the default's
    assert default.for_voice_floor(300.0).d4c_min_f0_hz == 400.0
    for bad in (70.0, 401.0, float("nan"), True):
        with pytest.raises(ConfigError, match="voice_floor_hz"):
            default.for_voice_floor(bad)


def test_a_voice_floor_keeps_the_voice_above_it_and_leaves_the_voice_well_below_it_unvoiced():
    t = np.arange(RATE) / RATE
    floored = WorldAnalyzer(AnalysisConfig().for_voice_floor(100.0))
    default = WorldAnalyzer(AnalysisConfig())
    above = harmonic_tone(np.full(t.shape, 130.0))
    f0 = floored.analyze_signal(above).f0_hz[10:-10]
    assert np.all(np.abs(1200 * np.log2(f0 / 130.0)) < 10)
    level = 10 * np.log10(floored.analyze_signal(above).sp[50:150])
    reference = 10 * np.log10(default.analyze_signal(above).sp[50:150])
    audible = reference > reference.max(axis=1, keepdims=True) - 40
    assert np.median(np.abs(level - reference)[audible]) < 1.0      # dB: the same envelope
    below = harmonic_tone(np.full(t.shape, 75.0))      # under the F0 search's 82 Hz
    assert np.all(floored.analyze_signal(below).f0_hz[10:-10] == 0)
    assert np.all(default.analyze_signal(below).f0_hz[10:-10] > 0)


def test_analysis_config_refuses_an_fft_too_small_for_the_floor():
    with pytest.raises(ConfigError, match="fft_size"):
        AnalysisConfig(fft_size=512, envelope_f0_floor_hz=71.0)


def test_mel_scale_round_trips_and_is_linear_below_1khz():
    hz = np.array([0.0, 200.0, 999.0, 1000.0, 4000.0, 11_000.0])
    assert np.allclose(mel_to_hz(hz_to_mel(hz)), hz)
    assert hz_to_mel(600.0) == pytest.approx(9.0)


def test_mel_filterbank_has_unit_area_triangles_in_order():
    cfg = MelConfig.for_to_singing()
    fb = mel_filterbank(cfg)
    assert fb.shape == (80, 257)
    hz_per_bin = cfg.sample_rate / cfg.n_fft
    areas = fb.sum(axis=1) * hz_per_bin
    assert np.allclose(areas[20:], 1.0, rtol=0.1)  # narrow low bands are sampled too coarsely to integrate
    peaks = np.argmax(fb, axis=1)
    assert np.all(np.diff(peaks) >= 0)


@pytest.mark.parametrize("config", [MelConfig.for_to_speech(), MelConfig.for_to_singing()], ids=["s2s-16k", "sts-24k"])
def test_log_mel_of_a_tone_peaks_in_the_band_of_the_tone(config):
    rate = config.sample_rate
    t = np.arange(rate) / rate
    mel = MelAnalyzer(config).log_mel(0.5 * np.sin(2 * np.pi * 1500 * t))
    assert mel.shape == (frame_count(rate, config.hop_samples), 80)
    band = int(np.argmax(mel[mel.shape[0] // 2]))
    edges = mel_to_hz(np.linspace(hz_to_mel(config.fmin_hz), hz_to_mel(config.fmax_hz), 82))
    assert edges[band] < 1500 < edges[band + 2]


def test_mel_config_checks_its_frame_setup():
    with pytest.raises(ConfigError, match="win_samples"):
        MelConfig(n_fft=256, win_samples=512)
    with pytest.raises(ConfigError, match="fmax"):
        MelConfig(fmax_hz=20_000.0)


def test_rhythm_is_a_smoothed_step_at_the_mean_energy():
    energy = np.concatenate([np.full(20, 0.01), np.full(30, 1.0), np.full(20, 0.02), np.full(10, 0.8)])
    r = rhythm(energy)  # beta = 400, sigma = 1 frame, as in the paper
    assert r.shape == energy.shape
    assert np.all(r[2:18] < 0.01) and np.all(r[22:48] > 0.99)
    assert 0.2 < r[20] < 0.8  # the Gaussian filter softens the edge
    # relative loudness is gone: the 0.8 stretch is as "on" as the 1.0 stretch
    assert abs(r[75] - r[35]) < 0.01


def test_rhythm_of_a_constant_contour_is_one_half_and_distance_behaves():
    assert np.allclose(rhythm(np.ones(10)), 0.5)
    a = rhythm(np.abs(np.sin(np.linspace(0, 6, 100))))
    assert rhythm_distance(a, a) == 0.0
    assert rhythm_distance(a, 1 - a) > 0.5
    assert rhythm_distance(a, a[::2]) < 0.2  # compared after stretching to a common length
    with pytest.raises(ValueError, match="1-D"):
        rhythm(np.ones((2, 3)))


def test_an_analysis_shared_with_a_worker_thread_is_the_same():
    """One call split between the caller and a worker, and queued calls (prefetch), give what one
    thread gives (to the last bit but one)."""
    t = np.arange(RATE) / RATE
    x = harmonic_tone(170 * 2 ** (0.2 * np.sin(2 * np.pi * 2 * t)))
    alone = WorldAnalyzer(AnalysisConfig())
    shared = WorldAnalyzer(AnalysisConfig(), threads=2)
    margin, hop = alone.config.margin_samples, alone.config.hop_samples
    padded = np.concatenate([np.zeros(margin), x, np.zeros(margin + hop)])
    try:
        jobs = [(padded[f * hop:(f + 59) * hop + 2 * margin + 1], f * hop - margin, f, 60) for f in (0, 60, 120)]
        shared.prefetch(jobs[1:])                      # two queued; the first is split in the call
        for segment, start, first, count in jobs:
            a, b = alone.analyze(segment, start, first, count), shared.analyze(segment, start, first, count)
            # numpy's batched FFT (YIN) may round the last bit differently for another batch size:
            # F0 can move by one ulp (3e-16), D4C by 1e-11 after it; the audio is the same
            for name in ("f0_hz", "periodicity", "level_db", "sp", "ap"):
                np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-9, atol=1e-12, err_msg=name)
        assert shared._pool is not None and not shared._queued
    finally:
        shared.close()
    with pytest.raises(ConfigError, match="threads"):
        WorldAnalyzer(AnalysisConfig(), threads=0)

"""The streaming source-filter synthesiser: level like WORLD's, grouping-invariant, streaming-safe."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.signal import welch

from voxflip.engine.errors import ConfigError
from voxflip.engine.vocoder.source_filter import SourceFilterSynth, SynthConfig

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pyworld


@pytest.fixture(scope="module")
def world_params():
    rate = 24_000
    t = np.arange(2 * rate) / rate
    f0 = 150 * 2 ** (0.3 * np.sin(2 * np.pi * 1.5 * t))
    x = 0.3 * sum(np.sin(k * 2 * np.pi * np.cumsum(f0) / rate) / k for k in range(1, 30))
    x[rate : rate + 2400] = np.random.default_rng(0).standard_normal(2400) * 0.05  # an unvoiced stretch
    f0_est, times = pyworld.harvest(x, rate, frame_period=5.0)
    sp = pyworld.cheaptrick(x, f0_est, times, rate, fft_size=1024)
    ap = pyworld.d4c(x, f0_est, times, rate, fft_size=1024)
    return f0_est, sp, ap


def test_level_matches_world_synthesis(world_params):
    f0, sp, ap = world_params
    reference = pyworld.synthesize(f0, sp, ap, 24_000, 5.0)
    synth = SourceFilterSynth(SynthConfig())
    out, _ = synth.step(f0, sp, ap, synth.init_state())
    n = min(reference.shape[0], out.shape[0])
    level = 20 * np.log10(np.sqrt(np.mean(out[:n] ** 2)) / np.sqrt(np.mean(reference[:n] ** 2)))
    assert abs(level) < 0.5


@pytest.mark.parametrize("group", [1, 2, 7, 64])
@pytest.mark.parametrize("dc_block_hz", [0.0, 20.0])
def test_output_does_not_depend_on_how_frames_are_grouped(world_params, group, dc_block_hz):
    f0, sp, ap = world_params
    synth = SourceFilterSynth(SynthConfig(dc_block_hz=dc_block_hz))
    whole, _ = synth.step(f0, sp, ap, synth.init_state())
    state = synth.init_state()
    parts = []
    for i in range(0, f0.shape[0], group):
        out, state = synth.step(f0[i : i + group], sp[i : i + group], ap[i : i + group], state)
        parts.append(out)
    streamed = np.concatenate(parts)
    assert streamed.shape == whole.shape
    assert np.max(np.abs(streamed - whole)) < 1e-6


def _band_db(x: np.ndarray, low: float, high: float, rate: int = 24_000) -> float:
    freqs, power = welch(x, rate, nperseg=8192)
    return float(10 * np.log10(np.sum(power[(freqs >= low) & (freqs < high)]) + 1e-30))


def test_dc_block_takes_away_the_rumble_under_20_hz_and_leaves_the_voice(world_params):
    # The input has nothing under 20 Hz (harmonics of 106-212 Hz, a burst of noise); the pulses,
    # whose responses stay high down to 0 Hz, placed at a rate and level that move, put energy
    # there. The 20 Hz high-pass takes most of it away and leaves the voice's bands as they were.
    f0, sp, ap = world_params
    plain, _ = SourceFilterSynth(SynthConfig()).step(f0, sp, ap, SourceFilterSynth(SynthConfig()).init_state())
    synth = SourceFilterSynth(SynthConfig(dc_block_hz=20.0))
    blocked, _ = synth.step(f0, sp, ap, synth.init_state())
    assert _band_db(blocked, 0, 20) < _band_db(plain, 0, 20) - 10
    assert abs(np.mean(blocked)) < 0.2 * abs(np.mean(plain))
    assert _band_db(blocked, 70, 12_000) == pytest.approx(_band_db(plain, 70, 12_000), abs=0.1)


@pytest.mark.parametrize("hz", [-1.0, 3.0, 80.0])
def test_dc_block_outside_its_range_is_refused_with_the_value(hz):
    with pytest.raises(ConfigError, match=rf"SynthConfig.dc_block_hz={hz!r} must be 0 \(off\) or within 5..60 Hz"):
        SynthConfig(dc_block_hz=hz)


def test_the_world_converters_high_pass_their_output(example_speech, monkeypatch):
    # Every WORLD converter builds its synthesiser with WORLD_DC_BLOCK_HZ: on the bundled sentence the
    # output's share under 20 Hz falls by more than 6 dB against the same converter without it.
    from voxflip.engine.converters import world_pipeline
    from voxflip.engine.registry import make_converter
    from voxflip.streaming.streamer import Streamer

    audio, rate = example_speech
    shares = {}
    for hz in (0.0, world_pipeline.WORLD_DC_BLOCK_HZ):
        monkeypatch.setattr(world_pipeline, "WORLD_DC_BLOCK_HZ", hz)
        converter = make_converter("speech", "world-nodur")
        assert converter.synth.config.dc_block_hz == hz
        streamer = Streamer(converter, rate)
        out = np.concatenate([streamer.process(audio), streamer.flush()])
        shares[hz] = _band_db(out, 0, 20, rate) - _band_db(out, 0, rate / 2, rate)
    assert shares[20.0] < shares[0.0] - 6


def test_first_call_is_one_interval_short_and_later_calls_are_exact(world_params):
    f0, sp, ap = world_params
    synth = SourceFilterSynth(SynthConfig())
    state = synth.init_state()
    first, state = synth.step(f0[:5], sp[:5], ap[:5], state)
    second, state = synth.step(f0[5:9], sp[5:9], ap[5:9], state)
    assert first.shape[0] == 4 * 120 and second.shape[0] == 4 * 120


def test_pulses_follow_f0():
    synth = SourceFilterSynth(SynthConfig())
    n = 401
    sp = np.full((n, 513), 1e-4)
    ap = np.full((n, 513), 0.001)
    state = synth.init_state()
    synth.step(np.full(n, 200.0), sp, ap, state)
    assert state.pulses == pytest.approx(200 * 400 * 120 / 24_000, abs=1)


def test_config_rejects_odd_fft_sizes():
    with pytest.raises(ConfigError, match="power of two"):
        SynthConfig(fft_size=1000)


def test_responses_shared_with_a_thread_give_the_same_samples():
    """Offline renders compute every other group of pulse responses on a worker thread
    (``share_with``): the groups and the noise stream are the same, so are the samples."""
    from concurrent.futures import ThreadPoolExecutor

    from voxflip.engine.vocoder.source_filter import RESPONSE_GROUP

    rng = np.random.default_rng(3)
    frames = 300                                   # 1.5 s at 5 ms: about 450 pulses at 300 Hz in one call
    f0 = np.where(np.arange(frames) % 80 < 60, 300.0 + 20 * np.sin(np.arange(frames) / 9), 0.0)
    sp = np.exp(rng.normal(-6, 1, (frames, 513)))
    ap = rng.uniform(0.01, 0.9, (frames, 513))
    synth = SourceFilterSynth(SynthConfig())
    alone_state = synth.init_state()
    alone, alone_state = synth.step(f0, sp, ap, alone_state)
    assert alone_state.pulses > 4 * RESPONSE_GROUP
    with ThreadPoolExecutor(1) as pool:
        synth.share_with(pool)
        shared_state = synth.init_state()
        shared, shared_state = synth.step(f0, sp, ap, shared_state)
        synth.share_with(None)
    np.testing.assert_array_equal(shared, alone)
    np.testing.assert_array_equal(shared_state.ola, alone_state.ola)
    assert shared_state.rng.standard_normal() == alone_state.rng.standard_normal()


# -- the compiled arithmetic (engine/vocoder/_pulses.cpp) against a numpy transcription of the formulas --

def _numpy_minimum_phase(amplitude: np.ndarray) -> np.ndarray:
    n = 2 * (amplitude.shape[1] - 1)
    fold = np.zeros(n)
    fold[0] = fold[n // 2] = 1.0
    fold[1 : n // 2] = 2.0
    return np.exp(np.fft.rfft(np.fft.irfft(np.log(amplitude + 1e-12), n, axis=1) * fold, axis=1))


def _envelopes(rng, frames: int, bins: int = 513):
    f0 = np.where(rng.uniform(size=frames) < 0.7, rng.uniform(80, 600, frames), 0.0)
    sp = np.exp(rng.normal(-6, 2, (frames, bins)))
    ap = rng.uniform(0.0, 1.0, (frames, bins))
    ap[0, :5] = 1.2    # above 1: read as 1
    return f0, sp, ap


def test_frame_responses_are_the_cepstral_minimum_phase_formulas():
    from voxflip.engine.vocoder import _pulses

    f0, sp, ap = _envelopes(np.random.default_rng(5), 40)
    periodic = np.empty(sp.shape, np.complex128)
    noise = np.empty(sp.shape, np.complex128)
    _pulses.frame_responses(f0, sp, ap, periodic, noise)

    voiced = f0 > 0
    ratio = np.minimum(ap, 1.0) ** 2
    amplitude = np.sqrt(sp * (1.0 - ratio))
    want_periodic = _numpy_minimum_phase(amplitude) * voiced[:, None]
    want_periodic[:, 0] = 0.0
    want_noise = np.where(voiced[:, None], _numpy_minimum_phase(amplitude) * np.sqrt(sp * ratio) / (amplitude + 1e-12),
                          _numpy_minimum_phase(np.sqrt(sp)))
    np.testing.assert_allclose(periodic, want_periodic, rtol=1e-9, atol=1e-12 * np.abs(want_periodic).max())
    np.testing.assert_allclose(noise, want_noise, rtol=1e-9, atol=1e-12 * np.abs(want_noise).max())
    # minimum phase: the amplitudes are the ones asked for
    np.testing.assert_allclose(np.abs(noise[~voiced]), np.sqrt(sp[~voiced]), rtol=1e-9)


def test_pulse_responses_mix_two_frames_delay_and_filter_their_noise():
    from voxflip.engine.vocoder import _pulses

    rng = np.random.default_rng(6)
    frames, pulses, n = 12, 30, 1024
    periodic = rng.normal(size=(frames, 513)) + 1j * rng.normal(size=(frames, 513))
    noise_filter = rng.normal(size=(frames, 513)) + 1j * rng.normal(size=(frames, 513))
    synth = SourceFilterSynth(SynthConfig(fft_size=n))
    table = synth._advance
    frame = rng.integers(0, frames - 1, pulses)
    weight = rng.uniform(size=pulses)
    gain = np.where(rng.uniform(size=pulses) < 0.8, rng.uniform(5, 15, pulses), 0.0)
    advance = rng.integers(0, table.shape[0], pulses)
    pulse_noise = rng.normal(size=(pulses, 200))
    out = np.empty((pulses, n))
    _pulses.pulse_responses(frame, weight, gain, advance, pulse_noise, periodic, noise_filter, table, out)

    w = weight[:, None]
    spectrum = (periodic[frame] * (1 - w) + periodic[frame + 1] * w) * table[advance] * gain[:, None]
    spectrum += np.fft.rfft(pulse_noise, n, axis=1) * (noise_filter[frame] * (1 - w) + noise_filter[frame + 1] * w)
    want = np.fft.irfft(spectrum, n, axis=1)
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-12 * np.abs(want).max())

    buffer = np.zeros(3000)
    starts = rng.integers(0, 3000 - n, pulses)
    _pulses.overlap_add(buffer, starts, out)
    want_buffer = np.zeros(3000)
    for s, row in zip(starts, want, strict=True):
        want_buffer[s : s + n] += row
    np.testing.assert_allclose(buffer, want_buffer, rtol=0, atol=1e-12 * np.abs(want_buffer).max())


def test_compiled_synthesis_refuses_bad_arguments_in_one_line():
    from voxflip.engine.vocoder import _pulses

    f0, sp, ap = _envelopes(np.random.default_rng(7), 4)
    good = np.empty(sp.shape, np.complex128)
    with pytest.raises(ValueError, match=r"^spectra of 500 bins: need fft_size // 2 \+ 1 bins"):
        _pulses.frame_responses(f0, sp[:, :500], ap[:, :500], good[:, :500].copy(), good[:, :500].copy())
    with pytest.raises(ValueError, match=r"^ap must have shape \(4, 513\)$"):
        _pulses.frame_responses(f0, sp, ap[:3], good, good.copy())
    with pytest.raises(TypeError):   # an output of the wrong type is refused, never silently copied
        _pulses.frame_responses(f0, sp, ap, good.astype(np.complex64), good)
    out = np.empty((1, 1024))
    table = SourceFilterSynth(SynthConfig())._advance
    args = (np.array([0.5]), np.array([1.0]), np.array([0]), np.zeros((1, 100)), good, good, table, out)
    with pytest.raises(ValueError, match=r"^pulse 0 follows frame 3: it needs that frame and the next among 4$"):
        _pulses.pulse_responses(np.array([3]), *args)
    with pytest.raises(ValueError, match=r"^pulse 0 at sample 2500 with 1024 samples does not fit a buffer of 3000$"):
        _pulses.overlap_add(np.zeros(3000), np.array([2500]), out)


def test_pulses_are_placed_one_period_apart_with_their_fractional_delay():
    from voxflip.engine.vocoder import _pulses

    # 150 Hz at 24 kHz: a period of 160 samples. From phase 0.3025 the phase passes 1 after 111.6
    # samples: at the 112th sample (index 111), 0.4 of a sample before it
    start, delay, rate, voiced, phase = _pulses.place_pulses(np.full(11, 150.0), 120, 24_000.0, 200.0, 0.3025)
    np.testing.assert_array_equal(start, 111 + 160 * np.arange(7))
    np.testing.assert_allclose(delay, 0.4, atol=1e-9)
    assert np.all(voiced == 1.0) and np.allclose(rate, 150 / 24_000)
    assert phase == pytest.approx((0.3025 + 1200 * 150 / 24_000) % 1.0)
    # unvoiced frames: pulses at the unvoiced rate, marked so (their periodic part gets no gain)
    start, _, rate, voiced, _ = _pulses.place_pulses(np.zeros(11), 120, 24_000.0, 200.0, 0.0)
    assert np.all(voiced == 0.0) and np.allclose(rate, 200 / 24_000) and np.all(np.diff(start) == 120)
    with pytest.raises(ValueError, match=r"^hop 0 must be > 0$"):
        _pulses.place_pulses(np.zeros(3), 0, 24_000.0, 200.0, 0.0)

"""The streaming source-filter synthesiser: level like WORLD's, grouping-invariant, streaming-safe."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

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
def test_output_does_not_depend_on_how_frames_are_grouped(world_params, group):
    f0, sp, ap = world_params
    synth = SourceFilterSynth(SynthConfig())
    whole, _ = synth.step(f0, sp, ap, synth.init_state())
    state = synth.init_state()
    parts = []
    for i in range(0, f0.shape[0], group):
        out, state = synth.step(f0[i : i + group], sp[i : i + group], ap[i : i + group], state)
        parts.append(out)
    streamed = np.concatenate(parts)
    assert streamed.shape == whole.shape
    assert np.max(np.abs(streamed - whole)) < 1e-6


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

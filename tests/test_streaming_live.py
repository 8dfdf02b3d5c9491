"""The live engine: constant-rate adapter, callback, worker, file pacing, parameters."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import CHUNK_SIZES

from voxflip.engine.converters.base import DelayConverter
from voxflip.engine.params import ParamChange
from voxflip.engine.registry import make_converter
from voxflip.streaming.live import LiveEngine, prefill_blocks_for, run_file
from voxflip.streaming.realtime import RealtimeStreamer
from voxflip.streaming.streamer import Streamer


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return (np.random.default_rng(11).standard_normal(24_000) * 0.1).astype(np.float32)


@pytest.mark.parametrize("block", CHUNK_SIZES)
def test_realtime_output_is_the_input_delayed_by_exactly_the_declared_latency(noise, block):
    rt = RealtimeStreamer(Streamer(DelayConverter(lookahead_samples=37)), 24_000)
    out = np.concatenate([rt.process(noise[i : i + block]) for i in range(0, noise.shape[0], block)])
    lat = rt.latency_samples
    assert lat == 480 + 37
    assert out.shape == noise.shape
    assert np.all(out[:lat] == 0)
    assert np.array_equal(out[lat:], noise[: noise.shape[0] - lat])
    assert rt.gap_samples == 0


def test_time_preserving_converter_never_underflows_at_any_device_rate(noise):
    for rate in (44_100, 48_000, 16_000):
        rt = RealtimeStreamer(Streamer(make_converter("speech", "world-nodur"), rate, rate), rate)
        x = np.resize(noise, rate)
        for i in range(0, x.shape[0], 100):
            rt.process(x[i : i + 100])
        assert rt.gap_samples == 0, f"{rate} Hz"


def test_world_dur_leaves_silence_instead_of_running_ahead(sung_held_notes):
    rt = RealtimeStreamer(Streamer(make_converter("speech", "world-dur")), 24_000)
    x = sung_held_notes
    out = np.concatenate([rt.process(x[i : i + 256]) for i in range(0, x.shape[0] - 255, 256)])
    assert out.shape[0] == (x.shape[0] // 256) * 256   # one block out per block in
    assert rt.gap_samples > 0.2 * x.shape[0]            # the dropped vowel frames became silence
    assert rt.dropped_samples == 0


def test_mix_zero_and_bypass_give_the_delayed_input_and_changes_are_smooth(noise):
    conv = make_converter("speech", "world-nodur")
    rt = RealtimeStreamer(Streamer(conv), 24_000, smoothing_ms=20.0)
    rt.set_mix(0.0)
    rt.reset_ramps()
    out = np.concatenate([rt.process(noise[i : i + 240]) for i in range(0, 24_000, 240)])
    lat = rt.latency_samples
    assert np.allclose(out[lat:], noise[:-lat], atol=1e-7)
    # gain: a jump of -20 dB ramps over 20 ms: no step larger than the signal's own
    tone = (0.5 * np.sin(2 * np.pi * 200 * np.arange(24_000) / 24_000)).astype(np.float32)
    rt = RealtimeStreamer(Streamer(DelayConverter()), 24_000, smoothing_ms=20.0)
    first = np.concatenate([rt.process(tone[i : i + 240]) for i in range(0, 12_000, 240)])
    rt.set_gain_db(-20.0)
    second = np.concatenate([rt.process(tone[i : i + 240]) for i in range(12_000, 24_000, 240)])
    out = np.concatenate([first, second])
    natural = np.max(np.abs(np.diff(tone)))
    assert np.max(np.abs(np.diff(out))) <= natural * 1.01
    assert np.max(np.abs(second[-2400:])) == pytest.approx(0.05, rel=0.02)


@pytest.mark.parametrize("name, value, match", [("mix", 1.5, "outside 0..1"), ("gain", 40.0, "outside -60..24")])
def test_bad_parameter_values_are_refused(name, value, match):
    rt = RealtimeStreamer(Streamer(DelayConverter()), 24_000)
    with pytest.raises(ValueError, match=match):
        (rt.set_mix if name == "mix" else rt.set_gain_db)(value)


def _engine(converter, rate=24_000, block=256, **kw) -> LiveEngine:
    rt = RealtimeStreamer(Streamer(converter, rate, rate), rate)
    prefill = prefill_blocks_for(converter.chunk_samples / converter.sample_rate, rate, block)
    return LiveEngine(rt, rate, block, prefill_blocks=prefill, **kw)


def test_file_driven_engine_outputs_input_plus_latency_with_no_xruns(noise):
    engine = _engine(DelayConverter())
    outs: list[np.ndarray] = []
    engine.start()
    run_file(engine, [noise[i : i + 1000] for i in range(0, noise.shape[0], 1000)], outs.append, realtime=False)
    engine.stop()
    out = np.concatenate(outs)
    lat = engine.latency_samples
    assert out.shape[0] == noise.shape[0] + lat
    assert np.array_equal(out[lat:], noise)
    assert engine.stats.xruns == 0 and engine.stats.input_overruns == 0


@pytest.mark.live   # measures wall time: a busy machine stretches it
def test_real_time_pacing_takes_real_time(noise):
    import time

    engine = _engine(DelayConverter())
    engine.start()
    started = time.perf_counter()
    run_file(engine, [noise[:12_000]], lambda _: None, realtime=True)  # 0.5 s plus latency
    elapsed = time.perf_counter() - started
    engine.stop()
    expected = (12_000 + engine.latency_samples) / 24_000
    assert expected * 0.9 < elapsed < expected * 1.5 + 0.2


def test_callback_plays_silence_or_dry_on_overload_and_counts_it():
    for mode, expected in (("silence", 0.0), ("dry", 0.25)):
        engine = _engine(DelayConverter(), on_overload=mode)
        engine.out_ring.skip(engine.out_ring.available)  # nothing converted yet: the worker is not running
        block = np.full(engine.block_size, 0.25, np.float32)
        out = np.frombuffer(engine.callback(block.tobytes(), engine.block_size), np.float32)
        assert engine.stats.xruns == 1
        assert np.allclose(out, expected)


def test_an_xrun_does_not_add_latency(noise):
    """Output that misses its callback is dropped when it arrives: later output keeps the declared delay."""

    def run(stall_at: int | None) -> np.ndarray:
        engine = _engine(DelayConverter())
        block = engine.block_size
        outs, backlog = [], 0
        for k in range(noise.shape[0] // block):
            out = engine.callback(noise[k * block : (k + 1) * block].tobytes(), block)
            outs.append(np.frombuffer(out, np.float32))
            backlog += 1
            if stall_at is not None and stall_at <= k < stall_at + 3:
                continue  # the worker is stalled for three blocks...
            while backlog:  # ... then catches up
                engine.work_once()
                backlog -= 1
        return np.concatenate(outs), engine

    clean, _ = run(None)
    stalled, engine = run(stall_at=20)
    assert engine.stats.xruns >= 1 and engine.stats.late_samples_dropped > 0
    tail = slice(40 * 256, None)  # well after the stall
    assert np.array_equal(stalled[tail], clean[tail])


def test_callback_never_raises_even_on_garbage():
    engine = _engine(DelayConverter())
    out = engine.callback(b"\x00\x01\x02", engine.block_size)  # not a whole float32 frame
    assert len(out) == engine.block_size * 4


def test_worker_survives_a_failing_processor_and_applies_parameters(noise, caplog):
    class Failing:
        latency_s = 0.0
        calls = 0

        def process(self, block):
            Failing.calls += 1
            if Failing.calls == 3:
                raise RuntimeError("boom")
            return block

        def reset(self):
            pass

    seen = []
    rt = RealtimeStreamer(Failing(), 24_000)
    engine = LiveEngine(rt, 24_000, 256, apply_param=lambda change: seen.append(change))
    engine.params.put(ParamChange("mix", 0.5))
    engine.start()
    run_file(engine, [noise[:256 * 10]], lambda _: None, realtime=False)
    engine.stop()
    assert engine.stats.worker_errors == 1
    assert seen == [ParamChange("mix", 0.5)]
    assert "live conversion failed" in caplog.text


@pytest.mark.slow
def test_ten_minutes_live_keeps_its_speed_and_memory(example_speech):
    """Long-run stability: 10 minutes through the live engine as fast as possible (lockstep).

    Per-block compute time over the last minute is no worse than over the first (median within
    20%), and resident memory after the run is within 20 MB of what it was after the first minute."""
    import resource
    import time

    from scipy.signal import resample_poly

    audio, rate = example_speech
    speech = resample_poly(audio, 48_000, rate).astype(np.float32)
    engine = _engine(make_converter("speech", "world-nodur"), rate=48_000, block=480)
    minutes = 10
    total = minutes * 60 * 48_000
    rss: dict[str, float] = {}

    def blocks():
        sent = 0
        while sent < total:
            yield speech
            sent += speech.shape[0]
            if "first" not in rss and sent >= 60 * 48_000:
                rss["first"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                rss["t_first"] = len(engine.stats.chunk_rtf)

    engine.stats.chunk_rtf = __import__("collections").deque(maxlen=None)
    started = time.perf_counter()
    engine.start()
    run_file(engine, blocks(), lambda _: None, realtime=False)
    engine.stop()
    rtf = np.array(engine.stats.chunk_rtf)
    per_minute = len(rtf) // minutes
    first, last = np.median(rtf[:per_minute]), np.median(rtf[-per_minute:])
    assert last <= first * 1.2, f"median block RTF went from {first:.3f} to {last:.3f}"
    end_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert end_rss - rss["first"] < 20, f"RSS grew from {rss['first']:.0f} MB to {end_rss:.0f} MB"
    assert engine.stats.xruns == 0
    print(f"10 min in {time.perf_counter() - started:.0f} s; block RTF median {first:.3f} -> {last:.3f}; "
          f"max RSS {rss['first']:.0f} -> {end_rss:.0f} MB")

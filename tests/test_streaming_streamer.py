"""The Streamer's plumbing: any block size, any rate, reset, flush, bad blocks."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import CHUNK_SIZES, assert_allclose_report_first_mismatch, stream_in_blocks

from voxflip.engine.converters.base import DelayConverter
from voxflip.streaming.chunker import Chunker
from voxflip.streaming.streamer import Streamer


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return (np.random.default_rng(7).standard_normal(24_000 + 13) * 0.1).astype(np.float32)


@pytest.mark.parametrize("block", CHUNK_SIZES)
def test_plumbing_returns_the_input_exactly_for_any_block_size(noise, block):
    streamer = Streamer(DelayConverter(lookahead_samples=37))
    out = stream_in_blocks(streamer, noise, block)
    assert_allclose_report_first_mismatch(out, noise, atol=0.0, label=f"block={block}")


@pytest.mark.parametrize("rate_in, rate_out",
                         [(44_100, 44_100), (48_000, 16_000), (8_000, 192_000), (48_000, 48_000), (96_000, 96_000)])
def test_resampled_stream_does_not_depend_on_block_size(noise, rate_in, rate_out):
    reference = stream_in_blocks(Streamer(DelayConverter(), rate_in, rate_out), noise, 10**9)
    assert reference.shape[0] == round(noise.shape[0] * rate_out / rate_in)
    for block in (1, 65, 4096):
        out = stream_in_blocks(Streamer(DelayConverter(), rate_in, rate_out), noise, block)
        assert_allclose_report_first_mismatch(out, reference, atol=0.0, label=f"block={block}")


@pytest.mark.parametrize("rate", [44_100, 48_000, 16_000, 96_000, 72_000])
def test_resampling_round_trip_keeps_a_tone_in_place(rate):
    """Through model rate and back, a tone keeps its level and lands within one sample of where it was.

    (pedalboard's resampler places samples up to a fraction of a sample early for non-integer
    ratios: 0.71 sample at 44.1 kHz, 16 microseconds.)"""
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = stream_in_blocks(Streamer(DelayConverter(), rate, rate), tone, 512)
    middle = slice(2000, rate - 2000)
    probe = np.exp(-2j * np.pi * 440 * t[middle])
    ratio = np.mean(out[middle] * probe) / np.mean(tone[middle] * probe)
    assert abs(abs(ratio) - 1.0) < 1e-3
    assert abs(np.angle(ratio) / (2 * np.pi * 440) * rate) < 1.0


@pytest.mark.parametrize("rate_in, rate_out", [(48_000, 16_000), (44_100, 44_100), (24_000, 48_000)])
def test_resampling_beside_the_converter_gives_the_same_samples(noise, rate_in, rate_out):
    """overlap_resampling (offline renders on several cores): one block behind, the same samples;
    a WORLD converter, so that the chunks' work and the resampling really overlap."""
    from voxflip.engine.registry import make_converter

    speech = np.concatenate([noise, noise[::-1]])
    reference = stream_in_blocks(Streamer(make_converter("speech", "world-nodur"), rate_in, rate_out), speech, 4096)
    for block in (1000, 30_000, 10**9):
        streamer = Streamer(make_converter("speech", "world-nodur"), rate_in, rate_out)
        streamer.overlap_resampling()
        try:
            first = streamer.process(speech[:block])
            assert first.shape == (0,)          # the first block's output comes with the next call
            out = np.concatenate([first, stream_in_blocks(streamer, speech[block:], block)])
            assert streamer._pending == []
            assert_allclose_report_first_mismatch(out, reference, atol=0.0, label=f"block={block}")
            streamer.reset()                    # a second run, on the same thread
            again = stream_in_blocks(streamer, speech, block)
            assert np.array_equal(again, reference)
        finally:
            streamer.close()
        assert streamer._aside is None
        streamer.reset()                        # closed: the same stream, without the thread
        assert np.array_equal(stream_in_blocks(streamer, speech, block), reference)


def test_reset_makes_a_second_run_bit_identical(noise):
    streamer = Streamer(DelayConverter(), 44_100, 22_050)
    first = stream_in_blocks(streamer, noise, 333)
    streamer.reset()
    second = stream_in_blocks(streamer, noise, 333)
    assert np.array_equal(first, second)


def test_second_flush_returns_nothing_and_process_after_flush_is_refused(noise):
    streamer = Streamer(DelayConverter())
    head = streamer.process(noise[:1000])
    assert head.shape[0] + streamer.flush().shape[0] == 1000
    assert streamer.flush().shape[0] == 0
    with pytest.raises(RuntimeError, match="call reset"):
        streamer.process(noise[:10])


def test_latency_adds_converter_and_resamplers():
    conv = DelayConverter(sample_rate=24_000, chunk_samples=480, lookahead_samples=120)
    assert Streamer(conv).latency_s == pytest.approx(600 / 24_000)
    # by 2 both ways: the polyphase filters, 63 samples at the higher rate down and 32 at the lower one up
    assert Streamer(conv, 48_000, 48_000).latency_s == pytest.approx(600 / 24_000 + 63 / 48_000 + 32 / 24_000)
    # by 3 (a 16 kHz model): 95 samples at 48 kHz down, 32 at 16 kHz up
    slow = DelayConverter(sample_rate=16_000, chunk_samples=320, lookahead_samples=80)
    assert Streamer(slow, 48_000, 48_000).latency_s == pytest.approx(400 / 16_000 + 95 / 48_000 + 32 / 16_000)
    # 44.1 kHz: pedalboard's resampler, 64 input samples each way
    assert Streamer(conv, 44_100, 44_100).latency_s == pytest.approx(600 / 24_000 + 64 / 44_100 + 64 / 24_000)


@pytest.mark.parametrize("ratio", [2, 3])
@pytest.mark.parametrize("up", [True, False])
def test_integer_ratios_meet_their_filter_spec(up, ratio):
    """The polyphase resampler: flat within 0.001 dB to 0.45 of the lower rate, images (up) and aliases
    (down) at least 90 dB down from 0.55 of it, and up by the ratio the input samples come back unchanged."""
    from voxflip.streaming.streamer import MonoResampler

    low = 16_000
    high = ratio * low
    resampler = MonoResampler(low, high) if up else MonoResampler(high, low)
    # the filter on the higher rate's grid: up, what one input sample became (gain R: it stands for
    # R samples now); down, the taps the output samples read of an impulse at each of R positions,
    # interleaved
    if up:
        impulse = np.zeros(low, np.float32)
        impulse[low // 2] = 1.0
        response = np.concatenate([resampler.process(impulse), resampler.flush()]).astype(np.float64)
        gain = np.abs(np.fft.rfft(response)) / ratio
    else:
        seen = []
        for shift in range(ratio - 1, -1, -1):
            impulse = np.zeros(high, np.float32)
            impulse[high // 2 + shift] = 1.0
            seen.append(np.concatenate([resampler.process(impulse), resampler.flush()]).astype(np.float64))
        gain = np.abs(np.fft.rfft(np.stack(seen, axis=1).ravel()))
    freq = np.fft.rfftfreq(2 * gain.shape[0] - 2, 1 / high)
    passband = 20 * np.log10(gain[freq <= 0.45 * low])
    stopband = 20 * np.log10(gain[freq >= 0.55 * low].max())
    assert np.abs(passband).max() < 1e-3
    assert stopband < -90.0
    if up:
        tone = np.sin(np.arange(4000) * 0.3).astype(np.float32)
        out = np.concatenate([resampler.process(tone), resampler.flush()])
        assert out.shape[0] == ratio * 4000
        np.testing.assert_array_equal(out[::ratio], tone)


@pytest.mark.parametrize(
    "block, exc, match",
    [
        (np.zeros((2, 3, 480), np.float32), ValueError, "1-D or 2-D"),
        (np.zeros(480, np.int16), TypeError, "float32"),
        ([0.0] * 480, TypeError, "numpy"),
        (np.full(480, np.nan, np.float32), ValueError, "NaN"),
        (np.array([0.0, np.inf], np.float32), ValueError, "Inf at sample 1"),
    ],
)
def test_process_rejects_bad_audio(block, exc, match):
    with pytest.raises(exc, match=match):
        Streamer(DelayConverter()).process(block)


def test_two_dimensional_blocks_are_downmixed():
    stereo = np.stack([np.ones(960, np.float32), np.zeros(960, np.float32)])
    out = stream_in_blocks(Streamer(DelayConverter()), stereo.T.copy().T, 10**9)
    assert np.allclose(out, 0.5)


def test_chunker_windows_sit_on_a_fixed_grid():
    chunker = Chunker(chunk_samples=4, context_samples=2, lookahead_samples=3)
    chunker.push(np.arange(1, 10, dtype=np.float64))  # samples 1..9 at indices 0..8
    windows = list(chunker.windows())
    assert [k for k, _ in windows] == [0]
    assert windows[0][1].tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7]
    chunker.push(np.arange(10, 12, dtype=np.float64))  # indices 9, 10
    (k, w), = list(chunker.windows())
    assert k == 1 and w.tolist() == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    chunker.pad_to_end()
    (k, w), = list(chunker.windows())
    assert k == 2 and w.tolist() == [7, 8, 9, 10, 11, 0, 0, 0, 0]
    assert chunker.chunks_pending() == 0


def test_the_polyphase_resampler_refuses_a_filter_it_cannot_run():
    from voxflip.streaming._polyphase import Polyphase

    with pytest.raises(ValueError, match=r"^the prototype needs 2N \+ 1 taps with N \+ 1 a multiple of the ratio 3, got 127$"):
        Polyphase(np.ones(127), 3, True)
    with pytest.raises(ValueError, match=r"^ratio 1 must be an integer >= 2$"):
        Polyphase(np.ones(127), 1, False)

"""The singer's output shaping: a peak at the singer's formant, a brightness shelf (engine/vocoder/shaping.py)."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest

from voxflip.engine.errors import ConfigError
from voxflip.engine.vocoder.shaping import Shaper, ShapingConfig

RATE = 24_000


def sine_gain_db(shaper: Shaper, hz: float, rate: int = RATE) -> float:
    """The gain a steady sine at ``hz`` gets, measured on the signal (its second half, past the transient)."""
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * hz * t)
    out = shaper(tone, shaper.init_state())
    half = slice(rate // 2, None)
    return 20 * np.log10(np.sqrt(np.mean(out[half] ** 2)) / np.sqrt(np.mean(tone[half] ** 2)))


def test_the_peak_gives_its_gain_at_its_centre_and_little_far_from_it():
    shaper = Shaper(ShapingConfig(formant_db=6.0, formant_hz=3000.0, formant_octaves=1.0), RATE)
    assert sine_gain_db(shaper, 3000.0) == pytest.approx(6.0, abs=0.05)
    # one octave wide: half the gain (in dB) half an octave either side
    assert sine_gain_db(shaper, 3000.0 * 2 ** 0.5) == pytest.approx(3.0, abs=0.4)
    assert sine_gain_db(shaper, 3000.0 / 2 ** 0.5) == pytest.approx(3.0, abs=0.4)
    assert abs(sine_gain_db(shaper, 300.0)) < 0.1


def test_the_shelf_leaves_the_low_band_and_reaches_its_gain_high_up():
    shaper = Shaper(ShapingConfig(brightness_db=-4.5, brightness_hz=4000.0), RATE)
    assert abs(sine_gain_db(shaper, 200.0)) < 0.05
    assert abs(sine_gain_db(shaper, 1000.0)) < 0.1
    assert sine_gain_db(shaper, 4000.0) == pytest.approx(-2.25, abs=0.5)
    assert sine_gain_db(shaper, 10000.0) == pytest.approx(-4.5, abs=0.25)
    # the response the shaper reports is the one the signal gets
    for hz in (1000.0, 4000.0, 10000.0):
        assert shaper.response_db(np.array([hz]), RATE)[0] == pytest.approx(sine_gain_db(shaper, hz), abs=0.05)


def test_zero_gains_leave_the_output_untouched_to_the_bit():
    audio = np.random.default_rng(0).standard_normal(5000)
    shaper = Shaper(ShapingConfig(), RATE)
    assert not shaper.config.active
    assert np.array_equal(shaper(audio, shaper.init_state()), audio)


def test_shaped_in_pieces_equals_shaped_whole():
    audio = np.random.default_rng(1).standard_normal(RATE)
    shaper = Shaper(ShapingConfig(formant_db=4.0, brightness_db=-3.0), RATE)
    whole = shaper(audio, shaper.init_state())
    state = shaper.init_state()
    cuts = [0, 1, 7, 480, 481, 10_000, RATE]
    pieces = [shaper(audio[a:b], state) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    np.testing.assert_allclose(np.concatenate(pieces), whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize("fields, named", [
    ({"formant_db": 20.0}, "formant_db=20.0"),
    ({"brightness_db": float("nan")}, "brightness_db=nan"),
    ({"formant_hz": 800.0}, "formant_hz=800.0"),
    ({"brightness_hz": 9000.0}, "brightness_hz=9000.0"),
    ({"formant_octaves": 0.1}, "formant_octaves=0.1"),
])
def test_out_of_range_settings_are_refused_by_name(fields, named):
    with pytest.raises(ConfigError, match=named):
        ShapingConfig(**fields)


def test_a_band_above_what_the_rate_carries_is_refused():
    with pytest.raises(ConfigError, match="5000 Hz needs a sample rate of at least 12500 Hz; this one runs at 8000"):
        Shaper(ShapingConfig(formant_db=3.0, formant_hz=5000.0), 8000)
    Shaper(ShapingConfig(formant_hz=5000.0), 8000)   # a band at 0 dB is not built, so any rate does


# -- in the singers ---------------------------------------------------------------------------------

TUNE = str(files("voxflip") / "data" / "tune.mid")


def _song(audio: np.ndarray, rate: int, method: str, block: int, **options) -> tuple[np.ndarray, int]:
    from helpers import stream_in_blocks

    from voxflip.engine.registry import make_converter
    from voxflip.streaming.streamer import Streamer

    converter = make_converter("singing", method, melody=TUNE, **options)
    # out at the converter's own rate, so the song is what the converter returned (no resampling after it)
    return stream_in_blocks(Streamer(converter, rate, converter.sample_rate), audio, block), converter.sample_rate


@pytest.mark.parametrize("method", ["world", "psola", "psola-stream"])
def test_each_singer_shapes_its_song_as_the_shaper_alone_would(example_speech, method):
    audio, rate = example_speech
    plain, song_rate = _song(audio, rate, method, 4096)
    shaped, _ = _song(audio, rate, method, 4096, singers_formant_db=6.0, brightness_db=-6.0)
    shaper = Shaper(ShapingConfig(formant_db=6.0, brightness_db=-6.0), song_rate)
    expected = shaper(plain.astype(np.float64), shaper.init_state())
    assert shaped.shape == plain.shape
    assert np.max(np.abs(shaped - plain)) > 0.01           # it did change the song ...
    np.testing.assert_allclose(shaped, expected, rtol=0, atol=2e-5)   # ... as the filter alone does (float32)


@pytest.mark.parametrize("method", ["world", "psola-stream"])
def test_a_shaped_song_is_the_same_whatever_the_block_size(example_speech, method):
    audio, rate = example_speech
    reference, _ = _song(audio, rate, method, 4096, brightness_db=-4.5, singers_formant_db=2.0)
    for block in (333, 1000):
        out, _ = _song(audio, rate, method, block, brightness_db=-4.5, singers_formant_db=2.0)
        np.testing.assert_array_equal(out, reference, err_msg=f"{block}-sample blocks")


def test_live_notes_shape_their_singing_too():
    """``voxflip live --to singing`` without a melody sings live notes: the shaping reaches that synthesiser."""
    from voxflip.engine.registry import make_converter

    converter = make_converter("singing", "world", live_notes=True, brightness_db=-3.0, singers_formant_db=2.0)
    assert converter.synth.config.shaping == ShapingConfig(formant_db=2.0, brightness_db=-3.0)
    assert converter.synth.shaper.sos.shape == (2, 6)

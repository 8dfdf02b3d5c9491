"""Level safety: every converter, both directions, at +40 dBFS, 1e30 and 1e-30 (docs/converters.md, "Level safety").

Through the Streamer, as ``render`` drives it: the output is finite, as long as a normal-level
input's (to the sample where the converter keeps time), and loud in comes out loud; a tiny input
is the silence it is. The flow model's output length does not depend on the input's sample rate.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from voxflip.engine.direction import Direction
from voxflip.engine.features.levels import OUTPUT_CEILING, limit_output, scale_exponents
from voxflip.engine.features.world import AnalysisConfig, WorldAnalyzer
from voxflip.engine.melody import load_melody
from voxflip.engine.registry import converters, default_flow_model
from voxflip.streaming.streamer import Streamer

RATE = 24_000
FLOW = {"flow-dur", "flow-nodur"}
HAS_FLOW = default_flow_model().is_file()
#: the flow model's durations follow the level: +-3 dB moves a sentence's length by about 10 %
FLOW_LENGTH_TOLERANCE = 0.25
#: WORLD's CheapTrick is not scale-invariant either (absolute safeguards): a loud frame, analysed at
#: 0.5..1 of full scale, can tip a steady-vowel or pause decision that its normal-level copy does not
LENGTH_TOLERANCE = 0.10
LEVELS = {"+40 dBFS": 100.0, "1e30": 1e30}


def _voice(sample_rate: int, seconds: float = 1.2, top_hz: float = 3400.0) -> np.ndarray:
    """Two sung syllables with digital silence around them, band-limited below ``top_hz``.

    Made at ``sample_rate`` itself (not resampled), so every rate carries the same content.
    """
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 190.0 + 30.0 * np.sin(2 * np.pi * 0.8 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    envelope = np.where((t > 0.1) & (t < seconds - 0.1), np.sin(2 * np.pi * (t - 0.1) / (2 * (seconds - 0.2)) * 2) ** 2,
                        0.0)
    y = np.zeros_like(t)
    for k in range(1, int(top_hz / 160.0) + 1):
        fk = k * f0
        formants = 1 + 2 * np.exp(-(((fk - 700) / 300) ** 2)) + np.exp(-(((fk - 1200) / 300) ** 2))
        y += np.where(fk < top_hz, np.cos(0.5 * np.pi * np.minimum(fk / top_hz, 1.0)) ** 2, 0.0) * formants / k * np.sin(k * phase)
    return (0.3 * y / np.abs(y).max() * envelope).astype(np.float32)


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    return _voice(RATE)


@pytest.fixture(scope="module")
def melody():
    from importlib.resources import files

    return load_melody(str(files("voxflip") / "data" / "tune.csv")).with_tempo(4.0)


def _specs():
    out = []
    for spec in converters():
        marks = []
        if not spec.ships_model() or spec.missing():
            marks.append(pytest.mark.skip(reason=f"no {spec.name} model is shipped in this checkout, or it needs "
                                                 "what is not installed"))
        out.append(pytest.param(spec, id=f"{spec.direction.value}-{spec.name}", marks=marks))
    return out


def _render(spec, audio: np.ndarray, melody, sample_rate: int = RATE) -> np.ndarray:
    options = {"melody": melody} if spec.direction is Direction.TO_SINGING else {}
    converter = spec.build(spec.make_options(**options))
    streamer = Streamer(converter, sample_rate, sample_rate)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)     # no overflow or invalid value on the way
        out = [streamer.process(audio[i : i + 4096]) for i in range(0, audio.shape[0], 4096)]
        out.append(streamer.flush())
    return np.concatenate(out)


_normal_cache: dict[str, np.ndarray] = {}


def _normal(spec, voice, melody) -> np.ndarray:
    if spec.name not in _normal_cache:
        _normal_cache[spec.name] = _render(spec, voice, melody)
    return _normal_cache[spec.name]


@pytest.mark.parametrize("level", list(LEVELS), ids=list(LEVELS))
@pytest.mark.parametrize("spec", _specs())
def test_loud_input_converts_to_loud_finite_output_of_the_normal_length(spec, level, voice, melody):
    normal = _normal(spec, voice, melody)
    loud = _render(spec, voice * np.float32(LEVELS[level]), melody)
    assert np.all(np.isfinite(loud)), f"{spec.name} at {level}: non-finite output"
    if spec.time_preserving:
        assert loud.shape == voice.shape == normal.shape
    else:
        tolerance = FLOW_LENGTH_TOLERANCE if spec.name in FLOW else LENGTH_TOLERANCE
        assert abs(loud.shape[0] - normal.shape[0]) <= tolerance * normal.shape[0], \
            f"{spec.name} at {level}: {loud.shape[0]} samples, {normal.shape[0]} at a normal level"
    # loud in, loud out (the writer clips and reports it): at least the input's gain less 20 dB
    rms_normal = float(np.sqrt(np.mean(normal.astype(np.float64) ** 2)))
    rms_loud = float(np.sqrt(np.mean(loud.astype(np.float64) ** 2)))
    assert rms_loud > 0.1 * LEVELS[level] * rms_normal, f"{spec.name} at {level}: {rms_loud:.3g} vs {rms_normal:.3g}"


@pytest.mark.parametrize("spec", _specs())
def test_tiny_input_converts_like_the_silence_it_is(spec, voice, melody):
    tiny = _render(spec, voice * np.float32(1e-30), melody)
    silence = _render(spec, np.zeros_like(voice), melody)
    assert np.all(np.isfinite(tiny))
    assert tiny.shape == silence.shape, f"{spec.name}: {tiny.shape[0]} samples, {silence.shape[0]} for silence"
    assert float(np.max(np.abs(tiny), initial=0.0)) < 1e-3


@pytest.mark.skipif(not HAS_FLOW, reason="no flow model is shipped in this checkout")
def test_flow_output_length_does_not_depend_on_the_input_sample_rate():
    spec = next(s for s in converters(Direction.TO_SPEECH) if s.name == "flow-dur")
    frame_s = 0.01
    seconds = {}
    for rate in (8_000, 16_000, 44_100, 48_000, 192_000):
        out = _render(spec, _voice(rate, seconds=2.0), None, sample_rate=rate)
        seconds[rate] = out.shape[0] / rate
    spread = max(seconds.values()) - min(seconds.values())
    assert spread <= frame_s + 1e-9, f"output seconds by input rate: {seconds}"


def test_flow_length_of_full_band_speech_at_every_rate_the_file_can_carry(example_speech):
    """The bundled sentence (16 kHz, content up to 8 kHz) resampled to each rate: the length of flow-dur's
    output within two 10 ms frames of the 16 kHz render. (Reading 7.2-8 kHz it moved by 21 frames; at 96
    and 192 kHz pedalboard's one-stage resampler rippled by +-0.6 dB below 8 kHz and moved it 4 frames;
    MonoResampler goes via 48 kHz. A round trip through any of the resamplers leaves the bands read
    within 0.01 dB and moves the durations by up to two frames: 4.21 s at 32 kHz with pedalboard's too.)"""
    from voxflip.streaming.streamer import MonoResampler

    spec = next(s for s in converters(Direction.TO_SPEECH) if s.name == "flow-dur")
    audio, rate = example_speech
    seconds = {}
    for target in (16_000, 22_050, 32_000, 44_100, 48_000, 96_000, 192_000):
        resample = MonoResampler(rate, target)
        x = np.concatenate([resample.process(audio), resample.flush()]) if target != rate else audio
        seconds[target] = _render(spec, x, None, sample_rate=target).shape[0] / target
    assert max(abs(v - seconds[16_000]) for v in seconds.values()) <= 0.02 + 1e-9, seconds


@pytest.mark.parametrize("rate", [96_000, 192_000])
def test_high_rate_resampling_keeps_a_flat_passband(rate):
    from voxflip.streaming.streamer import MonoResampler

    t = np.arange(rate) / rate
    for hz in (1000.0, 5000.0, 6500.0, 7200.0):
        resample = MonoResampler(rate, 16_000)
        y = np.concatenate([resample.process(np.sin(2 * np.pi * hz * t).astype(np.float32)), resample.flush()])
        gain_db = 20 * np.log10(np.sqrt(2) * np.std(y[2000:-2000]))
        assert abs(gain_db) < 0.1, f"{rate} Hz -> 16 kHz: {hz:g} Hz at {gain_db:+.2f} dB"


def test_world_analysis_of_a_loud_frame_is_the_normal_analysis_scaled(voice):
    analyzer = WorldAnalyzer(AnalysisConfig())
    x = voice.astype(np.float64) * 2.0        # peaks at 0.6: analysed as it is
    normal = analyzer.analyze_signal(x)
    loud = analyzer.analyze_signal(x * 2.0**60)
    assert np.all(np.isfinite(loud.sp)) and np.all(np.isfinite(loud.ap))
    heard = normal.level_db > -50.0           # YIN is scale-invariant above its -55 dBFS silence gate
    np.testing.assert_array_equal(loud.f0_hz[heard], normal.f0_hz[heard])
    voiced = normal.f0_hz > 0
    # every loud frame is analysed at 2**-60 .. 2**-61 of its level: its envelope is the one a
    # 0 or -6 dB copy gets, times 4**60, so within the level-dependence of CheapTrick itself
    ratio = np.median(loud.sp[voiced] / normal.sp[voiced]) / 4.0**60
    assert 0.2 < ratio < 1.5


def test_scale_exponents_leave_full_scale_alone_and_bring_louder_into_half_to_full():
    peaks = np.array([0.0, 1e-30, 0.5, 1.0, 1.5, 300.0, 1e30, 3.4e38])
    k = scale_exponents(peaks)
    assert list(k[:4]) == [0, 0, 0, 0]
    scaled = np.ldexp(peaks[4:], -k[4:])
    assert np.all((scaled >= 0.5) & (scaled < 1.0))


def test_limit_output_keeps_normal_samples_and_caps_huge_ones():
    y = np.array([0.25, -1.0, 1e35, -1e300], np.float64)
    out = limit_output(y)
    assert out.dtype == np.float32
    assert list(out[:2]) == [0.25, -1.0]
    assert out[2] == np.float32(OUTPUT_CEILING) and out[3] == -np.float32(OUTPUT_CEILING)


def test_input_near_float32_max_is_resampled_without_overflow(voice):
    """At 3.3e38 (float32's maximum is 3.4e38) the input resampler's filter overflowed to inf; the
    resampler now limits its input to +-OUTPUT_CEILING first."""
    from voxflip.engine.registry import make_converter

    x = (voice / np.abs(voice).max() * np.float32(3.3e38)).astype(np.float32)
    streamer = Streamer(make_converter("speech", "world-nodur"), RATE, RATE)   # 24 kHz in, 16 kHz model
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        y = np.concatenate([streamer.process(x), streamer.flush()])
    assert y.shape == x.shape
    assert np.isfinite(y).all() and np.abs(y).max() > 1.0

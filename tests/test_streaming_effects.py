"""Effect chains: block-size invariance, tails, pedalboard parity, presets, run-time parameters."""

from __future__ import annotations

import json

import numpy as np
import pedalboard
import pytest
from helpers import CHUNK_SIZES, assert_allclose_report_first_mismatch, stream_in_blocks

from voxflip.engine.converters.base import DelayConverter
from voxflip.engine.errors import ConfigError
from voxflip.engine.registry import make_converter
from voxflip.streaming.effect_params import builtin_plugins
from voxflip.streaming.effects import Chain
from voxflip.streaming.presets import bundled_presets, load_preset
from voxflip.streaming.streamer import Streamer

# Every plugin below is bit-exact under streaming in pedalboard 0.9.26 (measured: docs/effects.md);
# the tolerance only leaves room for float32 rounding in another pedalboard build.
ATOL = 1e-6
RATES = [24_000, 48_000]


def harmonic(rate: int, seconds: float = 0.5) -> np.ndarray:
    """A sung-like tone: 8 harmonics of a 200 Hz fundamental with 5 Hz vibrato, faded in and out."""
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * np.cumsum(200.0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 9))
    envelope = np.minimum(1.0, t / 0.05) * np.minimum(1.0, (t[-1] - t) / 0.05)
    return (0.3 * tone * envelope).astype(np.float32)


def random_blocks(chain: Chain, audio: np.ndarray, seed: int = 3) -> np.ndarray:
    """Stream ``audio`` (samples last) in irregular blocks of 1..3000 samples, then flush."""
    rng, out, i = np.random.default_rng(seed), [], 0
    while i < audio.shape[-1]:
        n = int(rng.integers(1, 3000))
        out.append(chain.process(audio[..., i : i + n]))
        i += n
    out.append(chain.flush())
    return np.concatenate(out, axis=-1)


def compressor_delay_reverb(converter) -> Chain:
    return Chain([pedalboard.Compressor(threshold_db=-20, ratio=4), converter, pedalboard.Reverb(room_size=0.6)])


# -- block-size invariance ----------------------------------------------------------------------------
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("block", CHUNK_SIZES)
def test_streamed_chain_equals_one_whole_call_for_any_block_size(rate, block):
    x = harmonic(rate)
    whole = compressor_delay_reverb(DelayConverter())(x, rate)
    chain = compressor_delay_reverb(DelayConverter())
    chain.sample_rate = rate
    streamed = stream_in_blocks(chain, x, block)
    assert_allclose_report_first_mismatch(streamed, whole, atol=ATOL, label=f"{rate} Hz, block={block}")
    assert whole.shape[0] > x.shape[0] + rate // 10, "the reverb tail is part of the whole call's output"


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("block", [7, 4096])
def test_world_converter_in_a_chain_does_not_depend_on_block_size(rate, block):
    x = harmonic(rate)
    whole = compressor_delay_reverb(make_converter("speech", "world-nodur"))(x, rate)
    chain = compressor_delay_reverb(make_converter("speech", "world-nodur"))
    chain.sample_rate = rate
    streamed = stream_in_blocks(chain, x, block)
    assert_allclose_report_first_mismatch(streamed, whole, atol=ATOL, label=f"{rate} Hz, block={block}")
    assert np.abs(streamed[: x.shape[0]]).max() > 0.05, "the converter produced sound"


INVARIANT_PLUGINS = {
    "Reverb": lambda: pedalboard.Reverb(room_size=0.7),
    "Compressor": lambda: pedalboard.Compressor(threshold_db=-25, ratio=6, attack_ms=2, release_ms=50),
    "NoiseGate": lambda: pedalboard.NoiseGate(threshold_db=-30, ratio=8),
    "Gain": lambda: pedalboard.Gain(gain_db=-3),
    "HighpassFilter": lambda: pedalboard.HighpassFilter(cutoff_frequency_hz=300),
    "LowpassFilter": lambda: pedalboard.LowpassFilter(cutoff_frequency_hz=3400),
    "Delay": lambda: pedalboard.Delay(delay_seconds=0.05, feedback=0.4, mix=0.3),
    "Distortion": lambda: pedalboard.Distortion(drive_db=12),
    "Chorus": lambda: pedalboard.Chorus(),
    "Phaser": lambda: pedalboard.Phaser(),
    "BrickwallLimiter": lambda: pedalboard.BrickwallLimiter(ceiling_db=-12),  # withholds its 5 ms lookahead
}
# Left out, not block-size invariant with reset=False (docs/effects.md): PitchShift, Resample,
# MP3Compressor, GSMFullRateCompressor -- their streamed output depends on where blocks start.


@pytest.mark.parametrize("name", INVARIANT_PLUGINS)
def test_each_plugin_streams_like_one_call_in_irregular_blocks(name):
    """Irregular blocks: pedalboard re-prepares (and clears) a plugin whenever a block is larger than
    any before it, unless the chain has prepared it for its largest block first."""
    rate = 24_000
    x = harmonic(rate, 0.4) + np.float32(0.02) * np.random.default_rng(0).standard_normal(9600).astype(np.float32)
    whole = Chain([INVARIANT_PLUGINS[name]()])(x, rate)
    streamed = random_blocks(Chain([INVARIANT_PLUGINS[name]()], sample_rate=rate), x)
    assert_allclose_report_first_mismatch(streamed, whole, atol=ATOL, label=name)


def test_stereo_chain_without_converter_streams_even_one_sample_at_a_time():
    rate = 24_000
    x = np.stack([harmonic(rate, 0.2), harmonic(rate, 0.2)[::-1].copy()])
    plugins = lambda: [pedalboard.Compressor(threshold_db=-20, ratio=4), pedalboard.Reverb(width=1.0)]  # noqa: E731
    whole = Chain(plugins())(x, rate)
    assert whole.shape[0] == 2
    for block in (1, 2, 3, 1000):
        chain = Chain(plugins(), sample_rate=rate)
        out = [chain.process(x[:, i : i + block]) for i in range(0, x.shape[1], block)]
        streamed = np.concatenate([*out, chain.flush()], axis=1)
        for c in range(2):
            assert_allclose_report_first_mismatch(streamed[c], whole[c], atol=ATOL, label=f"block={block} ch={c}")


def test_stereo_input_to_a_converter_comes_out_mono():
    rate = 24_000
    x = np.stack([harmonic(rate, 0.2)] * 2)
    out = compressor_delay_reverb(DelayConverter())(x, rate)
    assert out.ndim == 2 and out.shape[0] == 1


# -- tails --------------------------------------------------------------------------------------------
def test_reverb_tail_survives_chunk_boundaries():
    rate, chunk = 24_000, 2400
    x = np.zeros(4 * chunk, np.float32)
    x[:1200] = np.random.default_rng(1).standard_normal(1200).astype(np.float32) * 0.3  # a burst, then silence
    chain = Chain([pedalboard.Reverb(room_size=0.8)], sample_rate=rate)
    streamed = np.concatenate([chain.process(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])
    board = pedalboard.Pedalboard([pedalboard.Reverb(room_size=0.8)])
    cut = np.concatenate([board(x[i : i + chunk], rate, reset=True) for i in range(0, x.shape[0], chunk)])
    second = slice(chunk, 2 * chunk)
    assert np.abs(streamed[second]).max() > 1e-2, "the tail rings on into the next chunk"
    assert np.abs(cut[second]).max() == 0.0, "reset=True per chunk cuts it"


def test_flush_renders_the_tail_until_it_decays_and_a_second_flush_is_empty():
    rate = 24_000
    chain = Chain([pedalboard.Reverb(room_size=0.5)], sample_rate=rate)
    x = harmonic(rate, 0.2)
    head = chain.process(x)
    tail = chain.flush()
    assert head.shape == x.shape
    assert 0.1 * rate < tail.shape[0] < 5 * rate
    assert np.abs(tail[-1]) > 10 ** (-90 / 20) and np.abs(tail[-rate // 50 :]).max() < 1e-3
    assert chain.flush().shape == (0,)
    with pytest.raises(RuntimeError, match="call reset"):
        chain.process(x)


def test_an_endless_echo_stops_at_the_tail_cap():
    rate = 8_000
    chain = Chain([pedalboard.Delay(delay_seconds=0.1, feedback=1.0, mix=0.5)], sample_rate=rate)
    chain.max_tail_s = 1.5
    out = chain(harmonic(rate, 0.2), rate)
    assert int(1.6 * rate) <= out.shape[0] <= int(0.2 * rate) + int(1.5 * rate)


# -- parity with pedalboard ---------------------------------------------------------------------------
def test_chain_without_converter_behaves_like_pedalboard():
    rate = 48_000
    x = np.stack([harmonic(rate), harmonic(rate) * np.float32(0.5)])

    def plugins():
        return [pedalboard.HighpassFilter(120), pedalboard.Compressor(-18, 3), pedalboard.Delay(0.08, 0.3, 0.25),
                pedalboard.Reverb(room_size=0.4)]

    chain = Chain(plugins())
    out = chain(x, rate)
    assert chain.converter is None and len(chain.pre) == 0 and len(chain.post) == 4
    padded = np.concatenate([x, np.zeros((2, out.shape[1] - x.shape[1]), np.float32)], axis=1)
    reference = pedalboard.Pedalboard(plugins())(padded, rate)
    for c in range(2):
        assert_allclose_report_first_mismatch(out[c], reference[c], atol=ATOL, label=f"channel {c}")


# -- sample rate, latency, construction ---------------------------------------------------------------
def test_changing_rate_needs_a_reset_and_rebuilds_the_streamer():
    chain = compressor_delay_reverb(DelayConverter())
    x24, x48 = harmonic(24_000, 0.1), harmonic(48_000, 0.1)
    chain(x24[:1000], 24_000, reset=False)
    with pytest.raises(ValueError, match="48000 Hz differs from this stream's 24000 Hz"):
        chain(x48[:1000], 48_000, reset=False)
    latency_24 = chain.latency_s
    whole = chain(x48, 48_000)
    assert chain.sample_rate == 48_000 and chain.latency_s > latency_24  # the 48 kHz Streamer resamples
    assert np.array_equal(whole, compressor_delay_reverb(DelayConverter())(x48, 48_000))


def test_latency_adds_the_streamer_and_what_plugins_withhold():
    conv = DelayConverter(chunk_samples=480, lookahead_samples=37)
    assert Chain([conv]).latency_s == pytest.approx(517 / 24_000)
    chain = Chain([pedalboard.Gain(), conv, pedalboard.BrickwallLimiter(lookahead_ms=5.0)], sample_rate=24_000)
    assert chain.latency_s == pytest.approx(Streamer(conv).latency_s + 120 / 24_000)
    assert Chain([pedalboard.Reverb()], sample_rate=24_000).latency_s == 0.0


def test_reset_makes_a_second_run_bit_identical():
    chain = compressor_delay_reverb(DelayConverter())
    chain.sample_rate = 48_000
    x = harmonic(48_000, 0.3)
    first = stream_in_blocks(chain, x, 333)
    chain.reset()
    assert np.array_equal(first, stream_in_blocks(chain, x, 333))


@pytest.mark.parametrize(
    "items, exc, match",
    [
        ([DelayConverter(), DelayConverter()], ValueError, "at most one converter"),
        (["Reverb"], TypeError, "pedalboard plugin or a voxflip Converter"),
        ([Streamer(DelayConverter(), 48_000, 24_000)], ValueError, "at its input rate"),
    ],
)
def test_chain_rejects_bad_items(items, exc, match):
    with pytest.raises(exc, match=match):
        Chain(items)


@pytest.mark.parametrize(
    "audio, rate, exc, match",
    [
        (np.zeros((2, 3, 480), np.float32), 24_000, ValueError, "1-D or 2-D"),
        (np.zeros(480, np.int16), 24_000, TypeError, "float32"),
        (np.full(480, np.nan, np.float32), 24_000, ValueError, "NaN"),
        (np.zeros((480, 2), np.float32), 24_000, ValueError, r"pass audio\.T"),
        (np.zeros(480, np.float32), 22_050.5, ValueError, "whole number of Hz"),
        (np.zeros(480, np.float32), "24k", TypeError, "number of Hz"),
    ],
)
def test_chain_rejects_bad_audio_and_rates(audio, rate, exc, match):
    with pytest.raises(exc, match=match):
        compressor_delay_reverb(DelayConverter())(audio, rate)


def test_process_needs_a_sample_rate_and_a_constant_channel_count():
    chain = Chain([pedalboard.Reverb()])
    with pytest.raises(ValueError, match="no sample rate yet"):
        chain.process(np.zeros(480, np.float32))
    chain(np.zeros((2, 480), np.float32), 24_000, reset=False)
    with pytest.raises(ValueError, match="3 channels but this stream started with 2"):
        chain.process(np.zeros((3, 480), np.float32))


def test_the_same_plugin_instance_cannot_appear_twice():
    reverb = pedalboard.Reverb()
    with pytest.raises(ValueError, match="appears twice"):
        Chain([reverb, DelayConverter(), reverb])


def test_builtin_plugins_are_effects_only():
    names = builtin_plugins()
    assert {"Reverb", "Compressor", "NoiseGate", "Convolution", "PitchShift"} <= set(names)
    assert not {"Pedalboard", "Chain", "Mix", "Plugin", "IIRFilter", "VST3Plugin", "ExternalPlugin"} & set(names)


# -- presets ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", sorted(bundled_presets()))
def test_bundled_preset_loads_and_runs(preset):
    path = bundled_presets()[preset]
    chain = load_preset(path, converter=DelayConverter())
    data = json.loads(path.read_text())
    assert chain.name == data["name"]
    assert (len(chain.pre), len(chain.post)) == (len(data.get("pre", [])), len(data.get("post", [])))
    out = chain(harmonic(24_000, 0.3), 24_000)
    assert np.isfinite(out).all() and np.abs(out).max() > 0.01
    assert load_preset(path).converter is None


def test_bundled_presets_are_there():
    assert {"vocal-clean", "radio"} <= set(bundled_presets())


def _item(**params):
    return {"post": [{"plugin": "Reverb", "params": params}]}


PRESET_ERRORS = [
    ("{", r"not valid JSON: .* line 1"),
    ([], r"a preset is a JSON object"),
    ({"nme": "x"}, r"unknown key 'nme'; allowed keys: name, description, pre, post"),
    ({"pre": {"plugin": "Reverb"}}, r"pre must be a list"),
    ({"post": [{"plugin": "Reverbb"}]}, r"post\[0\]: unknown plugin 'Reverbb'; built-in effects: Bitcrush, .*, Reverb"),
    ({"post": [{"plugin": "Pedalboard"}]}, r"post\[0\]: unknown plugin 'Pedalboard'"),
    ({"pre": ["Reverb"]}, r"pre\[0\]: must be an object like"),
    ({"post": [{"plugin": "Reverb", "parms": {}}]}, r"unknown key 'parms'; allowed keys: plugin, plugin_path"),
    ({"post": [{"params": {}}]}, r"needs exactly one of \"plugin\".*or \"plugin_path\""),
    (_item(size=0.3), r"post\[0\]: Reverb has no parameter 'size'; it has: room_size, damping, wet_level"),
    (_item(room_size=1.5), r"post\[0\]: room_size=1\.5 is outside the allowed range \[0, 1\]"),
    (_item(room_size="big"), r"room_size='big' must be a number in \[0, 1\]"),
    (_item(room_size=True), r"room_size=True must be a number in \[0, 1\]"),
    ({"pre": [{"plugin": "Reverb"}, {"plugin": "HighpassFilter", "params": {"cutoff_frequency_hz": -5}}]},
     r"pre\[1\]: cutoff_frequency_hz=-5 is outside the allowed range \(0, 20000\] Hz"),
    ({"post": [{"plugin": "Compressor", "params": {"ratio": 0.5}}]}, r"ratio=0\.5 is outside the allowed range \[1, 100\]"),
    ({"post": [{"plugin": "LadderFilter", "params": {"mode": "LPF48"}}]}, r"mode='LPF48' must be one of LPF12, HPF12"),
    ({"post": [{"plugin": "BrickwallLimiter", "params": {"true_peak": 2}}]}, r"true_peak=2 must be true or false"),
    ({"post": [{"plugin": "Convolution"}]}, r"Convolution needs params\.impulse_response_filename"),
    ({"post": [{"plugin": "Convolution", "params": {"impulse_response_filename": "no-such-ir.wav"}}]},
     r"impulse_response_filename='no-such-ir\.wav' does not exist"),
    ({"post": [{"plugin_path": "Missing.vst3"}]}, r"post\[0\]: plugin_path 'Missing\.vst3' does not exist"),
    ({"post": [{"plugin_path": "Broken.vst3"}]}, r"post\[0\]: pedalboard cannot load plugin_path 'Broken\.vst3'"),
    ({"pre": [{"plugin": "Gain", "name": "level"}], "post": [{"plugin": "Reverb", "name": "level"}]},
     r"post\[0\]: name 'level' is already used by pre\[0\]; names must be unique"),
    ({"post": [{"plugin": "Reverb", "name": "my verb"}]}, r"post\[0\]: name 'my verb' must be letters, digits"),
    ({"name": 3}, r"name must be a string"),
]


@pytest.mark.parametrize("content, match", PRESET_ERRORS)
def test_bad_preset_is_refused_with_one_clear_line(tmp_path, content, match):
    (tmp_path / "Broken.vst3").write_bytes(b"not a plugin")
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ConfigError, match=match) as info:
        load_preset(path, converter=DelayConverter(), allow_plugins=True)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_missing_preset_names_the_bundled_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.json' does not exist; bundled presets: .*vocal-clean"):
        load_preset(tmp_path / "nope.json")


def test_relative_paths_in_a_preset_are_read_from_its_folder(tmp_path):
    import soundfile as sf

    impulse = np.exp(-np.arange(2400) / 300.0).astype(np.float32) * 0.1
    sf.write(tmp_path / "room.wav", impulse, 24_000)
    path = tmp_path / "conv.json"
    path.write_text(json.dumps({"post": [{"plugin": "Convolution", "params": {"impulse_response_filename": "room.wav"}}]}))
    chain = load_preset(path)
    assert chain.effects["convolution"].impulse_response_filename == str(tmp_path / "room.wav")


# -- run-time parameters ------------------------------------------------------------------------------
@pytest.fixture
def clean_chain() -> Chain:
    return load_preset(bundled_presets()["vocal-clean"], converter=DelayConverter())


def test_set_parameter_changes_the_plugin(clean_chain):
    clean_chain.set_parameter("verb", "room_size", 0.7)
    clean_chain.set_parameter("comp", "threshold_db", -30)
    assert clean_chain.effects["verb"].room_size == pytest.approx(0.7)
    assert clean_chain.effects["comp"].threshold_db == pytest.approx(-30)


def test_unnamed_plugins_are_called_by_their_lowercase_class_name():
    chain = Chain([pedalboard.Reverb(), pedalboard.Reverb(), pedalboard.LadderFilter()], names=[None, "hall", None])
    assert list(chain.effects) == ["reverb", "hall", "ladderfilter"]
    chain.set_parameter("ladderfilter", "mode", 3.0)  # OSC sends numbers: an enum takes its value too
    assert chain.effects["ladderfilter"].mode == pedalboard.LadderFilter.Mode.LPF24
    twice = Chain([pedalboard.Gain(), pedalboard.Gain()])
    assert list(twice.effects) == ["gain", "gain_2"]


@pytest.mark.parametrize(
    "plugin, param, value, match",
    [
        ("reverb", "room_size", 0.5, r"unknown effect 'reverb'; this chain has: lowcut, gate, comp, verb"),
        ("verb", "size", 0.5, r"effect 'verb' \(Reverb\) has no parameter 'size'; it has: room_size, damping"),
        ("verb", "room_size", 1.5, r"verb\.room_size=1\.5 is outside the allowed range \[0, 1\]"),
        ("comp", "attack_ms", -1.0, r"comp\.attack_ms=-1\.0 is outside the allowed range \[0, 1000\] ms"),
        ("gate", "ratio", float("nan"), r"gate\.ratio=nan is outside the allowed range \[1, 100\]"),
        ("verb", "wet_level", "loud", r"verb\.wet_level='loud' must be a number in \[0, 1\]"),
    ],
)
def test_set_parameter_rejects_bad_names_and_values(clean_chain, plugin, param, value, match):
    before = clean_chain.effects["verb"].room_size
    with pytest.raises(ValueError, match=match):
        clean_chain.set_parameter(plugin, param, value)
    assert clean_chain.effects["verb"].room_size == before


def test_a_filter_cutoff_must_stay_below_nyquist(clean_chain):
    clean_chain(harmonic(16_000, 0.1), 16_000)
    with pytest.raises(ValueError, match=r"lowcut\.cutoff_frequency_hz=9000 Hz must be below the Nyquist .*8000 Hz"):
        clean_chain.set_parameter("lowcut", "cutoff_frequency_hz", 9000)
    radio = load_preset(bundled_presets()["radio"])
    with pytest.raises(ValueError, match=r"highcut\.cutoff_frequency_hz=3400 Hz must be below the Nyquist"):
        radio(np.zeros(800, np.float32), 6_000)


def test_a_fixed_parameter_cannot_be_set_while_running(tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "ir.wav", np.ones(16, np.float32) * 0.1, 24_000)
    chain = Chain([pedalboard.Convolution(str(tmp_path / "ir.wav"))])
    with pytest.raises(ValueError, match=r"impulse_response_filename is fixed when the plugin is built; settable: mix"):
        chain.set_parameter("convolution", "impulse_response_filename", "other.wav")

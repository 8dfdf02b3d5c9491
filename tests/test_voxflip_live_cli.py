"""`voxflip live` from a file, `voxflip devices`, `voxflip render --fx`, `voxflip bench` options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxflip.cli import main


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def speech_48k(tmp_path: Path, example_speech) -> Path:
    from scipy.signal import resample_poly

    audio, rate = example_speech
    path = tmp_path / "speech48.wav"
    sf.write(path, resample_poly(audio[: rate * 2], 3, 1).astype(np.float32), 48_000)
    return path


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_live_from_a_file_writes_input_plus_latency_and_a_summary(tmp_path: Path, speech_48k: Path, capsys):
    pytest.importorskip("voxflip.streaming._ringbuffer")
    out = tmp_path / "live.wav"
    stats = tmp_path / "stats.json"
    code, stdout, stderr = run(["live", "--to", "speech", "--method", "world-nodur", "--input-file", str(speech_48k), "--output-file", str(out),
                                "--fast", "-q", "--stats-json", str(stats)], capsys)
    assert code == 0, stderr
    facts = json.loads(stats.read_text())
    assert sf.info(out).frames == sf.info(speech_48k).frames + facts["declared_latency_samples"]
    assert facts["xruns"] == 0 and facts["worker_errors"] == 0
    assert "declared latency" in stdout and "xruns 0" in stdout


def test_live_with_a_voice_floor_declares_and_records_the_low_latency(tmp_path: Path, speech_48k: Path, capsys):
    out, stats = tmp_path / "live.wav", tmp_path / "stats.json"
    code, stdout, stderr = run(["live", "--to", "speech", "--method", "world-nodur", "--voice-floor", "100", "--chunk-ms",
                                "5", "--input-file", str(speech_48k), "--output-file", str(out), "--fast", "-q",
                                "--stats-json", str(stats)], capsys)
    assert code == 0, stderr
    facts = json.loads(stats.read_text())
    assert facts["voice_floor_hz"] == 100.0 and facts["chunk_ms"] == 5.0
    assert facts["processor_latency_samples"] == 1199            # 24.98 ms at 48 kHz: under 25 ms
    assert sf.info(out).frames == sf.info(speech_48k).frames + facts["declared_latency_samples"]
    assert facts["xruns"] == 0 and facts["worker_errors"] == 0


def test_live_mix_zero_from_a_file_is_the_input_delayed(tmp_path: Path, speech_48k: Path, capsys):
    out, stats = tmp_path / "live.wav", tmp_path / "stats.json"
    code, _, stderr = run(["live", "--to", "speech", "--method", "world-nodur", "--mix", "0", "--input-file", str(speech_48k), "--output-file",
                           str(out), "--fast", "-q", "--stats-json", str(stats)], capsys)
    assert code == 0, stderr
    lat = json.loads(stats.read_text())["declared_latency_samples"]
    x, _ = sf.read(speech_48k, dtype="float32")
    y, _ = sf.read(out, dtype="float32")
    assert np.max(np.abs(y[lat:] - x)) < 1e-3  # 16-bit files


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--input-file", "x.wav"], "go together"),
        (["--fast"], "only applies to --input-file"),
        (["--block-size", "8"], "outside 16..16384"),
        (["--mix", "2"], "outside 0..1"),
        (["--fx", "no-such-preset"], "is not a bundled preset"),
        (["--model", "m.onnx"], "--model='m.onnx' does not apply to world-nodur"),
    ],
)
def test_live_bad_options(capsys, extra, expected):
    code, _, stderr = run(["live", "--to", "speech", "--method", "world-nodur", *extra], capsys)
    assert code == 2 and expected in stderr, stderr


def test_live_refuses_a_file_at_another_rate(tmp_path: Path, speech_48k: Path, capsys):
    code, _, stderr = run(["live", "--to", "speech", "--method", "world-nodur", "--sample-rate", "44100", "--input-file", str(speech_48k),
                           "--output-file", str(tmp_path / "o.wav")], capsys)
    assert code == 2 and "--sample-rate 48000" in stderr


def test_devices_lists_something_or_says_why(capsys):
    pytest.importorskip("pyaudio", reason="pyaudio is in the live extra")
    code, out, _ = run(["devices"], capsys)
    assert code == 0
    assert "host API" in out or "no audio devices found" in out


def test_render_with_an_effect_preset_adds_its_tail(tmp_path: Path, example_speech_path: Path, capsys):
    plain, wet = tmp_path / "plain.wav", tmp_path / "wet.wav"
    assert run(["render", str(example_speech_path), "-o", str(plain), "--to", "speech", "--method", "world-nodur", "-q"], capsys)[0] == 0
    code, _, stderr = run(["render", str(example_speech_path), "-o", str(wet), "--to", "speech", "--method", "world-nodur", "--fx", "hall",
                           "-q"], capsys)
    assert code == 0, stderr
    assert sf.info(wet).frames > sf.info(plain).frames  # the reverb tail


@pytest.mark.parametrize("extra, expected", [(["--converters", "nope"], "'nope' is not a converter"),
                                            (["--block-ms", "0"], "1..500 ms"),
                                            (["--chunk-ms", "0"], "--chunk-ms=0.0 ms must be a multiple of the"),
                                            (["--converters", "world", "--model", "m.onnx"], "none of world does"),
                                            (["--converters", "flow-dur", "--model", "missing.onnx"], "missing"),
                                            (["--converters", "flow-dur", "--voice-floor", "100"], "none of flow-dur is"),
                                            (["--converters", "world", "--voice-floor", "20"],
                                             "--voice-floor=20.0 must be within 71..400 Hz"),
                                            (["--offline", "--voice-floor", "100"], "not --offline"),
                                            (["--cores", "2"], "--cores goes with --offline"),
                                            (["--offline", "--cores", "4096"], "more than the")])
def test_bench_bad_options(capsys, extra, expected):
    code, _, stderr = run(["bench", *extra], capsys)
    assert code == 2 and expected in stderr


def test_bench_reports_the_latency_of_the_voice_floor_it_was_given(capsys):
    code, stdout, stderr = run(["bench", "--converters", "world-nodur", "--chunk-ms", "5", "--voice-floor", "100",
                                "--block-ms", "10", "--seconds", "1", "--json"], capsys)
    assert code == 0, stderr
    (row,) = json.loads(stdout)
    assert row["voice_floor_hz"] == 100.0 and row["chunk_ms"] == 5.0
    assert row["algorithmic_latency_ms"] == pytest.approx(24.98, abs=0.02)

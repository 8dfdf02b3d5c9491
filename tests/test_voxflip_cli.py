"""The `voxflip render` command: real files in, real files out, one clear line for every bad input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxflip.cli import main

TUNE_CSV = "start_s,end_s,midi_note\n0.1,0.5,60\n0.5,0.9,62\n0.9,1.3,64\n1.3,2.0,65\n"
TUNE = str(Path(__file__).resolve().parent.parent / "voxflip" / "data" / "tune.mid")


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(folder: Path) -> list[str]:
    """Anything a failed render may have left behind (outputs or hidden temporary files)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.startswith("out"))


@pytest.fixture
def speech_wav(tmp_path: Path, example_speech) -> Path:
    audio, rate = example_speech
    path = tmp_path / "speech.wav"
    sf.write(path, audio[: rate * 2], rate)
    return path


@pytest.fixture
def tune(tmp_path: Path) -> Path:
    path = tmp_path / "tune.csv"
    path.write_text(TUNE_CSV)
    return path


def _write_float_wav(path: Path, audio: np.ndarray, rate: int = 24_000) -> Path:
    sf.write(path, audio, rate, subtype="FLOAT")
    return path


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (input path, part of the expected message)."""
    cases: dict[str, tuple[Path, str]] = {}
    cases["missing"] = (tmp / "missing.wav", "does not exist")
    (tmp / "adir").mkdir()
    cases["directory"] = (tmp / "adir", "is a directory")
    (tmp / "garbage.wav").write_bytes(b"RIFF\x00\x00garbage" * 20)
    cases["corrupt"] = (tmp / "garbage.wav", "not a recognised audio file")
    (tmp / "notes.flac").write_text("these are not audio samples\n")
    cases["text_as_flac"] = (tmp / "notes.flac", "not a recognised audio file")
    sf.write(tmp / "full.wav", np.zeros(24_000, np.float32) + 0.1, 24_000)
    data = (tmp / "full.wav").read_bytes()
    (tmp / "truncated.wav").write_bytes(data[: len(data) // 2])
    cases["truncated_wav"] = (tmp / "truncated.wav", "is truncated")
    sf.write(tmp / "full.flac", np.random.default_rng(0).standard_normal(48_000).astype(np.float32) * 0.1, 24_000)
    data = (tmp / "full.flac").read_bytes()
    (tmp / "truncated.flac").write_bytes(data[: len(data) // 2])
    cases["truncated_flac"] = (tmp / "truncated.flac", "truncated or corrupt")
    sf.write(tmp / "empty.wav", np.zeros(0, np.float32), 24_000)
    cases["zero_length"] = (tmp / "empty.wav", "contains no audio (0 samples)")
    sf.write(tmp / "one.wav", np.full(1, 0.5, np.float32), 44_100)
    cases["one_sample"] = (tmp / "one.wav", "needs at least 5 ms")
    sf.write(tmp / "low.wav", np.zeros(4000, np.float32), 4_000)
    cases["rate_too_low"] = (tmp / "low.wav", "sample rate 4000 Hz")
    nan = np.zeros(24_000, np.float32)
    nan[1234] = np.nan
    cases["nan"] = (_write_float_wav(tmp / "nan.wav", nan), "NaN")
    inf = np.zeros(24_000, np.float32)
    inf[99] = np.inf
    cases["inf"] = (_write_float_wav(tmp / "inf.wav", inf), "Inf")
    return cases


@pytest.mark.parametrize(
    "case",
    ["missing", "directory", "corrupt", "text_as_flac", "truncated_wav", "truncated_flac", "zero_length", "one_sample",
     "rate_too_low", "nan", "inf"],
)
@pytest.mark.parametrize("to", ["speech", "singing"])
def test_bad_input_gives_one_line_exit_2_and_no_output(tmp_path: Path, tune: Path, capsys, case: str, to: str):
    path, expected = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out.wav"
    argv = ["render", str(path), "-o", str(out), "--to", to]
    if to == "singing":
        argv += ["--melody", str(tune)]
    code, stdout, stderr = run(argv, capsys)
    assert code == 2, stderr
    assert expected in stderr
    assert stderr.startswith("voxflip: error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "melody_text, suffix, expected",
    [
        ("start_s,end_s,midi_note\n", ".csv", "no notes"),
        ("start_s,end_s,midi_note\n0.5,0.2,60\n", ".csv", "is not after start_s"),
        ("start_s,end_s,pitch\n0,1,60\n", ".csv", "pitch"),
        ("{not json", ".json", "JSON"),
        ("MThd garbage", ".mid", "MIDI"),
        ("<score-partwise><part-list/></score", ".musicxml", "XML"),
        ("0,1,60\n", ".txt", "extension"),
    ],
)
def test_bad_melody_gives_one_line_exit_2(tmp_path: Path, speech_wav: Path, capsys, melody_text, suffix, expected):
    melody = tmp_path / f"tune{suffix}"
    melody.write_text(melody_text)
    out = tmp_path / "out.wav"
    code, _, stderr = run(["render", str(speech_wav), "-o", str(out), "--to", "singing", "--melody", str(melody)], capsys)
    assert code == 2
    assert re.search(expected, stderr, re.IGNORECASE), stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "output, expected",
    [
        ("no/such/dir/out.wav", "does not exist"),
        ("adir.wav", "is a directory"),
        ("out.xyz", "extension"),
    ],
)
def test_unwritable_output_gives_one_line_exit_2(tmp_path: Path, speech_wav: Path, capsys, output, expected):
    (tmp_path / "adir.wav").mkdir()
    code, _, stderr = run(["render", str(speech_wav), "-o", str(tmp_path / output), "--to", "speech", "--method", "world-nodur"], capsys)
    assert code == 2
    assert expected in stderr and stderr.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--to", "singing"], "--melody is needed to sing"),
        (["--to", "singing", "--melody", TUNE, "--melody-pitch", "sung"],
         "--melody-pitch sung follows the pitch of a sung recording"),
        (["--to", "singing", "--melody", TUNE, "--melody-pitch", "exact"], "--melody-pitch='exact' is not one of notes, sung"),
        (["--to", "speech", "--method", "psola-tsm", "--melody-pitch", "sung"], "--melody-pitch='sung' does not apply to psola-tsm"),
        (["--to", "singing", "--method", "world", "--melody", TUNE, "--melody-octave", "keep"],
         "--melody-octave='keep' applies to psola only"),
        (["--to", "speech", "--method", "world"], "does not convert to speech"),
        (["--to", "speech", "--method", "world-nodur", "--duration", "0.5"], "--duration=0.5 does not apply to world-nodur; it takes: --chunk-ms, --transpose"),
        (["--to", "speech", "--method", "world-dur", "--duration", "1.5"], "outside 0..1"),
        (["--to", "speech", "--method", "world-nodur", "--tempo", "2"], "--tempo=2.0 does not apply to world-nodur"),
        (["--to", "speech", "--method", "world-nodur", "--chunk-ms", "7"], "multiple of the 5 ms hop"),
        (["--to", "speech", "--method", "flow", "--chunk-ms", "15"], "--chunk-ms=15.0 ms must be a multiple of the 10 ms hop, 10..1000 ms"),
        (["--to", "speech", "--method", "world-nodur", "--gain", "40"], "outside -60..24"),
        (["--to", "speech", "--method", "world-nodur", "--sample-rate", "400000"], "outside 8000..192000"),
        (["--to", "speech", "--method", "world-nodur", "--voice-floor", "40"],
         "--voice-floor=40.0 must be within 71..400 Hz (the lowest F0 of the voice)"),
        (["--to", "speech", "--method", "flow", "--voice-floor", "100"], "--voice-floor=100.0 does not apply to flow"),
        (["--to", "singing", "--melody", TUNE, "--brightness-db", "20"], "--brightness-db=20.0 must be a number of dB within -12..12"),
        (["--to", "speech", "--singers-formant-db", "3"], "--singers-formant-db=3.0 does not apply to psola-tsm"),
    ],
)
def test_bad_options_give_one_line_exit_2(tmp_path: Path, speech_wav: Path, capsys, extra, expected):
    out = tmp_path / "out.wav"
    code, _, stderr = run(["render", str(speech_wav), "-o", str(out), *extra], capsys)
    assert code == 2
    assert expected in stderr and stderr.count("\n") == 1, stderr
    assert not out.exists()


def test_output_over_input_is_refused(speech_wav: Path, capsys):
    before = speech_wav.read_bytes()
    code, _, stderr = run(["render", str(speech_wav), "-o", str(speech_wav), "--to", "speech", "--method", "world-nodur"], capsys)
    assert code == 2 and "is the input file" in stderr
    assert speech_wav.read_bytes() == before


def test_silent_input_warns_and_still_writes(tmp_path: Path, capsys):
    src = tmp_path / "silence.wav"
    sf.write(src, np.zeros(24_000, np.float32), 24_000)
    out = tmp_path / "out.wav"
    code, stdout, stderr = run(["render", str(src), "-o", str(out), "--to", "speech", "--method", "world-nodur"], capsys)
    assert code == 0
    assert "is silent" in stderr
    audio, rate = sf.read(out)
    assert rate == 24_000 and audio.shape == (24_000,)
    assert np.max(np.abs(audio)) < 1e-3


def test_melody_shorter_than_speech_says_by_how_much_and_what_was_done(
    tmp_path: Path, example_speech_path: Path, capsys
):
    melody = tmp_path / "short.csv"
    melody.write_text("start_s,end_s,midi_note\n0.0,0.4,60\n0.4,0.8,64\n0.8,1.2,67\n")
    out = tmp_path / "out.wav"
    code, _, stderr = run(["render", str(example_speech_path), "-o", str(out), "--to", "singing", "--melody", str(melody),
                           "--method", "world"], capsys)
    assert code == 0
    match = re.search(r"shorter than the speech: 3 notes \(1.20 s\) for (\d+) syllables, (\d+) syllable\(s\) over; "
                      r"the melody was repeated (\d+) more time\(s\)", stderr)
    assert match, stderr
    syllables, over, repeats = (int(g) for g in match.groups())
    assert over == syllables - 3 and repeats == -(-syllables // 3) - 1
    assert out.exists()


def test_psola_repeats_a_melody_far_too_short_and_shares_notes_within_it(
    tmp_path: Path, example_speech_path: Path, capsys
):
    melody = tmp_path / "short.csv"
    melody.write_text("start_s,end_s,midi_note\n0.0,0.4,60\n0.4,0.8,64\n0.8,1.2,67\n")
    out = tmp_path / "out.wav"
    code, _, stderr = run(["render", str(example_speech_path), "-o", str(out), "--to", "singing", "--melody", str(melody),
                           "--method", "psola"], capsys)
    assert code == 0
    match = re.search(r"shorter than the speech: 3 notes \(1.20 s\) for (\d+) syllables; the melody was repeated "
                      r"(\d+) more time\(s\)", stderr)
    assert match, stderr
    syllables, repeats = (int(g) for g in match.groups())
    assert repeats == -(-syllables // 6) - 1      # at most two syllables per note on average
    audio, rate = sf.read(out)
    assert abs(audio.shape[0] / rate - 1.2 * (repeats + 1)) < 0.01


def test_multichannel_input_is_downmixed_and_said_so(tmp_path: Path, example_speech, capsys):
    audio, rate = example_speech
    stereo = np.stack([audio[:rate], 0.5 * audio[:rate], np.zeros(rate, np.float32)], axis=1)
    src = tmp_path / "three.flac"
    sf.write(src, stereo, rate)
    out = tmp_path / "out.wav"
    code, stdout, stderr = run(["render", str(src), "-o", str(out), "--to", "speech", "--method", "world-nodur"], capsys)
    assert code == 0
    assert "has 3 channels; they were mixed down to mono" in stderr
    result, out_rate = sf.read(out)
    assert out_rate == rate and result.ndim == 1 and result.shape[0] == rate


@pytest.mark.parametrize("suffix, rate", [(".wav", 8_000), (".flac", 44_100), (".ogg", 48_000), (".aiff", 96_000),
                                          (".mp3", 22_050), (".wav", 192_000)])
def test_any_common_format_and_rate_renders_at_the_input_rate(tmp_path: Path, example_speech, capsys, suffix, rate):
    from scipy.signal import resample_poly

    audio, src_rate = example_speech
    clip = resample_poly(audio[: src_rate], rate, src_rate).astype(np.float32)
    src = tmp_path / f"in{suffix}"
    sf.write(src, clip, rate)
    out = tmp_path / "out.flac"
    code, stdout, stderr = run(["render", str(src), "-o", str(out), "--to", "speech", "--method", "world-nodur", "-q"], capsys)
    assert code == 0, stderr
    info = sf.info(out)
    frames_in = sf.info(src).frames
    assert info.samplerate == rate and info.frames == frames_in
    assert re.search(r"world-nodur: in\S* \(\d+\.\d\d s\) -> .* in \d+\.\d\d s, \d+\.\dx real time, latency \d+\.\d ms", stdout)


def test_sample_rate_option_sets_the_output_rate(tmp_path: Path, speech_wav: Path, capsys):
    out = tmp_path / "out.wav"
    code, _, stderr = run(["render", str(speech_wav), "-o", str(out), "--to", "speech", "--method", "world-nodur", "--sample-rate", "44100"], capsys)
    assert code == 0, stderr
    info = sf.info(out)
    assert info.samplerate == 44_100 and info.frames == round(sf.info(speech_wav).frames * 44_100 / 16_000)


@pytest.mark.parametrize("to", ["speech", "singing"])
def test_block_size_does_not_change_the_output_file(tmp_path: Path, speech_wav: Path, tune: Path, capsys, to: str):
    outputs = []
    for block in (7, 480, 65_536):
        out = tmp_path / f"out_{block}.wav"
        argv = ["render", str(speech_wav), "-o", str(out), "--to", to, "--block-size", str(block), "-q"]
        if to == "singing":
            argv += ["--melody", str(tune)]
        code, _, stderr = run(argv, capsys)
        assert code == 0, stderr
        outputs.append(sf.read(out, dtype="int16")[0])
    assert all(np.array_equal(outputs[0], o) for o in outputs[1:])


def test_debug_shows_the_traceback(tmp_path: Path, capsys):
    code, _, stderr = run(["--debug", "render", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "o.wav"), "--to", "speech", "--method", "world-nodur"], capsys)
    assert code == 2 and "Traceback" in stderr and "does not exist" in stderr


def test_demo_renders_the_bundled_example_both_ways(tmp_path: Path, capsys):
    """What the README's first command runs after installing."""
    code, stdout, stderr = run(["demo", "--out", str(tmp_path)], capsys)
    assert code == 0, stderr
    sung, sung_rate = sf.read(tmp_path / "arctic_a0007_sung.wav")
    spoken, _ = sf.read(tmp_path / "arctic_a0007_sung_spoken.wav")
    assert sung_rate == 16_000
    assert abs(sung.shape[0] / sung_rate - 7.63) < 0.01  # the tune's span
    # The default singing -> speech converter (psola-tsm) gives the held notes back a speaking pace:
    # shorter, but not so short that syllables went missing (the sentence reads in about 3 s).
    assert 0.4 * sung.shape[0] < spoken.shape[0] < 0.85 * sung.shape[0]
    assert np.sqrt(np.mean(sung**2)) > 0.01 and np.sqrt(np.mean(spoken**2)) > 0.01
    assert "Listen:" in stdout


@pytest.mark.parametrize("method", ["world-nodur", "psola-tsm"])
def test_render_one_file_on_two_processes_writes_the_same_bytes(tmp_path: Path, speech_wav: Path, capsys, method):
    outs = {n: tmp_path / f"out{n}.wav" for n in (1, 2)}
    for n, out in outs.items():
        code, _, stderr = run(["render", str(speech_wav), "-o", str(out), "--to", "speech", "--method", method,
                               "--workers", str(n), "-q"], capsys)
        assert code == 0, stderr
    assert outs[1].read_bytes() == outs[2].read_bytes()


def test_render_never_starts_more_analysis_threads_than_cores(tmp_path: Path, speech_wav: Path):
    from voxflip.engine.registry import make_converter
    from voxflip.render import available_cores, render_file

    converter = make_converter("speech", "world-nodur")
    render_file(speech_wav, tmp_path / "out.wav", converter, cores=64)
    assert converter.analyzer.threads == min(64, available_cores())

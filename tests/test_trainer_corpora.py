"""Tests of trainer.data.corpora: each loader on a tiny fake tree in the corpus's own layout."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxflip.engine.errors import ConfigError
from voxflip.trainer.data.corpora import (
    CORPORA,
    LoadReport,
    load_corpus,
    load_dsing,
    load_nhss,
    load_nus48e,
    load_pairs,
    load_popbutfy,
    normalise_text,
    read_nus_labels,
    read_textgrid,
    split_for_key,
)
from voxflip.trainer.data.corpora_common import group_key
from voxflip.trainer.data.manifest import ManifestEntry, PhoneSpan, read_manifest, write_manifest


def _audio(path: Path, seconds: float = 0.2, sample_rate: int = 16_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    sf.write(str(path), (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sample_rate)
    return path


def _text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


LONG_TEXTGRID = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 1.5
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 1.5
        intervals: size = 3
        intervals [1]:
            xmin = 0
            xmax = 0.2
            text = ""
        intervals [2]:
            xmin = 0.2
            xmax = 0.9
            text = "Hello"
        intervals [3]:
            xmin = 0.9
            xmax = 1.5
            text = "World"
    item [2]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 1.5
        intervals: size = 3
        intervals [1]:
            xmin = 0
            xmax = 0.2
            text = "sil"
        intervals [2]:
            xmin = 0.2
            xmax = 0.5
            text = "HH"
        intervals [3]:
            xmin = 0.5
            xmax = 1.5
            text = "AH0"
'''

SHORT_TEXTGRID = '''File type = "ooTextFile"
Object class = "TextGrid"

0
1.2
<exists>
2
"IntervalTier"
"words"
0
1.2
2
0
0.6
"hello"
0.6
1.2
"world"
"TextTier"
"beats"
0
1.2
1
0.5
"say ""hi"""
'''


# --------------------------------------------------------------------------- label readers


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_textgrid_long_format_gives_words_and_phones(tmp_path, encoding):
    grid = read_textgrid(_text(tmp_path / "a.TextGrid", LONG_TEXTGRID, encoding))
    assert (grid.xmin, grid.xmax) == (0.0, 1.5)
    assert [t.name for t in grid.tiers] == ["words", "phones"]
    assert [(i.start_s, i.end_s, i.label) for i in grid.tiers[1].items] == [
        (0.0, 0.2, "sil"), (0.2, 0.5, "HH"), (0.5, 1.5, "AH0")]


def test_textgrid_short_format_with_point_tier_and_escaped_quotes(tmp_path):
    grid = read_textgrid(_text(tmp_path / "a.TextGrid", SHORT_TEXTGRID))
    assert [i.label for i in grid.tiers[0].items] == ["hello", "world"]
    assert grid.tiers[1].kind == "point"
    assert grid.tiers[1].items[0].label == 'say "hi"'


@pytest.mark.parametrize("content, match", [
    (b"ooBinaryFile\x08TextGrid", "binary"),
    (b'File type = "ooTextFile"\nObject class = "Pitch 1"\n', "not a Praat TextGrid"),
    (LONG_TEXTGRID[:400].encode(), "ends early"),
    (LONG_TEXTGRID.replace('xmax = 0.5', 'xmax = "x"').encode(), "malformed TextGrid"),
])
def test_textgrid_rejects_bad_files_with_one_line(tmp_path, content, match):
    path = tmp_path / "bad.TextGrid"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=match) as info:
        read_textgrid(path)
    assert "\n" not in str(info.value) and "bad.TextGrid" in str(info.value)


def test_nus_labels_parse_seconds_and_name_the_bad_line(tmp_path):
    good = _text(tmp_path / "01.txt", "0.0 0.5 sil\n0.5\t0.75\tAH\n\n0.75 1.0 N\n")
    assert read_nus_labels(good) == [PhoneSpan("sil", 0.0, 0.5), PhoneSpan("AH", 0.5, 0.75), PhoneSpan("N", 0.75, 1.0)]
    bad = _text(tmp_path / "02.txt", "0.0 0.5 sil\n0.5 oops AH\n")
    with pytest.raises(ConfigError, match=r"02.txt' line 2: start and end must be seconds"):
        read_nus_labels(bad)
    with pytest.raises(ConfigError, match="line 1: needs 0 <= start <= end"):
        read_nus_labels(_text(tmp_path / "03.txt", "0.9 0.5 sil\n"))


# --------------------------------------------------------------------------- NUS-48E


def _nus_tree(root: Path) -> Path:
    for singer in ("ADIZ", "JLEE"):
        for side in ("sing", "read"):
            _audio(root / singer / side / "01.wav")
    _text(root / "ADIZ" / "sing" / "01.txt", "0.0 0.1 sil\n0.1 0.2 AY\n")
    _text(root / "ADIZ" / "read" / "01.txt", "0.0 0.05 sil\n0.05 0.2 AY\n")
    _audio(root / "ADIZ" / "sing" / "18.wav")  # no read partner
    _text(root / "lyrics" / "01.txt", "I will always\nlove you\n")
    return root


def test_nus48e_pairs_sing_and_read_with_phones_text_and_speaker(tmp_path):
    root = _nus_tree(tmp_path / "nus")
    report = LoadReport()
    entries = load_nus48e(root, report=report)
    assert [e.id for e in entries] == ["nus48e/ADIZ/01", "nus48e/JLEE/01"]
    adiz = entries[0]
    assert adiz.singing == root / "ADIZ" / "sing" / "01.wav" and adiz.speech == root / "ADIZ" / "read" / "01.wav"
    assert adiz.singing_phones == [PhoneSpan("sil", 0.0, 0.1), PhoneSpan("AY", 0.1, 0.2)]
    assert adiz.speech_phones == [PhoneSpan("sil", 0.0, 0.05), PhoneSpan("AY", 0.05, 0.2)]
    assert entries[1].singing_phones is None  # no label file: no phones, not an error
    assert (adiz.text, adiz.speaker, adiz.source, adiz.extra) == ("I will always love you", "ADIZ", "nus48e", {"song": "01"})
    assert entries[0].split == entries[1].split  # same song, same lyrics
    assert report.skipped == {"sung files without a read partner": 1}
    assert report.examples["sung files without a read partner"][0].endswith("18.wav")


def test_nus48e_without_lyrics_groups_splits_by_song_number(tmp_path):
    root = tmp_path / "nus"
    for singer in ("ADIZ", "JLEE", "KENN"):
        for song in ("01", "02", "03", "04", "05", "06"):
            for side in ("sing", "read"):
                _audio(root / singer / side / f"{song}.wav", seconds=0.05)
    entries = load_nus48e(root, valid_fraction=0.3, test_fraction=0.3)
    by_song: dict[str, set[str]] = {}
    for e in entries:
        assert e.text == ""
        by_song.setdefault(e.extra["song"], set()).add(e.split)
    assert all(len(splits) == 1 for splits in by_song.values())


def test_nus48e_descends_into_the_single_corpus_folder(tmp_path):
    _nus_tree(tmp_path / "download" / "nus-smc-corpus_48")
    assert len(load_nus48e(tmp_path / "download")) == 2


def test_nus48e_unreadable_label_file_is_a_config_error(tmp_path):
    root = _nus_tree(tmp_path / "nus")
    (root / "JLEE" / "sing" / "01.txt").write_text("0.0 0.1\n")
    with pytest.raises(ConfigError, match=r"JLEE/sing/01.txt' line 1: expected 'start end phone'"):
        load_nus48e(root)


# --------------------------------------------------------------------------- NHSS


def _nhss_tree(root: Path) -> Path:
    song = root / "F01" / "S01"
    _audio(song / "Song" / "01.wav", 1.5)
    _text(song / "Song" / "01.TextGrid", LONG_TEXTGRID)
    _audio(song / "Speech" / "01.wav", 1.2)
    _text(song / "Speech" / "01.TextGrid", SHORT_TEXTGRID, "utf-16")
    _audio(song / "Song" / "02.wav")  # no spoken partner
    _audio(song / "Song" / "song.wav", 3.0)  # the whole recording: not an utterance
    _audio(song / "Speech" / "speech.wav", 2.5)
    whole = root / "M01" / "S02"  # only whole recordings: one entry for the song
    _audio(whole / "Song" / "song.wav", 0.4)
    _audio(whole / "Speech" / "wav" / "speech.wav", 0.3)
    _text(whole / "Speech" / "wav" / "speech.txt", "The whole song")
    return root


def test_nhss_pairs_utterances_with_textgrid_words_and_phones(tmp_path):
    root = _nhss_tree(tmp_path / "NHSS")
    report = LoadReport()
    entries = load_nhss(root, report=report)
    assert [e.id for e in entries] == ["nhss/F01/S01/01", "nhss/M01/S02"]
    utt, whole = entries
    assert utt.singing == root / "F01/S01/Song/01.wav" and utt.speech == root / "F01/S01/Speech/01.wav"
    assert utt.text == "Hello World"  # from the sung TextGrid's word tier
    assert utt.singing_phones == [PhoneSpan("sil", 0.0, 0.2), PhoneSpan("HH", 0.2, 0.5), PhoneSpan("AH0", 0.5, 1.5)]
    assert utt.speech_phones is None  # the spoken TextGrid has no phone tier
    assert utt.extra["singing_words"] == [["Hello", 0.2, 0.9], ["World", 0.9, 1.5]]
    assert utt.extra["speech_words"] == [["hello", 0.0, 0.6], ["world", 0.6, 1.2]]
    assert (utt.speaker, utt.source, utt.extra["song"]) == ("F01", "nhss", "S01")
    assert whole.singing == root / "M01/S02/Song/song.wav" and whole.text == "The whole song"
    assert report.skipped == {"sung files without a spoken partner": 1}


def test_nhss_pairs_prefixed_stems_in_wav_subfolders_and_descends_into_the_data_folder(tmp_path):
    song = tmp_path / "NHSS_Database" / "Data" / "M02" / "S07"
    _audio(song / "Sing" / "wav" / "M02_S07_song_03.wav")
    _audio(song / "Speech" / "wav" / "M02_S07_speech_03.wav")
    _text(song / "Speech" / "TextGrid" / "M02_S07_speech_03.TextGrid", SHORT_TEXTGRID)
    entries = load_nhss(tmp_path / "NHSS_Database")
    assert [(e.id, e.text) for e in entries] == [("nhss/M02/S07/M02_S07_03", "hello world")]


def test_nhss_names_a_corrupt_textgrid(tmp_path):
    root = _nhss_tree(tmp_path / "NHSS")
    (root / "F01/S01/Speech/01.TextGrid").write_text("File type = \"ooTextFile\"\n")
    with pytest.raises(ConfigError, match=r"Speech/01.TextGrid'.*ends early"):
        load_nhss(root)


# --------------------------------------------------------------------------- DSing

_DSING_HEADER = "utterance_id,recording_id,recording,start,end,speaker,gender,text\n"


def _dsing_row(utt: str, rec: str, start: float, end: float, text: str, country: str = "GB") -> str:
    return f"F1-{utt},{rec},{country}/{country}Vocals/{rec}.m4a,{start},{end},F1,f,{text}\n"


def _dsing_tree(root: Path) -> Path:
    vocals = root / "GB" / "GBVocals"
    vocals.mkdir(parents=True)
    (vocals / "rec1.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    (vocals / "rec2.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    _audio(vocals / "rec2.flac", 2.0)  # converted copy: preferred over the .m4a
    _text(root / "DSing1.csv", _DSING_HEADER + _dsing_row("001", "rec1", 1.0, 2.5, "WISE MEN SAY")
          + _dsing_row("002", "rec1", 3.0, 4.0, '"ONLY FOOLS, RUSH IN"')
          + _dsing_row("003", "gone", 0.0, 1.0, "MISSING RECORDING"))
    _text(root / "dev.csv", _DSING_HEADER + _dsing_row("004", "rec2", 0.5, 1.5, "BUT I CAN'T HELP"))
    _text(root / "test.csv", _DSING_HEADER + _dsing_row("005", "rec2", 1.0, 2.0, "FALLING IN LOVE"))
    return root


def test_dsing_keeps_its_own_split_and_gives_singing_segments_only(tmp_path, caplog):
    root = _dsing_tree(tmp_path / "sing_300x30x2")
    report = LoadReport()
    with caplog.at_level(logging.WARNING):
        entries = load_dsing(root, subset="dsing1", report=report)
    assert [(e.id, e.split) for e in entries] == [
        ("dsing/F1-001", "train"), ("dsing/F1-002", "train"), ("dsing/F1-004", "valid"), ("dsing/F1-005", "test")]
    first = entries[0]
    assert first.speech is None and first.singing == root / "GB/GBVocals/rec1.m4a"
    assert entries[2].singing == root / "GB/GBVocals/rec2.flac"
    assert first.extra == {"singing_start_s": 1.0, "singing_end_s": 2.5, "gender": "f"}
    assert entries[1].text == "ONLY FOOLS, RUSH IN" and first.speaker == "F1"
    assert report.skipped == {"list rows whose recording is missing": 1}
    assert any(".m4a" in note and "ffmpeg" in note for note in report.notes)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 1" in warnings[0].getMessage()


def test_dsing_names_the_missing_list_and_bad_rows(tmp_path):
    root = _dsing_tree(tmp_path / "sing_300x30x2")
    with pytest.raises(ConfigError, match=r"missing DSing30.csv or train30.csv"):
        load_dsing(root)  # default subset dsing30
    with pytest.raises(ConfigError, match="subset 'dsing2' is not one of"):
        load_dsing(root, subset="dsing2")
    _text(root / "dev.csv", _DSING_HEADER + _dsing_row("004", "rec2", 1.5, 0.5, "BACKWARDS"))
    with pytest.raises(ConfigError, match=r"dev.csv line 2: end 0.5 s is not after start 1.5 s"):
        load_dsing(root, subset="dsing1")
    _text(root / "dev.csv", "utterance_id,recording\n")
    with pytest.raises(ConfigError, match="lacks the column"):
        load_dsing(root, subset="dsing1")
    _text(root / "dev.csv", _DSING_HEADER + "F1-009,rec2,GB/GBVocals/rec2.m4a,0.5\n")
    with pytest.raises(ConfigError, match="dev.csv line 2 has fewer fields than the header"):
        load_dsing(root, subset="dsing1")


def test_dsing_lists_can_live_elsewhere(tmp_path):
    root = _dsing_tree(tmp_path / "sing_300x30x2")
    lists = tmp_path / "DSing Preconstructed"
    lists.mkdir()
    for name in ("DSing1.csv", "dev.csv", "test.csv"):
        (root / name).rename(lists / name)
    assert len(load_corpus("dsing", root, subset="dsing1", lists_dir=lists)) == 4


# --------------------------------------------------------------------------- PopBuTFy


def _popbutfy_tree(root: Path) -> Path:
    data = root / "data"
    for tech in ("Amateur", "Professional"):
        folder = f"Female1#singing#Almost_lover_{tech}"
        for n in ("0", "1"):
            _audio(data / folder / f"{folder}_{n}.mp3", 0.3)
            _text(root / "text_labels" / folder / f"{folder}_{n}.txt", f"lyric line {n}\nignored\n")
    speech = "Female1#speech#Almost_lover"
    _audio(data / speech / f"{speech}_0.wav", 0.2)
    _audio(data / speech / f"{speech}_7.wav", 0.2)  # no singing with that number
    return root


def test_popbutfy_pairs_both_takes_with_the_speech_segment(tmp_path):
    root = _popbutfy_tree(tmp_path / "PopBuTFy")
    report = LoadReport()
    entries = load_popbutfy(root, report=report)
    assert [e.id for e in entries] == ["popbutfy/Female1/Almost_lover/Amateur/0",
                                       "popbutfy/Female1/Almost_lover/Professional/0"]
    amateur, professional = entries
    speech = root / "data/Female1#speech#Almost_lover/Female1#speech#Almost_lover_0.wav"
    assert amateur.speech == professional.speech == speech
    assert amateur.singing.name == "Female1#singing#Almost_lover_Amateur_0.mp3"
    assert (amateur.text, amateur.speaker, amateur.extra) == ("lyric line 0", "Female1", {"technique": "Amateur"})
    assert amateur.split == professional.split
    assert report.skipped == {"singing files without speech": 2, "speech files without singing": 1}


def test_popbutfy_singing_only_on_request_and_a_clear_error_without_speech(tmp_path):
    root = _popbutfy_tree(tmp_path / "PopBuTFy")
    entries = load_popbutfy(root, require_speech=False)
    assert len(entries) == 4 and sum(e.speech is None for e in entries) == 2
    for path in (root / "data/Female1#speech#Almost_lover").iterdir():
        path.unlink()
    (root / "data/Female1#speech#Almost_lover").rmdir()
    with pytest.raises(ConfigError, match="AlignSTS speech subset is missing"):
        load_popbutfy(root)


# --------------------------------------------------------------------------- pairs


def test_pairs_flat_layout_with_optional_text(tmp_path):
    root = tmp_path / "pairs"
    _audio(root / "a1.sing.wav")
    _audio(root / "a1.speech.flac")
    _text(root / "a1.txt", "Hello there\n")
    _audio(root / "b2.sing.ogg")
    _audio(root / "b2.speech.wav")
    _audio(root / "c3.sing.wav")  # no partner
    report = LoadReport()
    entries = load_pairs(root, report=report)
    assert [(e.id, e.text, e.singing.name, e.speech.name) for e in entries] == [
        ("pairs/a1", "Hello there", "a1.sing.wav", "a1.speech.flac"), ("pairs/b2", "", "b2.sing.ogg", "b2.speech.wav")]
    assert report.skipped == {"sung files without a spoken partner": 1}


def test_pairs_folder_layout_and_mixed_layouts_refused(tmp_path):
    root = tmp_path / "pairs"
    _audio(root / "singing" / "x.wav")
    _audio(root / "speech" / "x.wav")
    _audio(root / "speech" / "y.wav")
    _text(root / "text" / "x.txt", "some words")
    report = LoadReport()
    entries = load_pairs(root, report=report)
    assert [(e.id, e.text, e.singing, e.speech) for e in entries] == [
        ("pairs/x", "some words", root / "singing/x.wav", root / "speech/x.wav")]
    assert report.skipped == {"spoken files without a sung partner": 1}
    _audio(root / "z.sing.wav")
    with pytest.raises(ConfigError, match="mixes both layouts"):
        load_pairs(root)


# --------------------------------------------------------------------------- splits


def test_normalise_text_ignores_case_punctuation_and_spacing():
    assert normalise_text("Can't help -- Falling!") == normalise_text("  CANT help falling ") == "cant help falling"
    assert normalise_text("Müller's  Lust") == "müllers lust"


def test_split_is_deterministic_by_text_and_close_to_the_fractions():
    keys = [group_key(f"line number {i}", "unused") for i in range(4000)]
    splits = [split_for_key(k, split_seed=3, valid_fraction=0.1, test_fraction=0.2) for k in keys]
    again = [split_for_key(k, split_seed=3, valid_fraction=0.1, test_fraction=0.2) for k in keys]
    assert splits == again
    assert abs(splits.count("valid") / 4000 - 0.1) < 0.02 and abs(splits.count("test") / 4000 - 0.2) < 0.025
    other_seed = [split_for_key(k, split_seed=4, valid_fraction=0.1, test_fraction=0.2) for k in keys]
    assert other_seed != splits
    assert split_for_key(group_key("Hello, World", "a"), split_seed=3) == split_for_key(group_key("hello world", "b"), split_seed=3)


def test_no_lyrics_are_in_two_splits_across_singers(tmp_path):
    root = tmp_path / "pairs"
    lyrics = [f"lyric {i}" for i in range(40)]
    for singer in range(3):
        for i, line in enumerate(lyrics):
            _audio(root / f"s{singer}_{i}.sing.wav", 0.02)
            _audio(root / f"s{singer}_{i}.speech.wav", 0.02)
            _text(root / f"s{singer}_{i}.txt", line.upper() if singer else line)
    entries = load_pairs(root, split_seed=1, valid_fraction=0.25, test_fraction=0.25)
    splits_of: dict[str, set[str]] = {}
    for e in entries:
        splits_of.setdefault(normalise_text(e.text), set()).add(e.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert {s for group in splits_of.values() for s in group} == {"train", "valid", "test"}
    assert [e.split for e in load_pairs(root, split_seed=1, valid_fraction=0.25, test_fraction=0.25)] == \
        [e.split for e in entries]


@pytest.mark.parametrize("valid, test", [(-0.1, 0.1), (0.5, 0.5), (float("nan"), 0.0), (0.1, 1)])
def test_bad_split_fractions_are_refused(tmp_path, valid, test):
    with pytest.raises(ValueError, match="fraction"):
        load_pairs(tmp_path, valid_fraction=valid, test_fraction=test)


# --------------------------------------------------------------------------- bad trees and the registry


@pytest.mark.parametrize("kind", sorted(CORPORA))
def test_missing_root_says_what_was_expected(tmp_path, kind):
    with pytest.raises(ConfigError, match=rf"{kind}: corpus root '.*nowhere' does not exist; expected "):
        load_corpus(kind, tmp_path / "nowhere")


@pytest.mark.parametrize("kind", ["nhss", "nus48e", "popbutfy", "pairs"])
def test_wrong_layout_says_what_was_expected_and_what_was_found(tmp_path, kind):
    (tmp_path / "random_folder").mkdir()
    (tmp_path / "notes.md").write_text("hi")
    with pytest.raises(ConfigError, match=rf"does not have the {kind} layout: expected .*found in .*notes.md, random_folder/") as info:
        load_corpus(kind, tmp_path)
    assert "\n" not in str(info.value)


def test_root_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file.wav").write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        load_corpus("nus48e", tmp_path / "file.wav")


def test_load_corpus_refuses_unknown_kinds_and_options(tmp_path):
    with pytest.raises(ConfigError, match="unknown corpus kind 'nus'; choose one of: nhss, nus48e, dsing, popbutfy, pairs"):
        load_corpus("nus", tmp_path)
    with pytest.raises(ConfigError, match="corpus 'pairs' has no option.* subset; its options are"):
        load_corpus("pairs", tmp_path, subset="dsing1")


def test_loaded_entries_round_trip_through_the_manifest(tmp_path):
    root = _nhss_tree(tmp_path / "NHSS")
    entries = load_corpus("nhss", root)
    path = write_manifest(tmp_path / "manifest.jsonl", entries)
    back = read_manifest(path)
    assert [(e.id, e.singing, e.speech, e.text, e.split, e.singing_phones, e.extra) for e in back] == [
        (e.id, e.singing, e.speech, e.text, e.split, e.singing_phones, e.extra) for e in entries]
    assert all(isinstance(e, ManifestEntry) for e in back)

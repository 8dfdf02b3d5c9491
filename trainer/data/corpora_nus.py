"""Loaders of the two NUS parallel corpora: NUS-48E (sung and read lyrics) and NHSS (Speak-Sing).

Both hold the same singer singing and reading the same lyrics, so every entry has both sides.
Layouts, what is confirmed and what is assumed: docs/data.md ("Corpora").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from voxflip.engine.errors import ConfigError

from .corpora_common import (
    LoadReport,
    audio_files,
    check_fractions,
    child_dir,
    finish,
    group_key,
    layout_error,
    read_text_file,
    require_root,
    subdirs,
)
from .corpora_labels import (
    Interval,
    phones_from_textgrid,
    read_nus_labels,
    read_textgrid,
    text_from_textgrid,
    words_from_textgrid,
)
from .manifest import ManifestEntry, PhoneSpan

NUS48E_LAYOUT = ("<root>/<SINGER>/sing/NN.wav (+ NN.txt phone labels) and <root>/<SINGER>/read/NN.wav "
                 "(+ NN.txt), e.g. ADIZ/sing/01.wav")
NHSS_LAYOUT = ("<root>/<SINGER>/<SONG>/Song/<utt>.wav and <root>/<SINGER>/<SONG>/Speech/<utt>.wav "
               "(audio directly in Song/ and Speech/ or in their wav/ subfolders; <utt>.TextGrid beside it "
               "or in a TextGrid/ subfolder), e.g. F01/S01/Song/01.wav")


def _descend_single(root: Path, looks_right: Callable[[Path], bool]) -> Path:
    """``root``, or its only sub-folder when ``root`` itself does not look right but that one does."""
    if looks_right(root):
        return root
    children = subdirs(root)
    if len(children) == 1 and looks_right(children[0]):
        return children[0]
    return root


# --------------------------------------------------------------------------- NUS-48E


def _nus_singers(root: Path) -> list[Path]:
    return [d for d in subdirs(root) if child_dir(d, "sing") and child_dir(d, "read")]


def load_nus48e(root: str | Path, *, split_seed: int = 0, valid_fraction: float = 0.05,
                test_fraction: float = 0.05, lyrics_dir: str | Path | None = None,
                report: LoadReport | None = None) -> list[ManifestEntry]:
    """NUS-48E: ``<SINGER>/sing/NN.wav`` paired with ``<SINGER>/read/NN.wav``, phones from ``NN.txt``.

    The corpus has no word transcripts. Lyrics come from ``lyrics_dir/NN.txt`` (one file per song
    number; default ``<root>/lyrics`` when it exists); without them ``text`` is empty. Song numbers
    are shared by all singers (the same NN is the same song), so splits group by song number when
    there is no text.

    Args:
        root: the corpus folder (the one holding the 12 singer folders, or its parent).
        split_seed, valid_fraction, test_fraction: the split by text (docs/data.md).
        lyrics_dir: optional folder of ``NN.txt`` lyrics files.
        report: filled with skipped files (a sung file without its read partner and vice versa).

    Returns:
        Entries with ``singing``, ``speech``, ``singing_phones``, ``speech_phones`` (seconds),
        ``speaker`` = singer folder, ``extra["song"]`` = NN.

    Raises:
        ConfigError: missing root, no ``<SINGER>/sing`` + ``read`` folders, unreadable label files.
        ValueError: bad split fractions.
    """
    check_fractions(valid_fraction, test_fraction)
    report = report if report is not None else LoadReport()
    root = require_root("nus48e", root, NUS48E_LAYOUT)
    root = _descend_single(root, lambda p: bool(_nus_singers(p)))
    singers = _nus_singers(root)
    if not singers:
        raise layout_error("nus48e", root, NUS48E_LAYOUT)
    if lyrics_dir is None and child_dir(root, "lyrics") is not None:
        lyrics_dir = child_dir(root, "lyrics")
    entries, keys = [], []
    for singer in singers:
        sing_dir, read_dir = child_dir(singer, "sing"), child_dir(singer, "read")
        assert sing_dir is not None and read_dir is not None
        sung, read = audio_files(sing_dir, "nus48e"), audio_files(read_dir, "nus48e")
        for song in sorted(set(sung) | set(read)):
            if song not in read:
                report.skip("sung files without a read partner", sung[song])
                continue
            if song not in sung:
                report.skip("read files without a sung partner", read[song])
                continue
            text = ""
            if lyrics_dir is not None and (Path(lyrics_dir) / f"{song}.txt").is_file():
                text = read_text_file(Path(lyrics_dir) / f"{song}.txt", "nus48e")
            entries.append(ManifestEntry(
                id=f"nus48e/{singer.name}/{song}", text=text, singing=sung[song], speech=read[song],
                speaker=singer.name, language="en", source="nus48e",
                singing_phones=_nus_phones(sung[song]), speech_phones=_nus_phones(read[song]),
                extra={"song": song},
            ))
            keys.append(group_key(text, f"nus48e-song:{song}"))
    return finish("nus48e", root, entries, keys, report, split_seed=split_seed, valid_fraction=valid_fraction,
                  test_fraction=test_fraction, expected=NUS48E_LAYOUT)


def _nus_phones(audio: Path) -> list[PhoneSpan] | None:
    label = audio.with_suffix(".txt")
    return read_nus_labels(label) if label.is_file() else None


# --------------------------------------------------------------------------- NHSS

_SIDE_WORDS = re.compile(r"song|sing|speech", re.IGNORECASE)


def _utterance_key(stem: str) -> str:
    """What pairs a sung and a spoken file: the stem without song/sing/speech (``""``: whole recording)."""
    return re.sub(r"[-_. ]{2,}", "_", _SIDE_WORDS.sub("", stem)).strip("_-. ")


def _nhss_songs(singer: Path) -> list[Path]:
    return [d for d in subdirs(singer) if child_dir(d, "song", "sing") and child_dir(d, "speech")]


def _nhss_root_ok(root: Path) -> bool:
    return any(_nhss_songs(singer) for singer in subdirs(root))


def _side_files(side: Path) -> dict[str, Path]:
    """Utterance audio of one side (Song/ or Speech/) by pairing key; the whole recording as ``""``."""
    folder = child_dir(side, "wav", "wavs", "audio")
    files = list(audio_files(side, "nhss").values()) + list(audio_files(folder, "nhss").values() if folder else [])
    by_key: dict[str, Path] = {}
    for path in files:
        key = _utterance_key(path.stem)
        if key in by_key:
            raise ConfigError(
                f"nhss: {str(by_key[key])!r} and {str(path)!r} are both utterance {key or '(whole song)'!r}; keep one"
            )
        by_key[key] = path
    if len(by_key) > 1:
        by_key.pop("", None)  # utterances exist: the whole-song recording is not one of them
    return by_key


def _annotation(audio: Path, side: Path, suffix: str) -> Path | None:
    for folder in (audio.parent, side, child_dir(side, "textgrid", "textgrids", "annotation", "lyrics")):
        if folder is not None and (folder / f"{audio.stem}{suffix}").is_file():
            return folder / f"{audio.stem}{suffix}"
    return None


def _nhss_side(audio: Path, side: Path) -> tuple[str, list[PhoneSpan] | None, list[Interval] | None]:
    """(text, phones, words) of one recording from its .txt and .TextGrid, when present."""
    text, phones, words = "", None, None
    grid_path = _annotation(audio, side, ".TextGrid")
    if grid_path is not None:
        grid = read_textgrid(grid_path)
        text, phones, words = text_from_textgrid(grid), phones_from_textgrid(grid), words_from_textgrid(grid)
    txt = _annotation(audio, side, ".txt")
    if txt is not None:
        text = read_text_file(txt, "nhss") or text
    return text, phones, words


def load_nhss(root: str | Path, *, split_seed: int = 0, valid_fraction: float = 0.05,
              test_fraction: float = 0.05, report: LoadReport | None = None) -> list[ManifestEntry]:
    """NHSS: ``<SINGER>/<SONG>/Song/<utt>.wav`` paired with ``<SINGER>/<SONG>/Speech/<utt>.wav``.

    Utterances pair by file stem with "song"/"sing"/"speech" removed (``01.wav`` with ``01.wav``,
    ``song_01.wav`` with ``speech_01.wav``). A side folder holding only its whole recording
    (``song.wav``, ``speech.wav``) gives one entry for the whole song. Text comes from ``<utt>.txt``
    or the TextGrid's word tier; phones from a TextGrid tier named like "phones" when there is one;
    word spans go to ``extra["singing_words"]`` / ``extra["speech_words"]`` as ``[word, start_s, end_s]``.

    Args:
        root: the folder holding the singer folders (F01..F05, M01..M05), or its parent.
        split_seed, valid_fraction, test_fraction: the split by text (docs/data.md).
        report: filled with skipped files (utterances without a partner).

    Raises:
        ConfigError: missing root, no ``<SINGER>/<SONG>/Song`` + ``Speech`` folders, unreadable TextGrids.
        ValueError: bad split fractions.
    """
    check_fractions(valid_fraction, test_fraction)
    report = report if report is not None else LoadReport()
    root = require_root("nhss", root, NHSS_LAYOUT)
    root = _descend_single(root, _nhss_root_ok)
    if not _nhss_root_ok(root):
        raise layout_error("nhss", root, NHSS_LAYOUT)
    entries, keys = [], []
    for singer in subdirs(root):
        for song in _nhss_songs(singer):
            sung_side, spoken_side = child_dir(song, "song", "sing"), child_dir(song, "speech")
            assert sung_side is not None and spoken_side is not None
            sung, spoken = _side_files(sung_side), _side_files(spoken_side)
            for key in sorted(set(sung) | set(spoken)):
                if key not in spoken:
                    report.skip("sung files without a spoken partner", sung[key])
                    continue
                if key not in sung:
                    report.skip("spoken files without a sung partner", spoken[key])
                    continue
                sung_text, sung_phones, sung_words = _nhss_side(sung[key], sung_side)
                spoken_text, spoken_phones, spoken_words = _nhss_side(spoken[key], spoken_side)
                extra: dict[str, object] = {"song": song.name}
                if sung_words is not None:
                    extra["singing_words"] = [[w.label, w.start_s, w.end_s] for w in sung_words]
                if spoken_words is not None:
                    extra["speech_words"] = [[w.label, w.start_s, w.end_s] for w in spoken_words]
                item = f"{singer.name}/{song.name}" + (f"/{key}" if key else "")
                text = sung_text or spoken_text
                entries.append(ManifestEntry(
                    id=f"nhss/{item}", text=text, singing=sung[key], speech=spoken[key],
                    speaker=singer.name, language="en", source="nhss",
                    singing_phones=sung_phones, speech_phones=spoken_phones, extra=extra,
                ))
                keys.append(group_key(text, f"nhss:{item}"))
    return finish("nhss", root, entries, keys, report, split_seed=split_seed, valid_fraction=valid_fraction,
                  test_fraction=test_fraction, expected=NHSS_LAYOUT)

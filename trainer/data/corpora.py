"""Corpus loaders: a corpus folder in, manifest entries out (docs/data.md, "Corpora").

``load_corpus("nus48e", root)`` picks the loader from :data:`CORPORA`; each loader is also callable
directly. Every loader:

- checks the folder layout first and raises one-line :class:`ConfigError` s naming what it expected
  and what it found (a missing root, a wrong layout, an unreadable label file);
- skips recordings without their partner (a sung file with no spoken one), counts them in a
  :class:`LoadReport` (pass ``report=``) and logs one summary warning;
- keeps the corpus's own split where it has one (DSing) and otherwise splits by text
  (:func:`split_for_key`): all recordings of the same lyrics share a split.

This module holds the registry and the generic ``pairs`` loader; the corpus loaders live in
``corpora_nus`` (NHSS, NUS-48E) and ``corpora_pop`` (DSing, PopBuTFy); shared pieces in
``corpora_common``; annotation readers in ``corpora_labels``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voxflip.engine.errors import ConfigError

from .corpora_common import (
    LoadReport,
    audio_files,
    check_fractions,
    child_dir,
    finish,
    group_key,
    layout_error,
    normalise_text,
    read_text_file,
    require_root,
    split_for_key,
)
from .corpora_labels import read_nus_labels, read_textgrid
from .corpora_nus import load_nhss, load_nus48e
from .corpora_pop import load_dsing, load_popbutfy
from .manifest import ManifestEntry

__all__ = [
    "CORPORA", "LoadReport", "load_corpus", "load_dsing", "load_nhss", "load_nus48e", "load_pairs",
    "load_popbutfy", "normalise_text", "read_nus_labels", "read_textgrid", "split_for_key",
]

PAIRS_LAYOUT = ("<root>/<id>.sing.<ext> + <root>/<id>.speech.<ext> (+ <root>/<id>.txt lyrics), or "
                "<root>/singing/<id>.<ext> + <root>/speech/<id>.<ext> (+ <root>/text/<id>.txt)")


def _flat_pairs(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """``<id>.sing.<ext>`` and ``<id>.speech.<ext>`` files of ``root`` by id."""
    sides: dict[str, dict[str, Path]] = {"sing": {}, "speech": {}}
    for stem, path in audio_files(root, "pairs").items():
        pair_id, _, side = stem.rpartition(".")
        if pair_id and side in sides:
            if pair_id in sides[side]:
                raise ConfigError(f"pairs: two {side} files for {pair_id!r} in {str(root)!r}; keep one")
            sides[side][pair_id] = path
    return sides["sing"], sides["speech"]


def load_pairs(root: str | Path, *, split_seed: int = 0, valid_fraction: float = 0.05,
               test_fraction: float = 0.05, report: LoadReport | None = None) -> list[ManifestEntry]:
    """A generic folder of sung/spoken pairs, in one of two layouts.

    Flat: ``<root>/<id>.sing.<ext>``, ``<root>/<id>.speech.<ext>`` and optionally ``<root>/<id>.txt``.
    Folders: ``<root>/singing/<id>.<ext>``, ``<root>/speech/<id>.<ext>`` and optionally
    ``<root>/text/<id>.txt``. ``<ext>`` is any format :mod:`voxflip.engine.audio_io` reads. Pairs
    without text are split by id (each its own group).

    Args:
        root: the folder.
        split_seed, valid_fraction, test_fraction: the split by text (docs/data.md).
        report: filled with files whose partner is missing.

    Raises:
        ConfigError: missing root, neither layout (or both) found, two files for one id, unreadable text.
    """
    check_fractions(valid_fraction, test_fraction)
    report = report if report is not None else LoadReport()
    root = require_root("pairs", root, PAIRS_LAYOUT)
    sing_dir, speech_dir = child_dir(root, "singing"), child_dir(root, "speech")
    flat_sing, flat_speech = _flat_pairs(root)
    if (sing_dir or speech_dir) and (flat_sing or flat_speech):
        raise ConfigError(
            f"pairs: {str(root)!r} mixes both layouts (singing/ or speech/ folders and <id>.sing/.speech files); "
            f"use one: {PAIRS_LAYOUT}"
        )
    if sing_dir or speech_dir:
        if sing_dir is None or speech_dir is None:
            raise layout_error("pairs", root, PAIRS_LAYOUT)
        sung, spoken = audio_files(sing_dir, "pairs"), audio_files(speech_dir, "pairs")
        text_dir = child_dir(root, "text")
    elif flat_sing or flat_speech:
        sung, spoken, text_dir = flat_sing, flat_speech, root
    else:
        raise layout_error("pairs", root, PAIRS_LAYOUT)
    entries, keys = [], []
    for pair_id in sorted(set(sung) | set(spoken)):
        if pair_id not in spoken:
            report.skip("sung files without a spoken partner", sung[pair_id])
            continue
        if pair_id not in sung:
            report.skip("spoken files without a sung partner", spoken[pair_id])
            continue
        text_path = text_dir / f"{pair_id}.txt" if text_dir is not None else None
        text = read_text_file(text_path, "pairs") if text_path is not None and text_path.is_file() else ""
        entries.append(ManifestEntry(id=f"pairs/{pair_id}", text=text, singing=sung[pair_id],
                                     speech=spoken[pair_id], source="pairs"))
        keys.append(group_key(text, f"pairs:{pair_id}"))
    return finish("pairs", root, entries, keys, report, split_seed=split_seed, valid_fraction=valid_fraction,
                  test_fraction=test_fraction, expected=PAIRS_LAYOUT)


CORPORA: dict[str, Callable[..., list[ManifestEntry]]] = {
    "nhss": load_nhss,
    "nus48e": load_nus48e,
    "dsing": load_dsing,
    "popbutfy": load_popbutfy,
    "pairs": load_pairs,
}


def load_corpus(kind: str, root: str | os.PathLike[str], *, split_seed: int = 0, valid_fraction: float = 0.05,
                test_fraction: float = 0.05, report: LoadReport | None = None,
                **options: Any) -> list[ManifestEntry]:
    """Load a corpus folder as manifest entries (write them with ``manifest.write_manifest``).

    Args:
        kind: a key of :data:`CORPORA`: ``nhss``, ``nus48e``, ``dsing``, ``popbutfy``, ``pairs``.
        root: the corpus folder (layouts: docs/data.md).
        split_seed: seed of the split by text; the same seed gives the same split on any machine.
        valid_fraction, test_fraction: expected share of lyrics groups in valid and test, each in [0, 1).
        report: a :class:`LoadReport` to fill with skipped files and notes.
        options: loader-specific options, e.g. ``subset="dsing3"``, ``lists_dir=...`` (dsing),
            ``lyrics_dir=...`` (nus48e), ``require_speech=False`` (popbutfy).

    Returns:
        Entries sorted by id, each with its split.

    Raises:
        ConfigError: unknown kind or option, or a bad corpus tree (one line, see the loader).
        ValueError: bad split fractions.
    """
    if kind not in CORPORA:
        raise ConfigError(f"unknown corpus kind {kind!r}; choose one of: {', '.join(CORPORA)}")
    loader = CORPORA[kind]
    allowed = [name for name, p in inspect.signature(loader).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"corpus {kind!r} has no option(s) {', '.join(unknown)}; its options are: {', '.join(allowed)}"
        )
    return loader(Path(root), split_seed=split_seed, valid_fraction=valid_fraction,
                  test_fraction=test_fraction, report=report, **options)

"""What every corpus loader shares: the load report, splits by text, folder discovery, layout errors.

Splits: a corpus without its own split is split BY TEXT. Every entry gets a group key: its
normalised lyrics (``text:<normalised text>``), or, when a corpus has no lyrics for it, a
corpus-specific key that stands for the same lyrics (``group:...``, e.g. a NUS-48E song number).
The split of a key is a pure function of the key and ``split_seed`` (a SHA-256 hash mapped to
[0, 1)), so all recordings of the same lyrics land in the same split, on every machine, and adding
recordings later never moves the ones already there.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from voxflip.engine.audio_io import READ_EXTENSIONS
from voxflip.engine.errors import ConfigError

from .manifest import ManifestEntry

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = READ_EXTENSIONS
_EXAMPLES_PER_REASON = 3


@dataclass
class LoadReport:
    """What a loader found besides its entries: skipped files by reason, and notes.

    Pass one to a loader (``report=LoadReport()``) to read the counts; without one the loader
    still logs a single summary warning when it skipped anything.
    """

    corpus: str = ""
    root: Path | None = None
    entries: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, example: str | Path) -> None:
        """Count one skipped item under ``reason`` (e.g. ``"singing without speech"``)."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < _EXAMPLES_PER_REASON:
            examples.append(str(example))

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """One line: entries found, then each skip reason with its count and first example."""
        text = f"{self.corpus}: {self.entries} entries from {str(self.root)!r}"
        if self.skipped:
            parts = [f"{count} {reason} (e.g. {self.examples[reason][0]!r})" for reason, count in self.skipped.items()]
            text += f"; skipped {self.total_skipped}: " + "; ".join(parts)
        if self.notes:
            text += "; " + "; ".join(self.notes)
        return text


# --------------------------------------------------------------------------- splits


def normalise_text(text: str) -> str:
    """Lyrics as compared for splitting: NFKC, case-folded, punctuation dropped, spaces collapsed.

    ``"Can't help -- Falling!"`` and ``"CANT HELP FALLING"`` give the same ``"cant help falling"``.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[-_/\\]+", " ", text)
    text = "".join(ch for ch in text if ch.isalnum() or ch.isspace())
    return " ".join(text.split())


def group_key(text: str, fallback: str) -> str:
    """The split group of an entry: its normalised text, or ``fallback`` when it has no text."""
    norm = normalise_text(text)
    return f"text:{norm}" if norm else f"group:{fallback}"


def check_fractions(valid_fraction: float, test_fraction: float) -> None:
    """Raise ValueError unless both fractions are in [0, 1) and sum to less than 1."""
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not 0 <= value < 1:
            raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    if valid_fraction + test_fraction >= 1:
        raise ValueError(
            f"valid_fraction + test_fraction must be < 1 (something must be left to train on), "
            f"got {valid_fraction} + {test_fraction}"
        )


def split_for_key(key: str, *, split_seed: int = 0, valid_fraction: float = 0.05,
                  test_fraction: float = 0.05) -> str:
    """``"train"``, ``"valid"`` or ``"test"`` for a group key; deterministic in ``(key, split_seed)``."""
    digest = hashlib.sha256(f"{split_seed}\x00{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


# --------------------------------------------------------------------------- folders and files


def require_root(corpus: str, root: str | Path, expected: str) -> Path:
    """``root`` as a Path; ConfigError (one line, with the expected layout) unless it is a folder."""
    path = Path(root)
    if not path.exists():
        raise ConfigError(f"{corpus}: corpus root {str(path)!r} does not exist; expected {expected}")
    if not path.is_dir():
        raise ConfigError(f"{corpus}: corpus root {str(path)!r} is a file, not a folder; expected {expected}")
    return path


def describe_dir(path: Path, limit: int = 8) -> str:
    """What a folder holds, for error messages: ``"a/, b/, notes.txt (and 3 more)"``."""
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    except OSError as exc:
        return f"nothing readable ({exc.strerror or exc})"
    if not names:
        return "an empty folder"
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def layout_error(corpus: str, root: Path, expected: str, where: Path | None = None) -> ConfigError:
    """ConfigError saying what layout was expected and what ``where`` (default ``root``) holds."""
    where = root if where is None else where
    return ConfigError(
        f"{corpus}: {str(root)!r} does not have the {corpus} layout: expected {expected}; "
        f"found in {str(where)!r}: {describe_dir(where)}"
    )


def subdirs(path: Path) -> list[Path]:
    """The sub-folders of ``path``, sorted by name, hidden ones left out."""
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def child_dir(path: Path, *names: str) -> Path | None:
    """The sub-folder of ``path`` whose name matches one of ``names`` ignoring case, if any."""
    wanted = {name.casefold() for name in names}
    for sub in subdirs(path):
        if sub.name.casefold() in wanted:
            return sub
    return None


def audio_files(folder: Path, corpus: str, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> dict[str, Path]:
    """Audio files directly in ``folder`` by stem. ConfigError if two share a stem (``01.wav``, ``01.flac``)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in extensions:
            continue
        if path.stem in found:
            raise ConfigError(
                f"{corpus}: two audio files for {path.stem!r} in {str(folder)!r}: "
                f"{found[path.stem].name} and {path.name}; keep one"
            )
        found[path.stem] = path
    return found


def read_text_file(path: Path, corpus: str, *, first_line: bool = False) -> str:
    """A lyrics/label text file as one line, whitespace collapsed (only its first non-empty line
    with ``first_line``); ConfigError if unreadable or not UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{corpus}: cannot read text file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{corpus}: text file {str(path)!r} is not UTF-8 (byte {exc.start}); re-save it as UTF-8"
        ) from None
    if first_line:
        text = next((line for line in text.splitlines() if line.strip()), "")
    return " ".join(text.split())


# --------------------------------------------------------------------------- finishing


def finish(corpus: str, root: Path, entries: list[ManifestEntry], keys: list[str], report: LoadReport | None,
           *, split_seed: int, valid_fraction: float, test_fraction: float,
           own_splits: bool = False, expected: str = "") -> list[ManifestEntry]:
    """Assign splits by group key (unless the corpus brings its own), check ids, report, sort by id.

    Raises:
        ConfigError: no entries at all, or two entries with the same id.
    """
    report = report if report is not None else LoadReport()
    report.corpus, report.root = corpus, root
    if not entries:
        detail = f"; skipped {report.total_skipped} ({', '.join(report.skipped)})" if report.skipped else ""
        raise ConfigError(
            f"{corpus}: found no usable entries under {str(root)!r}{detail}; expected {expected or 'see docs/data.md'}"
        )
    if not own_splits:
        for entry, key in zip(entries, keys, strict=True):
            entry.split = split_for_key(key, split_seed=split_seed, valid_fraction=valid_fraction,
                                        test_fraction=test_fraction)
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise ConfigError(f"{corpus}: two entries have the id {entry.id!r} under {str(root)!r}; ids must be unique")
        seen.add(entry.id)
    report.entries = len(entries)
    if report.skipped or report.notes:
        log.warning("%s", report.summary())
    else:
        log.info("%s", report.summary())
    return sorted(entries, key=lambda e: e.id)

"""Annotation files of the corpora: Praat TextGrids (NHSS) and "start end phone" label files (NUS-48E).

The TextGrid reader handles both Praat text formats ("long", with ``xmin = 0`` lines, and "short",
values only) in UTF-8 or UTF-16, interval and point tiers. It reads the file as a stream of
values (quoted strings, numbers, ``<exists>``) and skips everything else (key names, ``=``,
``[1]`` indices, ``!`` comments), which is what both formats have in common. Binary TextGrids are
refused with a hint.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from voxflip.engine.errors import ConfigError

from .manifest import PhoneSpan

# Labels that mark silence or pauses rather than a word.
SILENCE_LABELS = frozenset({"", "sil", "sp", "spn", "pau", "<sil>", "<p:>", "#", "silence", "<eps>"})

_TOKEN = re.compile(
    r'"(?P<str>(?:[^"]|"")*)"'                                       # "a string", "" is an escaped quote
    r"|(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])"  # 0, 1.5, -2e-05
    r"|(?P<flag><exists>|<absent>)"
    r"|\[[^\]\n]*\]"                                                 # [1], [] (indices: skipped)
    r"|![^\n]*"                                                      # ! comment (short format)
    r"|[A-Za-z_][\w]*"                                               # key names: skipped
    r"|\S"                                                           # = : ? and the like: skipped
)


@dataclass(frozen=True)
class Interval:
    """One labelled span in seconds (a point of a point tier has ``start_s == end_s``)."""

    start_s: float
    end_s: float
    label: str


@dataclass(frozen=True)
class Tier:
    name: str
    kind: str  # "interval" or "point"
    items: list[Interval]


@dataclass(frozen=True)
class TextGrid:
    xmin: float
    xmax: float
    tiers: list[Tier]

    def find_tier(self, *keywords: str) -> Tier | None:
        """The first interval tier named exactly like a keyword (any case), else one containing it."""
        intervals = [t for t in self.tiers if t.kind == "interval"]
        for keyword in keywords:
            for tier in intervals:
                if tier.name.strip().casefold() == keyword:
                    return tier
        for keyword in keywords:
            for tier in intervals:
                if keyword in tier.name.casefold():
                    return tier
        return None


def _decode(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    if raw[:1] == b"\x00" or raw[1:2] == b"\x00":  # UTF-16 without a byte-order mark
        return raw.decode("utf-16-be" if raw[:1] == b"\x00" else "utf-16-le")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # old Praat files in the platform encoding


class _Values:
    """The values of a TextGrid in file order; each ``take_*`` raises ConfigError naming the file."""

    def __init__(self, text: str, where: str) -> None:
        self.where = where
        self.items: list[tuple[str, object]] = []
        for match in _TOKEN.finditer(text):
            if match.group("str") is not None:
                self.items.append(("str", match.group("str").replace('""', '"')))
            elif match.group("num") is not None:
                self.items.append(("num", float(match.group("num"))))
            elif match.group("flag") is not None:
                self.items.append(("flag", match.group("flag")))
        self.pos = 0

    def _take(self, kind: str, what: str) -> object:
        if self.pos >= len(self.items):
            raise ConfigError(f"{self.where}: TextGrid ends early; expected {what}")
        got_kind, value = self.items[self.pos]
        if got_kind != kind:
            raise ConfigError(f"{self.where}: malformed TextGrid: expected {what}, got {value!r}")
        self.pos += 1
        return value

    def take_str(self, what: str) -> str:
        return str(self._take("str", what))

    def take_num(self, what: str) -> float:
        value = float(self._take("num", what))  # type: ignore[arg-type]
        if not math.isfinite(value):
            raise ConfigError(f"{self.where}: malformed TextGrid: {what} is {value}")
        return value

    def take_count(self, what: str) -> int:
        value = self.take_num(what)
        if value < 0 or value != int(value):
            raise ConfigError(f"{self.where}: malformed TextGrid: {what} must be a whole number, got {value}")
        return int(value)

    def take_flag(self) -> str | None:
        if self.pos < len(self.items) and self.items[self.pos][0] == "flag":
            self.pos += 1
            return str(self.items[self.pos - 1][1])
        return None


def read_textgrid(path: str | Path) -> TextGrid:
    """Read a Praat TextGrid (long or short text format).

    Raises:
        ConfigError: unreadable, binary, not a TextGrid, or malformed (one line naming the file).
    """
    path = Path(path)
    where = repr(str(path))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read TextGrid {where}: {exc.strerror or exc}") from None
    if raw.startswith(b"ooBinaryFile"):
        raise ConfigError(f"TextGrid {where} is in Praat's binary format; save it as a text file in Praat")
    values = _Values(_decode(raw), where)
    if values.take_str("File type") != "ooTextFile" or values.take_str("Object class") != "TextGrid":
        raise ConfigError(f"{where} is not a Praat TextGrid (it must start with File type = \"ooTextFile\" "
                          f"and Object class = \"TextGrid\")")
    xmin, xmax = values.take_num("xmin"), values.take_num("xmax")
    tiers: list[Tier] = []
    if values.take_flag() != "<absent>":
        for t in range(values.take_count("the number of tiers")):
            cls = values.take_str(f"the class of tier {t + 1}")
            name = values.take_str(f"the name of tier {t + 1}")
            values.take_num("tier xmin")
            values.take_num("tier xmax")
            count = values.take_count(f"the size of tier {name!r}")
            items = []
            if cls == "IntervalTier":
                for _ in range(count):
                    start, end = values.take_num("interval xmin"), values.take_num("interval xmax")
                    label = values.take_str("interval text")
                    if end < start:
                        raise ConfigError(f"{where}: tier {name!r} has an interval ending at {end} before its start {start}")
                    items.append(Interval(start, end, label))
            elif cls == "TextTier":
                for _ in range(count):
                    time = values.take_num("point time")
                    items.append(Interval(time, time, values.take_str("point mark")))
            else:
                raise ConfigError(f"{where}: tier {name!r} has unknown class {cls!r} (IntervalTier or TextTier)")
            tiers.append(Tier(name, "interval" if cls == "IntervalTier" else "point", items))
    return TextGrid(xmin, xmax, tiers)


def phones_from_textgrid(grid: TextGrid) -> list[PhoneSpan] | None:
    """Phone spans of the tier named like "phones"/"phoneme"; empty labels dropped. None without such a tier."""
    tier = grid.find_tier("phones", "phone", "phonemes", "phoneme")
    if tier is None:
        return None
    return [PhoneSpan(i.label.strip(), i.start_s, i.end_s) for i in tier.items if i.label.strip()]


def words_from_textgrid(grid: TextGrid) -> list[Interval] | None:
    """Word intervals of the tier named like "words" (silences dropped). None without such a tier."""
    tier = grid.find_tier("words", "word")
    if tier is None:
        return None
    return [Interval(i.start_s, i.end_s, i.label.strip()) for i in tier.items
            if i.label.strip().casefold() not in SILENCE_LABELS]


def text_from_textgrid(grid: TextGrid) -> str:
    """The lyrics a TextGrid spells out: its word tier, else a sentence/lyrics tier, joined by spaces."""
    words = words_from_textgrid(grid)
    if words is None:
        tier = grid.find_tier("sentence", "utterance", "lyrics", "text", "transcription")
        if tier is None:
            return ""
        words = [i for i in tier.items if i.label.strip().casefold() not in SILENCE_LABELS]
    return " ".join(w.label.strip() for w in words)


def read_nus_labels(path: str | Path) -> list[PhoneSpan]:
    """A NUS-48E label file: one ``start end phone`` per line, seconds, whitespace-separated.

    Raises:
        ConfigError: unreadable file, or a line that is not two finite numbers (end >= start) and a phone.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read label file {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"label file {str(path)!r} is not text (undecodable byte at {exc.start})") from None
    spans = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{str(path)!r} line {lineno}"
        if len(fields) != 3:
            raise ConfigError(f"label file {where}: expected 'start end phone', got {line.strip()!r}")
        try:
            start, end = float(fields[0]), float(fields[1])
        except ValueError:
            raise ConfigError(f"label file {where}: start and end must be seconds, got {line.strip()!r}") from None
        if not (math.isfinite(start) and math.isfinite(end)) or end < start or start < 0:
            raise ConfigError(f"label file {where}: needs 0 <= start <= end (seconds), got {line.strip()!r}")
        spans.append(PhoneSpan(fields[2], start, end))
    return spans

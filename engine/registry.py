"""Which converters exist, by direction and method name, and how to build one.

The command line, the Python API and the evaluator all build converters here,
so a new system is one entry in :data:`METHODS`.
"""

from __future__ import annotations

from dataclasses import replace

from .converters.base import Converter
from .converters.world_s2s import WorldS2SConfig, WorldS2SConverter
from .converters.world_sts import WorldSTSConfig, WorldSTSConverter
from .errors import ConfigError
from .melody import Melody

#: direction -> method names, the first being the default
METHODS: dict[str, tuple[str, ...]] = {
    "speech": ("world-nodur", "world-dur"),
    "singing": ("world",),
}


def default_method(to: str) -> str:
    check_direction(to)
    return METHODS[to][0]


def check_direction(to: str) -> str:
    if to not in METHODS:
        raise ConfigError(f"--to {to!r} is not a direction; use one of: {', '.join(METHODS)}")
    return to


def make_converter(
    to: str,
    method: str | None = None,
    *,
    melody: Melody | None = None,
    chunk_ms: float | None = None,
    duration: float | None = None,
    transpose_semitones: float = 0.0,
    vibrato_cents: float | None = None,
    portamento_ms: float | None = None,
) -> Converter:
    """Build a converter.

    Args:
        to: ``"speech"`` (singing -> speech) or ``"singing"`` (speech -> singing).
        method: one of ``METHODS[to]``; ``None`` takes the default.
        melody: required for ``to="singing"``, refused otherwise.
        chunk_ms: processing chunk (latency vs. per-call overhead); ``None`` keeps the default.
        duration: ``world-dur`` shortening amount 0..1.
        transpose_semitones: applied to the melody (singing) or the speech contour (speech).
        vibrato_cents, portamento_ms: singing options.

    Raises:
        ConfigError: unknown direction or method, missing or unexpected melody, bad values.
    """
    check_direction(to)
    method = method or default_method(to)
    if method not in METHODS[to]:
        raise ConfigError(f"--method {method!r} does not convert to {to}; use one of: {', '.join(METHODS[to])}")
    if to == "speech":
        if melody is not None:
            raise ConfigError("a melody only applies to --to singing; singing -> speech needs none")
        if vibrato_cents is not None or portamento_ms is not None:
            raise ConfigError("vibrato and portamento only apply to --to singing")
        s2s = WorldS2SConfig(transpose_semitones=transpose_semitones)
        if chunk_ms is not None:
            s2s = replace(s2s, chunk_ms=chunk_ms)
        if duration is not None:
            if method != "world-dur":
                raise ConfigError("--duration applies to --method world-dur only; world-nodur keeps the sung timing")
            s2s = replace(s2s, duration=duration)
        return WorldS2SConverter(method, s2s)
    if melody is None:
        raise ConfigError("--to singing needs a melody: --melody TUNE (.mid, .musicxml, .mxl, .csv or .json)")
    if duration is not None:
        raise ConfigError("--duration applies to --to speech --method world-dur only")
    sts = WorldSTSConfig(transpose_semitones=0.0)
    if chunk_ms is not None:
        sts = replace(sts, chunk_ms=chunk_ms)
    if vibrato_cents is not None:
        sts = replace(sts, vibrato_cents=vibrato_cents)
    if portamento_ms is not None:
        sts = replace(sts, portamento_ms=portamento_ms)
    if transpose_semitones:
        melody = melody.transposed(transpose_semitones)
    return WorldSTSConverter(melody, sts)

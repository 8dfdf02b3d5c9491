"""Which converters exist, by direction and method name, and how to build one.

The command line, the Python API and the evaluator all build converters here,
so a new system is one entry in :data:`METHODS`.
"""

from __future__ import annotations

from dataclasses import replace
from importlib.resources import files
from pathlib import Path

from .converters.base import Converter, check_chunk_ms
from .converters.world_s2s import WorldS2SConfig, WorldS2SConverter
from .converters.world_sts import WorldSTSConfig, WorldSTSConverter
from .errors import ConfigError
from .melody import Melody

#: direction -> method names, the first being the default
METHODS: dict[str, tuple[str, ...]] = {
    "speech": ("flow", "flow-nodur", "flow-dur", "world-nodur", "world-dur"),
    "singing": ("world",),
}

#: short names: ``flow`` is the flow model with its predicted speech durations
ALIASES: dict[str, str] = {"flow": "flow-dur"}


def default_flow_model() -> Path:
    """The S2S flow model shipped in the package (``voxflip/data/models/s2s_flow``)."""
    return Path(str(files("voxflip") / "data" / "models" / "s2s_flow" / "model.manifest.json"))


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
    model_path: str | Path | None = None,
) -> Converter:
    """Build a converter.

    Args:
        to: ``"speech"`` (singing -> speech) or ``"singing"`` (speech -> singing).
        method: one of ``METHODS[to]``; ``None`` takes the default; ``flow`` means ``flow-dur``.
        melody: required for ``to="singing"``, refused otherwise.
        chunk_ms: processing chunk (latency vs. per-call overhead); ``None`` keeps the default.
        duration: ``world-dur`` shortening amount 0..1.
        transpose_semitones: applied to the melody (singing) or the speech contour (speech).
        vibrato_cents, portamento_ms: singing options.
        model_path: a flow model exported by ``voxflip export`` (default: the shipped one).

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
        method = ALIASES.get(method, method)
        if method.startswith("flow"):
            from .converters.flow_s2s import FlowS2SConverter

            if duration is not None:
                raise ConfigError("--duration applies to world-dur; flow-dur predicts its durations")
            path = Path(model_path) if model_path is not None else default_flow_model()
            if model_path is None and not path.is_file():
                raise ConfigError(
                    "no flow model is shipped with this installation; train one (voxflip train) and export it "
                    "(voxflip export CHECKPOINT -o model.onnx), then pass --model model.onnx"
                )
            from .features.mel import MelConfig

            mel = MelConfig.for_s2s()   # every flow model's (its manifest is checked against it on load)
            chunk = None if chunk_ms is None else check_chunk_ms(chunk_ms, mel.hop_samples, mel.sample_rate, "--chunk-ms")
            return FlowS2SConverter(path, method, chunk_frames=chunk, transpose_semitones=transpose_semitones)
        if model_path is not None:
            raise ConfigError("--model applies to the flow methods (flow-nodur, flow-dur)")
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

"""Training configuration: one TOML file per run, one table per concern, strict keys.

```toml
[data]
manifest = "data/synth/manifest.jsonl"   # relative to the config file
features = "to_speech"                    # feature preset (voxflip corpus features)

[model]                                    # ToSpeechFlowConfig fields
hidden = 128

[train]                                    # TrainConfig fields
max_steps = 20000
```

Unknown tables or keys fail with the list of valid ones. ``--set train.lr=2e-4`` overrides
are parsed as TOML values and type-checked against the field's default. The resolved
configuration is saved next to the run's checkpoints (``config.toml``).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from voxflip.engine.errors import ConfigError

from .models.to_speech_flow import ToSpeechFlowConfig


@dataclass(frozen=True)
class DataConfig:
    manifest: str = ""
    features: str = "to_speech"
    cache_dir: str = ""            # default: features/ next to the manifest
    max_frames: int = 800          # longer utterances are cropped (random offset, seeded)
    min_frames: int = 20

    def __post_init__(self) -> None:
        if self.max_frames < self.min_frames or self.min_frames < 1:
            raise ConfigError(f"data.max_frames={self.max_frames} must be >= data.min_frames={self.min_frames} >= 1")


TRAINABLE = ("all", "duration")
MODEL_PARTS = ("encoder", "prior", "phone", "duration", "flow")   # ToSpeechFlow's top-level modules


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    lr: float = 1e-4               # the S2S paper's learning rate
    batch_size: int = 8
    max_steps: int = 20_000
    warmup_steps: int = 200
    grad_clip: float = 5.0
    checkpoint_every: int = 500
    log_every: int = 50
    valid_every: int = 500
    keep_checkpoints: int = 3
    init_from: str = ""            # fine-tuning: a checkpoint, an export's manifest, or "shipped" (weights only)
    threads: int = 0               # torch threads per process; 0 = torch's default
    trainable: str = "all"         # "duration": only the duration predictor learns (with init_from)
    init_fresh: str = ""           # with init_from: parts that keep this run's initialisation, e.g. "flow,prior"

    @property
    def fresh_parts(self) -> list[str]:
        return [p.strip() for p in self.init_fresh.split(",") if p.strip()]

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.batch_size < 1 or self.max_steps < 1 or self.checkpoint_every < 1:
            raise ConfigError("train.lr must be > 0 and train.batch_size, max_steps, checkpoint_every >= 1")
        if self.trainable not in TRAINABLE:
            raise ConfigError(f"train.trainable={self.trainable!r} is not one of {', '.join(TRAINABLE)}")
        bad = [p for p in self.fresh_parts if p not in MODEL_PARTS]
        if bad:
            raise ConfigError(f"train.init_fresh={self.init_fresh!r}: {', '.join(bad)} is not a part of the model; "
                              f"parts: {', '.join(MODEL_PARTS)}")
        if self.init_fresh and not self.init_from:
            raise ConfigError(f"train.init_fresh={self.init_fresh!r} needs train.init_from (the weights the rest "
                              "starts from)")
        if self.trainable != "all" and not self.init_from:
            raise ConfigError(f"train.trainable={self.trainable!r} trains one part of a trained model: "
                              "set train.init_from to its checkpoint")


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ToSpeechFlowConfig = field(default_factory=ToSpeechFlowConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    base_dir: str = "."

    def manifest_path(self) -> Path:
        path = Path(self.data.manifest)
        return path if path.is_absolute() else Path(self.base_dir) / path

    def init_path(self) -> Path | None:
        """``train.init_from`` resolved like the manifest (relative to the config file); None when unset."""
        if not self.train.init_from:
            return None
        if self.train.init_from == SHIPPED:
            from voxflip.engine.registry import default_flow_model

            return default_flow_model()
        path = Path(self.train.init_from)
        return path if path.is_absolute() else Path(self.base_dir) / path


#: ``train.init_from`` value meaning the S2S flow model shipped in the package
SHIPPED = "shipped"

_TABLES = {"data": DataConfig, "model": ToSpeechFlowConfig, "train": TrainConfig}
_PATHS = {"data": ("manifest", "cache_dir"), "train": ("init_from",)}


#: which recordings of each manifest row a trainer learns from (``data.sides``)
SIDES = ("speech", "singing", "both")


def recording_sides(value: str) -> tuple[str, ...]:
    """``data.sides`` checked (one line otherwise), as the manifest columns it names."""
    if value not in SIDES:
        raise ConfigError(f"data.sides={value!r} must be one of {', '.join(SIDES)}")
    return ("speech", "singing") if value == "both" else (value,)


def _coerce(table: str, key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{table}.{key}={value!r} must be {kind.__name__} (like the default {default!r})")
    return value


def _build(table: str, cls: type, values: dict[str, Any]) -> Any:
    defaults = {f.name: getattr(cls(), f.name) for f in fields(cls)}
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise ConfigError(f"[{table}] has unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(defaults)}")
    return cls(**{k: _coerce(table, k, v, defaults[k]) for k, v in values.items()})


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["train.lr=2e-4", "model.hidden=64"]`` -> nested dict of TOML-parsed values."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set {item!r} must look like TABLE.KEY=VALUE, e.g. train.lr=2e-4")
        dotted, text = item.split("=", 1)
        table, key = dotted.split(".", 1)
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare string
        out.setdefault(table, {})[key] = value
    return out


def read_tables(path: str | Path | None, overrides: list[str] | None, tables: tuple[str, ...],
                paths: dict[str, tuple[str, ...]]) -> tuple[dict[str, dict[str, Any]], str]:
    """A config file's tables with the ``--set`` overrides applied, and the folder its paths are relative to.

    Only ``tables`` may appear; a path key of ``paths`` given with ``--set`` is made absolute against
    the current folder (one written in the file stays relative to the file).
    """
    raw: dict[str, Any] = {}
    base = "."
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config {str(path)!r} does not exist")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        base = str(path.resolve().parent)
    unknown = sorted(set(raw) - set(tables))
    if unknown:
        raise ConfigError(f"unknown table(s) {', '.join(unknown)}; valid tables: {', '.join(tables)}")
    for table, values in parse_overrides(overrides or []).items():
        if table not in tables:
            raise ConfigError(f"--set {table}.*: unknown table; valid tables: {', '.join(tables)}")
        for key in paths.get(table, ()):
            # a path in the file is relative to the file; one typed on the command line, to where it is typed
            if (isinstance(values.get(key), str) and values[key] and values[key] != SHIPPED
                    and not Path(values[key]).is_absolute()):
                values[key] = str(Path.cwd() / values[key])
        raw.setdefault(table, {}).update(values)
    return raw, base


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    raw, base = read_tables(path, overrides, tuple(_TABLES), _PATHS)
    built = {t: _build(t, cls, raw.get(t, {})) for t, cls in _TABLES.items()}
    return RunConfig(base_dir=base, **built)


def to_toml(config: RunConfig) -> str:
    """The resolved configuration as TOML (strings escaped by tomli-w); :func:`load_config` reads it back."""
    import tomli_w

    return tomli_w.dumps({table: dataclasses.asdict(getattr(config, table)) for table in _TABLES})


def with_manifest_absolute(config: RunConfig) -> RunConfig:
    """The same config with the manifest and init_from paths resolved (for saving next to a run)."""
    init = config.init_path()
    return replace(config, data=replace(config.data, manifest=str(config.manifest_path().resolve())),
                   train=replace(config.train, init_from=str(init.resolve()) if init is not None else ""))

"""Torch models (training side). The engine runs them through ONNX, never through torch."""

from __future__ import annotations

from dataclasses import fields

from voxflip.engine.errors import ConfigError


def check_known_keys(cls: type, raw: dict, where: str) -> None:
    """Refuse, in one line naming ``where``, keys of ``raw`` that are not fields of the dataclass ``cls``."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")

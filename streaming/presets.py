"""Effect presets: JSON files that build a :class:`~.effects.Chain`.

:func:`load_preset` reads a preset (a path, or the name of one of
:func:`bundled_presets`), checks every key, plugin and parameter, and builds the
chain with an optional converter between ``pre`` and ``post``. Every mistake is
one ``ConfigError`` line naming the file and the item. ``docs/effects.md``
("Presets", "Preset errors") has the format and the messages.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from voxflip.engine.converters.base import Converter
from voxflip.engine.errors import ConfigError

from .effect_params import _one_line, _set_param, builtin_plugins, param_specs
from .effects import _NAME_RE, Chain, _default_name

try:
    import pedalboard
except ImportError as exc:  # pragma: no cover - pedalboard is a core dependency
    raise ImportError('effect chains need pedalboard. Install it with: pip install "pedalboard>=0.9.9"') from exc

_TOP_KEYS = ("name", "description", "pre", "post")
_ITEM_KEYS = ("plugin", "plugin_path", "plugin_name", "name", "params")


def bundled_presets() -> dict[str, Path]:
    """The presets shipped in ``voxflip/data/presets``, by file stem."""
    folder = Path(str(files("voxflip") / "data" / "presets"))
    return {p.stem: p for p in sorted(folder.glob("*.json"))}


def _build_item(item: Any, where: str, base: Path) -> tuple[pedalboard.Plugin, str | None]:
    """Make one plugin from a preset item; raises ValueError with a message for ConfigError."""
    if not isinstance(item, dict):
        raise ValueError(f'must be an object like {{"plugin": "Reverb", "params": {{"room_size": 0.3}}}}, got {item!r}')
    unknown = [k for k in item if k not in _ITEM_KEYS]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; allowed keys: {', '.join(_ITEM_KEYS)}")
    if ("plugin" in item) == ("plugin_path" in item):
        raise ValueError('needs exactly one of "plugin" (a built-in class name) or "plugin_path" (a VST3/AU file)')
    name = item.get("name")
    if name is not None and not (isinstance(name, str) and _NAME_RE.match(name)):
        raise ValueError(f"name {name!r} must be letters, digits, '_', '.', '-' (it goes into OSC addresses)")
    params = item.get("params", {})
    if not isinstance(params, dict):
        raise ValueError(f'"params" must be an object of parameter: value, got {params!r}')
    if "plugin" in item:
        cls = builtin_plugins().get(item["plugin"]) if isinstance(item["plugin"], str) else None
        if cls is None:
            raise ValueError(f"unknown plugin {item['plugin']!r}; built-in effects: {', '.join(builtin_plugins())}")
        specs = param_specs(cls)
        kwargs = {}
        for key, value in params.items():
            if key not in specs:
                raise ValueError(f"{cls.__name__} has no parameter {key!r}; it has: {', '.join(specs) or 'none'}")
            kwargs[key] = specs[key].coerce(key, value, base=base)
        missing = [k for k, s in specs.items() if s.required and k not in kwargs]
        if missing:
            raise ValueError(f"{cls.__name__} needs params.{missing[0]} ({specs[missing[0]].describe()})")
        try:
            return cls(**kwargs), name
        except (ValueError, TypeError, RuntimeError) as exc:
            raise ValueError(f"{cls.__name__}: {_one_line(exc)}") from exc
    raw = item["plugin_path"]
    if not isinstance(raw, str):
        raise ValueError(f"plugin_path must be a string path to a .vst3 or .component, got {raw!r}")
    path = Path(raw) if Path(raw).is_absolute() else base / raw
    if not path.exists():
        raise ValueError(f"plugin_path {raw!r} does not exist (looked at {path})")
    try:
        plugin = pedalboard.load_plugin(str(path), plugin_name=item.get("plugin_name"))
    except Exception as exc:  # pedalboard raises ImportError, RuntimeError or ValueError here
        raise ValueError(f"pedalboard cannot load plugin_path {raw!r}: {_one_line(exc)}") from exc
    if plugin.is_instrument and not plugin.is_effect:
        raise ValueError(f"plugin_path {raw!r} is an instrument; a chain takes audio effects only")
    specs = param_specs(plugin)
    for key, value in params.items():
        if key not in specs:
            raise ValueError(f"{_default_name(plugin)} has no parameter {key!r}; it has: {', '.join(specs) or 'none'}")
        _set_param(plugin, key, specs[key].coerce(key, value), _default_name(plugin))
    return plugin, name


def load_preset(path: str | Path, *, converter: Converter | None = None) -> Chain:
    """Build a :class:`Chain` from a JSON preset (format in docs/effects.md).

    Args:
        path: the preset file, or the name of a bundled preset (``"hall"``).
            Relative ``plugin_path`` and impulse-response paths are taken
            from the preset's folder.
        converter: goes between ``pre`` and ``post``; without one the preset is
            just its effects.

    Raises:
        ConfigError: one line naming the file, the item (``pre[1]``) and what
            is allowed -- missing file, bad JSON, unknown key, plugin or
            parameter, a value of the wrong type or out of range, a plugin file
            that is missing or cannot be loaded, a name used twice.
    """
    path = Path(path)
    if not path.is_file() and str(path) in bundled_presets():
        path = bundled_presets()[str(path)]
    if not path.is_file():
        shipped = ", ".join(bundled_presets()) or "none"
        raise ConfigError(f"preset file {str(path)!r} does not exist; bundled presets: {shipped}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the preset: {_one_line(exc)}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: a preset is a JSON object {{"name": ..., "pre": [...], "post": [...]}}')
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; allowed keys: {', '.join(_TOP_KEYS)}")
    name = data.get("name", path.stem)
    if not isinstance(name, str):
        raise ConfigError(f"{path}: name must be a string, got {name!r}")
    items: list[pedalboard.Plugin | Converter] = []
    names: list[str | None] = []
    seen: dict[str, str] = {}
    for section in ("pre", "post"):
        entries = data.get(section, [])
        if not isinstance(entries, list):
            raise ConfigError(f"{path}: {section} must be a list of effect objects, got {entries!r}")
        for i, entry in enumerate(entries):
            where = f"{section}[{i}]"
            try:
                plugin, item_name = _build_item(entry, where, path.parent)
            except ValueError as exc:
                raise ConfigError(f"{path}: {where}: {exc}") from exc
            if item_name is not None:
                if item_name in seen:
                    raise ConfigError(
                        f"{path}: {where}: name {item_name!r} is already used by {seen[item_name]}; names must be unique"
                    )
                seen[item_name] = where
            items.append(plugin)
            names.append(item_name)
        if section == "pre" and converter is not None:
            items.append(converter)
            names.append(None)
    return Chain(items, names=names, name=name)

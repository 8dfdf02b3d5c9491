"""Effect presets: JSON files that build a :class:`~.effects.Chain`.

:func:`load_preset` reads a preset (a path, or the name of one of
:func:`bundled_presets` or of a preset in :func:`user_preset_dir`), checks every
key, plugin and parameter, and builds the chain with an optional converter
between ``pre`` and ``post``. Every mistake is one ``ConfigError`` line naming
the file and the item. ``docs/effects.md`` ("Presets", "Preset errors") has the
format and the messages; ``docs/security.md`` why a bare name never reads the
working directory and why a plugin file needs ``allow_plugins``.
"""

from __future__ import annotations

import json
import os
import re
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
#: what a preset *name* may be (the OSC address space allows the same): never a path
PRESET_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_NAME_FORM = "letters, digits, '_' and '-', at most 64 (a name, never a path)"


def bundled_presets() -> dict[str, Path]:
    """The presets shipped in ``voxflip/data/presets``, by file stem."""
    folder = Path(str(files("voxflip") / "data" / "presets"))
    return {p.stem: p for p in sorted(folder.glob("*.json"))}


def user_preset_dir() -> Path:
    """The user's preset folder: ``$XDG_CONFIG_HOME/voxflip/presets`` (default ``~/.config/voxflip/presets``).

    A bare preset name (``--fx mine``, OSC ``/voxflip/preset mine``) is looked up
    here and among the bundled presets, never in the working directory.
    """
    config = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(config) if config and Path(config).is_absolute() else Path.home() / ".config"
    return base / "voxflip" / "presets"


def is_preset_path(preset: str | os.PathLike[str]) -> bool:
    """Whether ``preset`` names a file (a path object, or text with a '/' or ending in ``.json``) rather than a name."""
    if not isinstance(preset, str):
        return True
    seps = {"/", os.sep, os.altsep} - {None}
    return any(sep in preset for sep in seps) or preset.lower().endswith(".json")


def find_preset(name: str, user_dir: str | Path | None = None) -> Path:
    """The file of a preset *name*: a bundled preset or ``<user_dir>/<name>.json``, never the working directory.

    Args:
        name: a preset name (:data:`PRESET_NAME_RE`), e.g. ``"hall"``.
        user_dir: the user preset folder; default :func:`user_preset_dir`.

    Raises:
        ConfigError: a name that is not a plain name, one found in neither folder
            (the message lists what there is), or one in both: a user preset never
            replaces a bundled one silently.
    """
    if not isinstance(name, str) or not PRESET_NAME_RE.match(name):
        raise ConfigError(f"preset name {name!r} must be {_NAME_FORM}; give a file as a path (./{name}.json)")
    folder = Path(user_dir) if user_dir is not None else user_preset_dir()
    bundled = bundled_presets()
    mine = folder / f"{name}.json"
    in_user = mine.is_file()
    if name in bundled and in_user:
        raise ConfigError(
            f"preset {name!r} is both a bundled preset and {mine}; bundled names are reserved: "
            f"rename {mine.name}, or pass it as a path (--fx {mine})"
        )
    if name in bundled:
        return bundled[name]
    if in_user:
        return mine
    shipped = ", ".join(bundled) or "none"
    theirs = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    listed = f" ({', '.join(theirs)})" if theirs else " (none)"
    raise ConfigError(
        f"preset {name!r} is not a bundled preset ({shipped}) nor in the user preset folder {folder}{listed}; "
        f"a file in the working directory is named as a path: ./{name}.json"
    )


def _refuse_plugins(data: dict, path: Path) -> None:
    """Refuse any ``plugin_path`` item before anything is built: a plugin file is code."""
    for section in ("pre", "post"):
        entries = data.get(section, [])
        for i, item in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(item, dict) and "plugin_path" in item:
                raise ConfigError(
                    f"{path}: {section}[{i}]: plugin_path {item['plugin_path']!r} names a VST3/AU plugin, and a "
                    "plugin is code that runs with your permissions; plugins load only with --allow-plugins "
                    "(allow_plugins=True), see docs/security.md"
                )


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


def load_preset(path: str | os.PathLike[str], *, converter: Converter | None = None, allow_plugins: bool = False,
                user_dir: str | Path | None = None) -> Chain:
    """Build a :class:`Chain` from a JSON preset (format in docs/effects.md).

    Args:
        path: the preset file -- a path object, or text with a '/' or ending
            in ``.json`` -- or a preset name (``"hall"``), looked up by
            :func:`find_preset` among the bundled presets and in ``user_dir``,
            never in the working directory. Relative ``plugin_path`` and
            impulse-response paths are taken from the preset's folder.
        converter: goes between ``pre`` and ``post``; without one the preset is
            just its effects.
        allow_plugins: let ``plugin_path`` items load VST3/AU files. A plugin
            is code; without this a preset naming one is refused before
            anything is loaded (CLI: ``--allow-plugins``).
        user_dir: the user preset folder for names; default :func:`user_preset_dir`.

    Raises:
        ConfigError: one line naming the file, the item (``pre[1]``) and what
            is allowed -- missing file or unknown name, bad JSON, unknown key,
            plugin or parameter, a value of the wrong type or out of range, a
            plugin file without ``allow_plugins``, one that is missing or cannot
            be loaded, a name used twice.
    """
    path = Path(path) if is_preset_path(path) else find_preset(path, user_dir)
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
    if not allow_plugins:
        _refuse_plugins(data, path)
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

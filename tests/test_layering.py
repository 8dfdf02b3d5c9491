"""The architecture holds (../shared/DESIGN.md, "Layout").

Each top-level folder is a room that installs as ``voxflip.<room>``. Imports between rooms
are absolute (``from voxflip.engine.melody import Melody``), so every import names its room,
and they follow the dependency rule:

- ``voxflip`` (the front door) -> every room;
- ``trainer`` -> ``streaming``, ``engine``;
- ``streaming`` and ``osc_control`` -> ``engine``;
- ``engine`` and ``trt_build`` -> nothing of ours.

No room imports the front door's own modules (``voxflip.cli``, ``voxflip.render``...).
``engine`` never imports torch at module level, and the render path never imports torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("voxflip", "engine", "streaming", "osc_control", "trainer", "trt_build")
ALLOWED: dict[str, set[str]] = {
    "voxflip": set(ROOMS),
    "trainer": {"trainer", "streaming", "engine"},
    "streaming": {"streaming", "engine"},
    "osc_control": {"osc_control", "engine"},
    "engine": {"engine"},
    "trt_build": {"trt_build"},
}


def _package_of(path: Path) -> list[str]:
    """The dotted package a module file belongs to, as installed (engine/x/y.py -> voxflip.engine.x)."""
    rel = path.relative_to(ROOT)
    room = rel.parts[0]
    base = ["voxflip"] if room == "voxflip" else ["voxflip", room]
    return base + list(rel.parts[1:-1])


def _room_of(module: str) -> str | None:
    """The room an absolute module name lives in; None for modules that are not ours."""
    parts = module.split(".")
    if parts[0] != "voxflip":
        return None
    if len(parts) > 1 and parts[1] in ROOMS[1:]:
        return parts[1]
    return "voxflip"


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, absolute module name, relative level) of every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _package_of(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.lineno, node.module or "", 0))
                continue
            base = package[: len(package) - (node.level - 1)]
            name = ".".join(base + ([node.module] if node.module else []))
            found.append((node.lineno, name, node.level))
    return found


def _product_files() -> list[Path]:
    return sorted(p for room in ROOMS for p in (ROOT / room).rglob("*.py"))


@pytest.mark.parametrize("path", _product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_dependency_rule(path: Path):
    room = path.relative_to(ROOT).parts[0]
    for lineno, name, level in _imports(path):
        target = _room_of(name)
        if target is None:
            continue
        where = f"{path.relative_to(ROOT)}:{lineno} imports {name}"
        assert target in ALLOWED[room], f"{where}: {room} may import only {sorted(ALLOWED[room])}"
        if level:
            assert target == room, f"{where} relatively; an import from another room is absolute (voxflip.{target})"


def test_the_rule_sees_cross_room_imports():
    """The resolver is not vacuous: the front door and the trainer do import other rooms."""
    seen = {(p.relative_to(ROOT).parts[0], _room_of(n)) for p in _product_files() for _, n, _ in _imports(p)}
    assert ("voxflip", "engine") in seen
    assert ("trainer", "streaming") in seen
    assert ("streaming", "engine") in seen
    assert ("osc_control", "engine") in seen


@pytest.mark.parametrize("path", sorted((ROOT / "engine").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_never_imports_torch_at_module_level(path: Path):
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level only
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(n == "torch" or n.startswith("torch.") for n in names), f"{path} imports torch at module level"


def test_render_path_never_imports_torch(tmp_path: Path, example_speech_path: Path):
    from helpers import cli_heavy_imports

    assert cli_heavy_imports(["render", str(example_speech_path), "-o", str(tmp_path / "o.wav"), "--to", "speech",
                              "-q"]) == []

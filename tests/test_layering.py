"""The architecture holds: engine imports no other voxflip package; the render path never imports torch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OTHER_PACKAGES = ("streaming", "osc_control", "trainer", "trt_build")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            prefix = "." * node.level
            found.append((node.lineno, prefix + (node.module or "")))
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "engine").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_imports_no_other_voxflip_package_and_no_torch_at_module_level(path: Path):
    depth = len(path.relative_to(ROOT / "engine").parts)  # engine/x.py -> 1, engine/sub/x.py -> 2
    tree = ast.parse(path.read_text())
    for lineno, name in _imports(path):
        bare = name.lstrip(".")
        up = len(name) - len(bare)
        if up > depth:  # climbs out of engine into voxflip.<something>
            assert not any(bare == p or bare.startswith(p + ".") for p in (*OTHER_PACKAGES, "cli", "render")), (
                f"{path.relative_to(ROOT)}:{lineno} imports {name}"
            )
        assert not any(bare.startswith(p) for p in ("voxflip.streaming", "voxflip.osc_control", "voxflip.trainer",
                                                    "voxflip.trt_build")), f"{path}:{lineno} imports {name}"
    for node in tree.body:  # module level only
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(n == "torch" or n.startswith("torch.") for n in names), f"{path} imports torch at module level"


def test_render_path_never_imports_torch(tmp_path: Path, example_speech_path: Path):
    from helpers import cli_heavy_imports

    assert cli_heavy_imports(["render", str(example_speech_path), "-o", str(tmp_path / "o.wav"), "--to", "speech",
                              "-q"]) == []

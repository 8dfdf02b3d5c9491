"""Give static tools (pyright, IDEs, mypy) a view of the package as it installs.

The rooms install under one name: ``engine/`` is ``voxflip.engine``, ``streaming/`` is
``voxflip.streaming``, and so on (setup.py). The editable install does that mapping with
an import hook, which runs in Python but which static tools cannot see. This script makes
``build/ide/voxflip/``: links to every entry of ``voxflip/`` plus a link per room folder,
so ``build/ide`` holds the package exactly as it imports. pyproject.toml's
``[tool.pyright] extraPaths`` points pyright there; for mypy, set ``MYPYPATH=build/ide``.

The room links are folder links, so modules added later appear by themselves; run this
again only after adding a file directly under ``voxflip/``. Usage: python scripts/ide_view.py
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIEW = ROOT / "build" / "ide" / "voxflip"


def rooms(root: Path = ROOT) -> list[Path]:
    """The room folders other than the front door: top-level packages except voxflip/ and tests/."""
    return sorted(p.parent for p in root.glob("*/__init__.py") if p.parent.name not in ("voxflip", "tests"))


def make_view(view: Path = VIEW) -> Path:
    """(Re)make the link tree at ``view`` (a folder named voxflip) and return it."""
    if view.is_symlink() or view.exists():
        shutil.rmtree(view)
    view.mkdir(parents=True)
    for entry in sorted((ROOT / "voxflip").iterdir()):
        if entry.name != "__pycache__":
            (view / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    for room in rooms():
        (view / room.name).symlink_to(room, target_is_directory=True)
    return view


if __name__ == "__main__":
    view = make_view()
    print(f"{view}: voxflip with {', '.join(r.name for r in rooms())} as its sub-packages")
    sys.exit(0)

"""Check that a built wheel holds every module, stub and data file of the source tree.

Every top-level folder with an ``__init__.py`` (except ``tests``) is a room: ``voxflip/``
installs as ``voxflip``, any other room ``R/`` as ``voxflip.R``. Each ``.py`` and ``.pyi`` file
of a room, ``voxflip/py.typed`` and everything under ``voxflip/data/`` must be in the wheel
at the matching path. Prints what is missing and exits 1 if anything is.

Usage: python scripts/wheel_contents.py dist/voxflip-*.whl
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def expected_files(root: Path = ROOT) -> set[str]:
    rooms = sorted(p.parent for p in root.glob("*/__init__.py") if p.parent.name != "tests")
    wanted = set()
    for room in rooms:
        prefix = "voxflip" if room.name == "voxflip" else f"voxflip/{room.name}"
        for path in room.rglob("*"):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            rel = path.relative_to(room)
            if path.suffix in (".py", ".pyi") or rel.as_posix() == "py.typed" or (
                    room.name == "voxflip" and rel.parts[0] == "data"):
                wanted.add(f"{prefix}/{rel.as_posix()}")
    return wanted


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    with zipfile.ZipFile(argv[0]) as wheel:
        present = set(wheel.namelist())
    wanted = expected_files()
    missing = sorted(wanted - present)
    for name in missing:
        print(f"wheel_contents: missing from {Path(argv[0]).name}: {name}", file=sys.stderr)
    extensions = [n for n in present if n.endswith(".so") or n.endswith(".pyd")]
    if len(extensions) < 2:
        print(f"wheel_contents: the wheel has {len(extensions)} compiled extensions, expected 2", file=sys.stderr)
        return 1
    print(f"wheel_contents: {len(wanted)} source files, all present")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

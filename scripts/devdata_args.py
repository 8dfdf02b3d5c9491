"""The command line the dev-data experiment scripts share: ``--manifest`` and ``--workers``, and the
manifest's rows as plain dicts (the scripts read the fields they need themselves)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def parse(description: str, more: Callable[[argparse.ArgumentParser], None] | None = None,
          ) -> tuple[argparse.Namespace, list[dict]]:
    """Parse ``--manifest PATH [--workers N]`` and what ``more`` adds; return the arguments and the
    manifest's rows."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    if more is not None:
        more(parser)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()]
    return args, rows

"""Two held-out-singer folds of ../shared/dev-data, for training experiments on real pairs.

    python scripts/devdata_folds.py ../shared/dev-data/manifest.jsonl OUT_DIR

writes ``OUT_DIR/fold{A,B}_{train,eval}.jsonl`` (absolute audio paths, ``split`` set): fold A's model
trains on fold B's singers and is scored on fold A's, and the other way round, so that every clip is
scored by a model that never heard its singer. The folds are fixed (by singer, each language on both
sides where it has two singers); the two STS examples, whose singers dev-data does not name, count as
singers of their own.

dev-data is non-commercial (its README): write OUT_DIR outside the repository, and never commit or
ship what is trained on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: fold A's singers (and unnamed STS examples by id); every other clip is fold B's
FOLD_A = {"DE-Soprano-1", "ES-Bass-1", "FR-Tenor-1", "IT-Soprano-1", "IT-Bass-1", "sts_sts_german"}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    manifest, out = Path(argv[0]).resolve(), Path(argv[1])
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    out.mkdir(parents=True, exist_ok=True)

    def fold_of(row: dict) -> str:
        return "A" if (row.get("singer") or row["id"]) in FOLD_A else "B"

    for fold in ("A", "B"):
        for part, split in (("train", "train"), ("eval", "test")):
            chosen = [r for r in rows if (fold_of(r) == fold) == (part == "eval")]
            with open(out / f"fold{fold}_{part}.jsonl", "w") as f:
                for row in chosen:
                    entry = {k: v for k, v in row.items() if not k.endswith("_source")}
                    for side in ("singing", "speech"):
                        entry[side] = str(manifest.parent / row[side])
                    f.write(json.dumps({**entry, "split": split}) + "\n")
            print(f"fold {fold} {part}: {len(chosen)} pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

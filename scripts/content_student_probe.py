"""How close a content student comes to Whisper's encoder, per language and side, on recordings it never heard.

    python scripts/content_student_probe.py CHECKPOINT [--manifest M ...] [--files F ...]
        [--cache DIR] [--json OUT]

Each recording goes through the engine's path (:func:`voxflip.engine.features.content_student.student_log_mel`,
the student's output at each content frame) and is compared with Whisper base's encoder states of the
same recording (cached in ``--cache``): ``r2``, the share of the standardised states' variance the
student explains (0: no better than the training set's mean state), and the mean cosine of the raw
states. Rows of ``--manifest`` are grouped by language and side; ``--files`` (any audio, e.g. the
bundled CMU ARCTIC sentence) form one group of their own, ``files``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--manifest", type=Path, action="append", default=[])
    parser.add_argument("--files", type=Path, nargs="*", default=[])
    parser.add_argument("--cache", type=Path, default=Path("data/content_probe_cache"),
                        help="where Whisper's states of the recordings are cached")
    parser.add_argument("--json", type=Path, help="write the table here too")
    args = parser.parse_args(argv)

    import torch

    from voxflip.trainer.content_train import _clip, clip_scores, load_student
    from voxflip.trainer.data.manifest import read_manifest

    torch.set_num_threads(1)
    model, payload = load_student(args.checkpoint)
    groups: dict[str, list] = defaultdict(list)
    for manifest in args.manifest:
        for entry in read_manifest(manifest):
            for side in ("speech", "singing"):
                path = getattr(entry, side, None)
                if path is not None:
                    groups[f"{entry.language or '?'} {side}"].append(_clip(Path(path), side, args.cache,
                                                                           model.cfg.lookahead))
    for path in args.files:
        groups["files"].append(_clip(path, "speech", args.cache, model.cfg.lookahead))
    rows = {}
    for side in ("speech", "singing"):
        every = [c for name, clips in groups.items() if name.endswith(side) for c in clips]
        if every:
            groups[f"all {side}"] = every
    print(f"{args.checkpoint} (step {payload.get('step')}, lookahead {model.cfg.lookahead} frames)")
    print(f"{'group':<16} {'clips':>5} {'r2':>7} {'cosine':>7}")
    for name in sorted(groups):
        scores = clip_scores(model, groups[name])
        rows[name] = {"clips": len(groups[name]), **scores}
        print(f"{name:<16} {len(groups[name]):>5} {scores['r2']:>7.3f} {scores['cosine']:>7.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "step": payload.get("step"),
                                         "groups": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

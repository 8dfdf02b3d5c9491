"""Training curves of voxflip runs from their TensorBoard logs, as one PNG (docs/results.md).

    python scripts/plot_training_curves.py OUT.png LABEL=RUN_DIR[:TAG,TAG...] ...

Each panel is one tag (default: train/mel_l1 and valid/mel_l1), each line one run.
"""

from __future__ import annotations

import sys
from pathlib import Path


def scalars(run_dir: Path, tag: str) -> tuple[list[int], list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags().get("scalars", []):
        return [], []
    events = acc.Scalars(tag)
    return [e.step for e in events], [e.value for e in events]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out, runs = Path(argv[0]), []
    for spec in argv[1:]:
        label, _, rest = spec.partition("=")
        folder, _, tags = rest.partition(":")
        runs.append((label, Path(folder), tags.split(",") if tags else ["train/mel_l1", "valid/mel_l1"]))
    panels = sorted({t for _, _, tags in runs for t in tags})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, tag in zip(axes[0], panels, strict=True):
        for k, (label, folder, tags) in enumerate(runs):
            if tag in tags:
                steps, values = scalars(folder, tag)
                if steps:   # one colour per run in every panel
                    ax.plot(steps, values, label=label, color=f"C{k}", marker="." if len(steps) < 30 else None)
        ax.set_title(tag)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

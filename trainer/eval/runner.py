"""`voxflip eval`: run systems over a manifest split, score every clip, tabulate like the papers.

Per clip and system the converted audio is written to ``<out>_clips/<system>/<id>.wav``
and its scores to ``<id>.json`` next to it, so an interrupted evaluation resumes where it
stopped. The report has one row per system and one column per metric: the mean with a
95% confidence interval and ``n`` (clips scored), as markdown and JSON.

S2S metrics (on the output, against the lyrics and the input singing): WER and CER of
pocketsphinx, DNSMOS (SIG, BAK, OVRL), SRMR, speaker similarity to the input. STS
metrics (against the melody and, where the manifest has it, the real singing): RCA, F0
RMSE, LSD, RRD, DNSMOS OVRL. A metric that cannot be computed for a clip (e.g. WER for a
language pocketsphinx does not know) is left out of that clip's row and says why.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxflip.engine.audio_io import read_audio
from voxflip.engine.audio_write import write_audio
from voxflip.engine.errors import ConfigError, EngineError
from voxflip.engine.registry import Direction

from ..data.manifest import ManifestEntry, read_manifest
from .systems import get_system, melody_of

TO_SPEECH_METRICS = ("wer", "cer", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "srmr", "spk_sim")
TO_SINGING_METRICS = ("rca", "f0_rmse_cents", "lsd", "rrd", "dnsmos_ovrl")
LOWER_IS_BETTER = {"wer", "cer", "f0_rmse_cents", "lsd", "rrd"}


def _to_speech_scores(entry: ManifestEntry, audio: np.ndarray, rate: int) -> tuple[dict, dict]:
    from .asr import asr_scores
    from .quality import dnsmos, speaker_similarity
    from .srmr import srmr

    scores: dict[str, float] = {}
    notes: dict[str, str] = {}
    audio = np.clip(audio, -1.0, 1.0)
    if entry.language.lower().startswith("en") and entry.text.strip():
        asr = asr_scores(audio, rate, entry.text)
        scores.update(wer=asr["wer"], cer=asr["cer"])
        notes["hypothesis"] = str(asr["hypothesis"])
    else:
        notes["wer"] = f"no English lyrics (language {entry.language!r}): pocketsphinx knows en-us only"
    mos = dnsmos(audio, rate)
    scores.update(dnsmos_sig=mos["sig"], dnsmos_bak=mos["bak"], dnsmos_ovrl=mos["ovrl"])
    scores["srmr"] = srmr(audio, rate)
    if entry.singing is not None:
        ref, ref_rate = read_audio(entry.singing)
        scores["spk_sim"] = speaker_similarity(audio, rate, ref, ref_rate)
    return scores, notes


def _to_singing_scores(entry: ManifestEntry, audio: np.ndarray, rate: int) -> tuple[dict, dict]:
    from .quality import dnsmos
    from .to_singing_metrics import f0_rmse_cents, lsd, melody_contour, rca, rrd

    audio = np.clip(audio, -1.0, 1.0)
    times, f0 = melody_contour(melody_of(entry))
    scores = {"rca": rca(audio, rate, f0, times), "f0_rmse_cents": f0_rmse_cents(audio, rate, f0, times)}
    notes: dict[str, str] = {}
    if entry.singing is not None:
        ref, ref_rate = read_audio(entry.singing)
        if ref_rate != rate:
            from .metrics import resample

            ref = resample(ref, ref_rate, rate)
        scores["lsd"] = lsd(ref, audio, rate)
        scores["rrd"] = rrd(ref, audio, rate)
    else:
        notes["lsd"] = "no real singing in the manifest"
    scores["dnsmos_ovrl"] = dnsmos(audio, rate)["ovrl"]
    return {k: v for k, v in scores.items() if v is not None and not math.isnan(v)}, notes


@dataclass
class EvalResult:
    direction: Direction
    systems: list[str]
    metrics: tuple[str, ...]
    clips: dict[str, dict[str, dict]] = field(default_factory=dict)   # system -> id -> {"scores", "notes"}
    failures: dict[str, dict[str, str]] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        from .metrics import confidence_interval

        table: dict[str, dict[str, dict[str, float]]] = {}
        for system in self.systems:
            row = {}
            for metric in self.metrics:
                values = [c["scores"][metric] for c in self.clips.get(system, {}).values() if metric in c["scores"]]
                if values:
                    mean, half, n = confidence_interval(values)
                    row[metric] = {"mean": mean, "ci95": half, "n": n}
            table[system] = row
        return table

    def markdown(self) -> str:
        table = self.summary()
        arrows = {m: ("↓" if m in LOWER_IS_BETTER else "↑") for m in self.metrics}
        head = "| system | " + " | ".join(f"{m} {arrows[m]}" for m in self.metrics) + " |"
        lines = [head, "|" + " --- |" * (len(self.metrics) + 1)]
        for system in self.systems:
            cells = []
            for metric in self.metrics:
                cell = table[system].get(metric)
                if cell is None:
                    cells.append("–")
                else:
                    half = "" if math.isnan(cell["ci95"]) else f" ± {cell['ci95']:.3f}"
                    cells.append(f"{cell['mean']:.3f}{half} (n={cell['n']})")
            lines.append(f"| {system} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _clip_dir(out: Path) -> Path:
    return out.with_name(out.stem + "_clips")


def _eval_one(args: tuple[str, ManifestEntry, str, dict]) -> tuple[str, str, dict | None, str | None]:
    system_name, entry, clip_dir, options = args
    system = get_system(system_name)
    folder = Path(clip_dir) / system_name
    record_path = folder / f"{entry.id}.json"
    if record_path.exists():
        return system_name, entry.id, json.loads(record_path.read_text()), None
    try:
        audio, rate = system.run(entry, options)
        folder.mkdir(parents=True, exist_ok=True)
        write_audio(folder / f"{entry.id}.wav", np.clip(audio, -1.0, 1.0), rate)
        score = _to_speech_scores if system.direction is Direction.TO_SPEECH else _to_singing_scores
        scores, notes = score(entry, audio, rate)
        record = {"scores": scores, "notes": notes, "seconds": audio.shape[0] / rate}
        tmp = record_path.with_name(f".{record_path.name}.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, record_path)
        return system_name, entry.id, record, None
    except (EngineError, ValueError, OSError, ImportError) as exc:
        return system_name, entry.id, None, str(exc).splitlines()[0]


def evaluate(systems: list[str], manifest: str | Path, out: str | Path, *, split: str = "test",
             limit: int | None = None, workers: int = 1, model: str | None = None,
             progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Run and score ``systems`` on ``split`` of ``manifest``; see the module docstring."""
    chosen = [get_system(s) for s in systems]
    directions = {s.direction for s in chosen}
    if len(directions) != 1:
        mixed = ", ".join(f"{s.name}: to {s.direction.value}" for s in chosen)
        raise ConfigError(f"systems={','.join(systems)!r} mixes directions ({mixed}); "
                          "evaluate singing->speech and speech->singing systems separately")
    direction = directions.pop()
    entries = [e for e in read_manifest(manifest) if split == "all" or e.split == split]
    if not entries:
        raise ConfigError(f"{manifest}: no entries in split {split!r}")
    if limit is not None:
        entries = entries[:limit]
    out = Path(out)
    clip_dir = _clip_dir(out)
    result = EvalResult(direction, [s.name for s in chosen],
                        TO_SPEECH_METRICS if direction is Direction.TO_SPEECH else TO_SINGING_METRICS)
    jobs = []
    for system in chosen:
        for entry in entries:
            missing = [n for n in system.needs if not getattr(entry, n)]
            if missing:
                result.failures.setdefault(system.name, {})[entry.id] = f"entry has no {', '.join(missing)}"
                continue
            jobs.append((system.name, entry, str(clip_dir), {"model": model}))
    total, done = len(jobs), 0
    if progress is not None:
        progress(0, total)
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers)
        results = pool.map(_eval_one, jobs)
    else:
        results = map(_eval_one, jobs)
    for name, entry_id, record, problem in results:
        if record is not None:
            result.clips.setdefault(name, {})[entry_id] = record
        else:
            result.failures.setdefault(name, {})[entry_id] = problem or "failed"
        done += 1
        if progress is not None:
            progress(done, total)
    _write(result, out, manifest, split)
    return result


def _write(result: EvalResult, out: Path, manifest: str | Path, split: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    failures = {s: len(f) for s, f in result.failures.items() if f}
    text = [f"# voxflip eval: {result.direction.source} -> {result.direction.value} on {Path(manifest).name} "
            f"({split})", "", result.markdown(), ""]
    if failures:
        text.append("Clips not scored: " + ", ".join(f"{s} {n}" for s, n in failures.items()) + ".")
    out.write_text("\n".join(text) + "\n")
    out.with_suffix(".json").write_text(json.dumps(
        {"direction": result.direction.value, "manifest": str(manifest), "split": split, "summary": result.summary(),
         "failures": result.failures}, indent=2) + "\n")

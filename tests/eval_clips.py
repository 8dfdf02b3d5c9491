"""A tiny evaluation made by hand, for the plot and listening-page tests: no converter runs.

``make_eval(root, direction)`` writes short sine/noise WAVs (singing, speech, and each system's
output in ``<root>/report_clips/<system>/<id>.wav``) and returns the ``EvalResult`` the runner
would have returned, the manifest entries and the clip folder. ``sys-b`` produced no output
for the second clip (the runner recorded why), so pages and figures must say "not produced".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from voxflip.engine.direction import Direction
from voxflip.trainer.data.manifest import ManifestEntry, NoteSpan
from voxflip.trainer.eval.runner import TO_SINGING_METRICS, TO_SPEECH_METRICS, EvalResult

SAMPLE_RATE = 16_000
SYSTEMS = ["sys-a", "sys-b"]
TRICKY_TEXT = 'Tom & Jerry say "hi" <b>bold</b> it\'s $5 & 3 < 4'
MISSING = ("sys-b", "ja-1")
FAILURE = "converter crashed: <boom> & \"quoted\""


def tone(f0_hz: float | list[float], seconds: float, *, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A voiced-ish tone: a few harmonics on ``f0_hz`` (one value, or a glide between the values), plus noise."""
    n = round(seconds * SAMPLE_RATE)
    glide = np.interp(np.linspace(0, 1, n), np.linspace(0, 1, np.size(f0_hz)), np.atleast_1d(f0_hz))
    phase = 2 * np.pi * np.cumsum(glide) / SAMPLE_RATE
    audio = sum(0.3 / k * np.sin(k * phase) for k in range(1, 5))
    audio = audio + noise * np.random.default_rng(seed).standard_normal(n)
    return (0.8 * audio / np.max(np.abs(audio))).astype(np.float32)


def _scores(direction: Direction, k: int) -> dict[str, float]:
    if direction is Direction.TO_SPEECH:
        return {"cer": 0.1 + 0.05 * k, "wer": 0.2 + 0.1 * k, "dnsmos_ovrl": 2.5 + 0.1 * k, "duration_ratio": 1.1}
    return {"rca": 0.8 - 0.05 * k, "f0_rmse_cents": 40.0 + 5 * k, "dnsmos_ovrl": 2.8}


def make_eval(root: Path, direction: Direction) -> tuple[EvalResult, list[ManifestEntry], Path]:
    root.mkdir(parents=True, exist_ok=True)
    notes = [NoteSpan(0.1, 0.45, 57), NoteSpan(0.45, 0.8, 60), NoteSpan(0.8, 1.1, 62)]
    entries = []
    for k, (entry_id, language, text) in enumerate([("en-1", "en", TRICKY_TEXT), ("ja-1", "ja", "こんにちは <世界>"),
                                                    ("en-2", "en", "plain words")]):
        sf.write(root / f"{entry_id}_sing.wav", tone([220.0, 262.0, 294.0], 1.2, seed=k), SAMPLE_RATE)
        sf.write(root / f"{entry_id}_speech.flac", tone([180.0, 140.0], 0.9, noise=0.02, seed=k), SAMPLE_RATE)
        entries.append(ManifestEntry(id=entry_id, text=text, singing=root / f"{entry_id}_sing.wav",
                                     speech=root / f"{entry_id}_speech.flac", split="test", language=language,
                                     notes=notes if k != 2 else None))
    clip_dir = root / "report_clips"
    metrics = TO_SPEECH_METRICS if direction is Direction.TO_SPEECH else TO_SINGING_METRICS
    result = EvalResult(direction, list(SYSTEMS), metrics)
    result.languages = {e.id: e.language for e in entries}
    for s, system in enumerate(SYSTEMS):
        for k, entry in enumerate(entries):
            if (system, entry.id) == MISSING:
                result.failures.setdefault(system, {})[entry.id] = FAILURE
                continue
            folder = clip_dir / system
            folder.mkdir(parents=True, exist_ok=True)
            f0 = [160.0, 150.0] if direction is Direction.TO_SPEECH else [220.0, 262.0, 294.0]
            sf.write(folder / f"{entry.id}.wav", tone(f0, 1.0 + 0.1 * s, noise=0.01, seed=10 + k), SAMPLE_RATE)
            record = {"scores": _scores(direction, k + s), "notes": {"hypothesis": f"heard <{entry.id}> & more"},
                      "seconds": 1.0 + 0.1 * s, "language": entry.language}
            result.clips.setdefault(system, {})[entry.id] = record
    return result, entries, clip_dir

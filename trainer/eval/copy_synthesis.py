"""Vocoder copy synthesis on real recordings: ``voxflip eval-vocoder --manifest M --vocoder NAME=DIR ...``.

Every recording of the manifest (its real speech and its real singing) is analysed the way the flow
converters analyse (16 kHz log-mel and YIN F0 on the 10 ms grid) and synthesised again from those
frames by each vocoder: ``dsp`` (the DSP mel vocoder), ``dsp-flow`` (the same on frames of the shipped
flow model's mel window, what the flow converters give it), any exported neural vocoder (``NAME=DIR``,
analysed with its own mel setup),
and, as the references, ``pyworld`` (a textbook pyworld analysis and synthesis, nothing changed) and ``clip`` (the
recording itself at 16 kHz). Each output is scored against the recording:

- ``cer``: Whisper CER of the lyric (the recogniser that reads singing, in the entry's language);
- ``lsd``: log-spectral distance to the recording, in dB (the AlignSTS metric, frames truncated);
- ``f0_rmse``: RMS F0 error in cents over the frames both call voiced (Praat), and ``vuv``: the
  fraction of frames whose voicing differs;
- ``dnsmos``: DNSMOS overall;
- ``spk_sim``: speaker similarity (resemblyzer) to the recording.

Results are cached per clip (``<out>_clips/<vocoder>/<side>/<id>.json`` and ``.wav``) so a second
run only scores what is new; the summary has means with 95 % intervals, per side and per language.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from voxflip.engine.audio_io import read_audio
from voxflip.engine.audio_write import write_audio
from voxflip.engine.errors import ConfigError, EngineError

from ..data.manifest import ManifestEntry, read_manifest
from .metrics import confidence_interval

SIDES = ("speech", "singing")
REFERENCES = ("clip", "pyworld", "dsp", "dsp-flow")
METRICS = ("cer", "lsd", "f0_rmse", "vuv", "dnsmos", "spk_sim")
#: every output is scored at the flow converters' rate
RATE = 16_000


def _analyse(path: Path, mel=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The recording at the mel setup's rate, its log-mel frames and YIN F0 (the converters' features,
    frame 0 at sample 0); ``mel`` defaults to the flow converters' (16 kHz)."""
    from voxflip.engine.features.mel import MelAnalyzer, MelConfig
    from voxflip.engine.features.pitch import estimate_f0

    from ..data.features import _resample

    mel = mel or MelConfig.for_to_speech()
    audio, rate = read_audio(path)
    x = _resample(np.asarray(audio, np.float32), rate, mel.sample_rate).astype(np.float64)
    log_mel = MelAnalyzer(mel).log_mel(x)
    f0 = estimate_f0(x, mel.sample_rate, mel.hop_samples)
    n = min(log_mel.shape[0], f0.shape[0], x.shape[0] // mel.hop_samples)
    return x.astype(np.float32), log_mel[:n].astype(np.float32), f0[:n]


def synthesise(vocoder: str, path: str | None, recording: Path) -> tuple[np.ndarray, int]:
    """``recording`` through ``vocoder`` (``clip``, ``pyworld``, ``dsp`` or a neural export at ``path``), at 16 kHz."""
    from ..data.features import _resample

    x, log_mel, f0 = _analyse(recording)
    if vocoder == "clip":
        return x, RATE
    if vocoder == "pyworld":
        import pyworld

        xd = x.astype(np.float64)
        f0w, t = pyworld.harvest(xd, RATE, frame_period=5.0)
        sp = pyworld.cheaptrick(xd, f0w, t, RATE)
        ap = pyworld.d4c(xd, f0w, t, RATE)
        return pyworld.synthesize(f0w, sp, ap, RATE, 5.0).astype(np.float32)[: x.shape[0]], RATE
    if vocoder in ("dsp", "dsp-flow"):   # dsp-flow: on the frames the shipped flow model reads (its mel window)
        from voxflip.engine.features.mel import MelConfig
        from voxflip.engine.vocoder.mel_vocoder import MelVocoder, MelVocoderConfig

        from .systems import _flow_mel

        mel = _flow_mel(None) if vocoder == "dsp-flow" else MelConfig.for_to_speech()
        if vocoder == "dsp-flow":
            _, log_mel, f0 = _analyse(recording, mel)
        return np.asarray(MelVocoder(MelVocoderConfig(mel=mel))(log_mel, f0), np.float32), RATE
    from voxflip.engine.features.mel import MelConfig
    from voxflip.engine.vocoder.neural import NeuralVocoder

    neural = NeuralVocoder(path)
    if neural.mel != MelConfig.for_to_speech():   # another setup (24 kHz, another window) reads its own frames;
        _, log_mel, f0 = _analyse(recording, neural.mel)   # scored at 16 kHz like the rest
        out = neural(log_mel, f0)
        return _resample(np.asarray(out, np.float32), neural.mel.sample_rate, RATE).astype(np.float32), RATE
    return np.asarray(neural(log_mel, f0), np.float32), RATE


def _f0_scores(reference: np.ndarray, estimate: np.ndarray, rate: int) -> tuple[float, float]:
    from .speech_likeness import praat_f0

    a, b = praat_f0(reference, rate), praat_f0(estimate, rate)
    n = min(a.shape[0], b.shape[0])
    a, b = a[:n], b[:n]
    both = (a > 0) & (b > 0)
    vuv = float(np.mean((a > 0) != (b > 0))) if n else float("nan")
    if not both.any():
        return float("nan"), vuv
    cents = 1200.0 * np.log2(b[both] / a[both])
    return float(np.sqrt(np.mean(cents**2))), vuv


def score(entry: ManifestEntry, side: str, audio: np.ndarray, rate: int, reference: np.ndarray,
          asr: str) -> dict[str, float | str]:
    from .quality import dnsmos, speaker_similarity
    from .runner import _asr_scores
    from .to_singing_metrics import lsd

    audio = np.clip(audio, -1.0, 1.0)
    scores, notes = _asr_scores(entry, audio, rate, asr)
    f0_rmse, vuv = _f0_scores(reference, audio, rate)
    n = min(reference.shape[0], audio.shape[0])
    try:
        similarity = speaker_similarity(audio, rate, reference, rate)
    except (EngineError, ValueError):     # nothing voice-like left in the output: no embedding
        similarity = float("nan")
    return {"cer": scores.get("cer", float("nan")), "hypothesis": notes.get("hypothesis", ""),
            "lsd": lsd(reference[:n], audio[:n], rate, length="truncate"), "f0_rmse": f0_rmse, "vuv": vuv,
            "dnsmos": dnsmos(audio, rate)["ovrl"], "spk_sim": similarity}


def _one(job: tuple[str, str | None, ManifestEntry, str, str, str]) -> tuple[str, str, str, dict | None, str | None]:
    vocoder, path, entry, side, folder, asr = job
    record_path = Path(folder) / vocoder / side / f"{entry.id}.json"
    if record_path.is_file():
        return vocoder, side, entry.id, json.loads(record_path.read_text()), None
    try:
        recording = getattr(entry, side)
        audio, rate = synthesise(vocoder, path, recording)
        reference, _, _ = _analyse(recording)
        record = score(entry, side, audio, rate, reference, asr)
        record["language"] = entry.language
        record_path.parent.mkdir(parents=True, exist_ok=True)
        write_audio(record_path.with_suffix(".wav"), np.clip(audio, -1.0, 1.0), rate)
        tmp = record_path.with_name(f".{record_path.name}.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, record_path)
        return vocoder, side, entry.id, record, None
    except (EngineError, ValueError, OSError) as exc:
        return vocoder, side, entry.id, None, str(exc).splitlines()[0]


def _summary(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if not finite:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    mean, half, n = confidence_interval(finite)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def evaluate_vocoders(manifest: str | Path, vocoders: dict[str, str | None], out: str | Path, *,
                      sides: tuple[str, ...] = SIDES, workers: int = 1, asr: str = "whisper-base",
                      limit: int | None = None, progress=None) -> dict:
    """Copy synthesis of every recording by every vocoder; writes ``out`` (.json) and a Markdown table beside it."""
    entries = read_manifest(manifest)[:limit]
    for name in vocoders:
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"vocoder name {name!r} must be letters, digits, '-' or '_'")
    out = Path(out)
    folder = out.with_name(out.stem + "_clips")
    jobs = [(name, path, e, side, str(folder), asr) for name, path in vocoders.items() for side in sides
            for e in entries if getattr(e, side) is not None]
    records: dict[str, dict[str, dict[str, dict]]] = {}
    failures: dict[str, str] = {}
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers)
        results = pool.map(_one, jobs)
    else:
        pool, results = None, map(_one, jobs)
    for i, (name, side, entry_id, record, problem) in enumerate(results):
        if record is None:
            failures[f"{name}/{side}/{entry_id}"] = problem or "failed"
        else:
            records.setdefault(name, {}).setdefault(side, {})[entry_id] = record
        if progress is not None:
            progress(i + 1, len(jobs))
    if pool is not None:
        pool.shutdown()
    summary: dict = {}
    for name, by_side in records.items():
        for side, clips in by_side.items():
            cell = summary.setdefault(name, {}).setdefault(side, {})
            for metric in METRICS:
                cell[metric] = _summary([r[metric] for r in clips.values()])
            languages = sorted({r["language"] for r in clips.values()})
            cell["languages"] = {lang: {m: _summary([r[m] for r in clips.values() if r["language"] == lang])["mean"]
                                        for m in METRICS} for lang in languages}
    report = {"manifest": str(manifest), "asr": asr, "vocoders": {k: v for k, v in vocoders.items()},
              "summary": summary, "failures": failures,
              "clips": {n: {s: {i: {m: r[m] for m in (*METRICS, "hypothesis")} for i, r in c.items()}
                            for s, c in bs.items()} for n, bs in records.items()}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(format_table(report))
    return report


def _fmt(c: dict[str, float], digits: int = 3) -> str:
    """``mean [low, high]`` of a summary cell (the 95 % interval), ``-`` where nothing was measured."""
    if not math.isfinite(c["mean"]):
        return "-"
    mean, low, high = (0.0 if abs(c[k]) < 1e-9 else c[k] for k in ("mean", "low", "high"))   # no "-0.0"
    if not math.isfinite(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def format_table(report: dict) -> str:
    lines = []
    for side in SIDES:
        rows = [(n, s[side]) for n, s in report["summary"].items() if side in s]
        if not rows:
            continue
        lines += [f"### Copy synthesis of the real {side}", "",
                  "| vocoder | Whisper CER | LSD dB | F0 RMSE cents | V/UV error | DNSMOS | speaker sim. | clips |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, cell in rows:
            lines.append(f"| {name} | {_fmt(cell['cer'])} | {_fmt(cell['lsd'], 1)} | {_fmt(cell['f0_rmse'], 0)} | "
                         f"{_fmt(cell['vuv'])} | {_fmt(cell['dnsmos'], 2)} | {_fmt(cell['spk_sim'])} | "
                         f"{cell['cer']['n']} |")
        lines.append("")
        langs = sorted({lang for _, c in rows for lang in c["languages"]})
        lines += ["Whisper CER per language:", "", "| vocoder | " + " | ".join(langs) + " |",
                  "| --- |" + " --- |" * len(langs)]
        for name, cell in rows:
            lines.append(f"| {name} | " + " | ".join(f"{cell['languages'].get(lang, {}).get('cer', float('nan')):.3f}"
                                                    for lang in langs) + " |")
        lines.append("")
    return "\n".join(lines)

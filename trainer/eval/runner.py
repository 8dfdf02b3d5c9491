"""`voxflip eval`: run systems over a manifest split, score every clip, tabulate like the papers.

Per clip and system the converted audio is written to ``<out>_clips/<system>/<id>.wav``
and its scores to ``<id>.json`` next to it, so an interrupted evaluation resumes where it
stopped. The report has one row per system and one column per metric: the mean with a
95% confidence interval and ``n`` (clips scored), as markdown and JSON.

Singing -> speech metrics (on the output, against the lyrics and the paired real speech):
CER and WER of the recogniser (``asr``: Whisper base by default, in the entry's language; a
clip's rate is capped at 1 when averaging, as a looping recogniser can insert without end),
speech-likeness (held pitch, duration ratio and F0 offset against the paired real speech:
:mod:`.speech_likeness`), DNSMOS (SIG, BAK, OVRL), SRMR, and speaker similarity to the
paired real speech (to the input singing where the entry has no speech). Speech -> singing
metrics: the recogniser's CER and WER of the lyric; RCA and F0 RMSE against the notes the
converter sang (the manifest's, else transcribed from the real singing); ``rca_sung`` against
the real singing's F0 contour; LSD, RRD and speaker similarity against the real singing;
DNSMOS OVRL. A metric that cannot be computed for a clip (WER for a language
written without spaces, WER of pocketsphinx outside English) is left out of that clip's row
and says why.

Every table is given overall and per language (the entries' ``language``), with the CER of
each system paired per clip against the baseline (:data:`BASELINE`).
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxflip.engine.audio_io import read_audio
from voxflip.engine.audio_write import write_audio
from voxflip.engine.errors import ConfigError, EngineError
from voxflip.engine.registry import Direction

from ..data.manifest import ManifestEntry, read_manifest
from .systems import get_system, has_melody, melody_of
from .whisper import DEFAULT_ASR

TO_SPEECH_METRICS = ("cer", "wer", "held_pitch", "duration_ratio", "f0_offset_st", "dnsmos_ovrl", "dnsmos_sig",
                     "dnsmos_bak", "srmr", "spk_sim")
TO_SINGING_METRICS = ("cer", "wer", "rca", "rca_sung", "f0_rmse_cents", "lsd", "rrd", "dnsmos_ovrl", "spk_sim")
LOWER_IS_BETTER = {"wer", "cer", "f0_rmse_cents", "lsd", "rrd", "held_pitch"}
#: metrics whose best value is a target, not an extreme
TARGET = {"duration_ratio": 1.0, "f0_offset_st": 0.0}
SPLIT_AUTO = "auto"


#: the most readings ``--asr-draws`` may ask for per clip
MAX_ASR_DRAWS = 16


def dithered(audio: np.ndarray, draw: int, key: str) -> np.ndarray:
    """``audio`` plus triangular dither of one 16-bit step (96 dB down), seeded by ``draw`` and ``key``;
    draw 0 is ``audio`` itself."""
    if draw == 0:
        return audio
    rng = np.random.default_rng([draw, zlib.crc32(key.encode())])
    noise = (rng.random(audio.shape[0]) - rng.random(audio.shape[0])) / 32768.0
    return np.clip(audio + noise.astype(audio.dtype), -1.0, 1.0)


def _asr_scores(entry: ManifestEntry, audio: np.ndarray, rate: int, asr: str, draws: int = 1) -> tuple[dict, dict]:
    """CER and WER of one clip; with ``draws`` > 1 their mean over the clip and ``draws - 1`` dithered
    copies of it (:func:`dithered`), since a recogniser can read a clip two ways on a difference far
    below hearing (docs/metrics.md)."""
    from .asr import asr_scores, capped, score_transcript

    scores: dict[str, float] = {}
    notes: dict[str, str] = {"asr": asr}
    if not entry.text.strip():
        notes["cer"] = "the entry has no text"
        return scores, notes
    if asr == "pocketsphinx" and not entry.language.lower().startswith("en"):
        notes["cer"] = f"pocketsphinx knows en-us only; this entry is {entry.language!r}"
        return scores, notes
    readings: list[dict[str, float]] = []
    for draw in range(draws):
        x = dithered(audio, draw, entry.id)
        if asr == "pocketsphinx":
            result = asr_scores(x, rate, entry.text)
            hypothesis = str(result.pop("hypothesis"))
        else:
            from .whisper import transcribe

            hypothesis = transcribe(x, rate, language=entry.language, asr=asr)
            result = score_transcript(entry.text, hypothesis, entry.language)
        if draw == 0:
            notes["hypothesis"] = hypothesis
        readings.append({k: float(v) for k, v in result.items()})
    for metric in readings[0]:
        values = [r[metric] for r in readings]
        if max(values) > 1.0:
            notes[f"{metric}_uncapped"] = " ".join(f"{v:.3f}" for v in values)
        scores[metric] = float(np.mean([capped(v) for v in values]))
        if draws > 1:
            notes[f"{metric}_draws"] = " ".join(f"{capped(v):.3f}" for v in values)
    if "wer" not in scores:
        notes["wer"] = f"not computed for {entry.language!r}: written without spaces between words"
    return scores, notes


def _to_speech_scores(entry: ManifestEntry, audio: np.ndarray, rate: int, asr: str,
                      draws: int = 1) -> tuple[dict, dict]:
    from .quality import dnsmos, speaker_similarity
    from .speech_likeness import speech_likeness
    from .srmr import srmr

    audio = np.clip(audio, -1.0, 1.0)
    scores, notes = _asr_scores(entry, audio, rate, asr, draws)
    speech = read_audio(entry.speech) if entry.speech is not None else None
    likeness = speech_likeness(audio, rate, *(speech or (None, None)))
    scores.update({k: v for k, v in likeness.items() if not math.isnan(v)})
    mos = dnsmos(audio, rate)
    scores.update(dnsmos_sig=mos["sig"], dnsmos_bak=mos["bak"], dnsmos_ovrl=mos["ovrl"])
    scores["srmr"] = srmr(audio, rate)
    reference = speech if speech is not None else (read_audio(entry.singing) if entry.singing is not None else None)
    if reference is not None:
        scores["spk_sim"] = speaker_similarity(audio, rate, *reference)
        notes["spk_sim"] = "to the paired real speech" if speech is not None else "to the input singing (no speech)"
    return scores, notes


def _to_singing_scores(entry: ManifestEntry, audio: np.ndarray, rate: int, asr: str,
                       draws: int = 1) -> tuple[dict, dict]:
    from .quality import dnsmos, speaker_similarity
    from .to_singing_metrics import f0_rmse_cents, lsd, melody_contour, praat_f0, rca, rrd

    audio = np.clip(audio, -1.0, 1.0)
    scores, notes = _asr_scores(entry, audio, rate, asr, draws)
    times, f0 = melody_contour(melody_of(entry))
    notes["melody"] = "the manifest's notes" if entry.notes else "notes transcribed from the real singing"
    scores.update(rca=rca(audio, rate, f0, times), f0_rmse_cents=f0_rmse_cents(audio, rate, f0, times))
    if entry.singing is not None:
        ref, ref_rate = read_audio(entry.singing)
        sung_times, sung_f0 = praat_f0(ref, ref_rate)
        if np.any(sung_f0 > 0):
            scores["rca_sung"] = rca(audio, rate, sung_f0, sung_times)
        scores["spk_sim"] = speaker_similarity(audio, rate, ref, ref_rate)
        if ref_rate != rate:
            from .metrics import resample

            ref = resample(ref, ref_rate, rate)
        scores["lsd"] = lsd(ref, audio, rate)
        scores["rrd"] = rrd(ref, audio, rate)
    else:
        notes["lsd"] = "no real singing in the manifest"
    scores["dnsmos_ovrl"] = dnsmos(audio, rate)["ovrl"]
    return scores, notes


@dataclass
class EvalResult:
    direction: Direction
    systems: list[str]
    metrics: tuple[str, ...]
    clips: dict[str, dict[str, dict]] = field(default_factory=dict)   # system -> id -> {"scores", "notes"}
    failures: dict[str, dict[str, str]] = field(default_factory=dict)
    languages: dict[str, str] = field(default_factory=dict)            # entry id -> language

    def summary(self, language: str | None = None) -> dict[str, dict[str, dict[str, float]]]:
        """Per system and metric: mean, 95% interval half-width and n, over all clips or one language's."""
        from .metrics import confidence_interval

        table: dict[str, dict[str, dict[str, float]]] = {}
        for system in self.systems:
            row = {}
            clips = {i: c for i, c in self.clips.get(system, {}).items()
                     if language is None or self.languages.get(i) == language}
            for metric in self.metrics:
                values = [c["scores"][metric] for c in clips.values() if metric in c["scores"]]
                if values:
                    mean, half, n = confidence_interval(values)
                    row[metric] = {"mean": mean, "ci95": half, "n": n}
            table[system] = row
        return table

    def paired(self, metric: str, baseline: str, language: str | None = None) -> dict[str, dict[str, float]]:
        """Per system: the mean over clips of (system - baseline) in ``metric``, its 95% interval and n.

        Only clips both scored count, so a clip's own difficulty (a hard text, a lyric that does
        not match the recording) cancels out.
        """
        from .metrics import confidence_interval

        base = self.clips.get(baseline, {})
        out = {}
        for system in self.systems:
            if system == baseline:
                continue
            diffs = [c["scores"][metric] - base[i]["scores"][metric] for i, c in self.clips.get(system, {}).items()
                     if i in base and metric in c["scores"] and metric in base[i]["scores"]
                     and (language is None or self.languages.get(i) == language)]
            if diffs:
                mean, half, n = confidence_interval(diffs)
                out[system] = {"mean": mean, "ci95": half, "n": n}
        return out

    def by_language(self) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        return {language: self.summary(language) for language in sorted(set(self.languages.values()))}

    def markdown(self, language: str | None = None) -> str:
        table = self.summary(language)
        arrows = {m: (f"→{TARGET[m]:g}" if m in TARGET else "↓" if m in LOWER_IS_BETTER else "↑")
                  for m in self.metrics}
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


#: the row other systems are paired against: the input singing (to speech), the real singing (to singing)
BASELINE = {Direction.TO_SPEECH: "input", Direction.TO_SINGING: "sts-real"}


def _cell(cell: dict[str, float] | None) -> str:
    if cell is None:
        return "–"
    half = "" if math.isnan(cell["ci95"]) else f" ± {cell['ci95']:.3f}"
    return f"{cell['mean']:+.3f}{half} (n={cell['n']})"


def clip_dir_of(out: str | Path) -> Path:
    """Where the converted clips of the report ``out`` are kept."""
    out = Path(out)
    return out.with_name(out.stem + "_clips")


def _eval_one(args: tuple[str, ManifestEntry, str, dict]) -> tuple[str, str, dict | None, str | None]:
    """Convert and score one clip; the audio and the record are cached, the scores redone for another ruler."""
    system_name, entry, clip_dir, options = args
    system = get_system(system_name)
    folder = Path(clip_dir) / system_name
    record_path = folder / f"{entry.id}.json"
    wav = folder / f"{entry.id}.wav"
    asr = options.get("asr", DEFAULT_ASR)
    draws = int(options.get("asr_draws", 1))
    record = json.loads(record_path.read_text()) if record_path.exists() else None
    if record is not None and record.get("asr", asr) == asr and record.get("asr_draws", 1) == draws:
        return system_name, entry.id, record, None
    try:
        if record is not None and wav.exists():    # scored with another recogniser: score the same audio again
            audio, rate = read_audio(wav)
        else:
            audio, rate = system.run(entry, options)
            folder.mkdir(parents=True, exist_ok=True)
            write_audio(wav, np.clip(audio, -1.0, 1.0), rate)
        score = _to_speech_scores if system.direction is Direction.TO_SPEECH else _to_singing_scores
        scores, notes = score(entry, audio, rate, asr, draws)
        record = {"scores": scores, "notes": notes, "seconds": audio.shape[0] / rate, "asr": asr,
                  "language": entry.language, **({"asr_draws": draws} if draws > 1 else {})}
        tmp = record_path.with_name(f".{record_path.name}.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, record_path)
        return system_name, entry.id, record, None
    except (EngineError, ValueError, OSError, ImportError) as exc:
        return system_name, entry.id, None, str(exc).splitlines()[0]


def evaluate(systems: list[str], manifest: str | Path, out: str | Path, *, split: str = SPLIT_AUTO,
             limit: int | None = None, workers: int = 1, model: str | None = None, asr: str = DEFAULT_ASR,
             progress: Callable[[int, int], None] | None = None,
             vocoders: dict[str, str] | None = None, alignsts: dict[str, str] | None = None,
             asr_draws: int = 1, content_model: str | None = None) -> EvalResult:
    """Run and score ``systems`` on ``split`` of ``manifest``; see the module docstring.

    Args:
        split: ``train``, ``valid``, ``test``, ``all``, or ``auto``: the test split where the
            manifest has one, else all of it (a set of real pairs such as dev-data has no splits).
        asr: the recogniser: a name of :data:`voxflip.trainer.eval.whisper.ASR_NAMES`, a
            CTranslate2 Whisper folder, or a hub model name.
        asr_draws: readings per clip (1..:data:`MAX_ASR_DRAWS`): CER and WER are their mean over the
            clip and ``asr_draws - 1`` copies dithered 96 dB down (:func:`_asr_scores`).
        content_model: the exported content student the ``student:`` systems read the speech with.
    """
    if isinstance(asr_draws, bool) or not isinstance(asr_draws, int) or not 1 <= asr_draws <= MAX_ASR_DRAWS:
        raise ConfigError(f"--asr-draws {asr_draws!r} must be a whole number in 1..{MAX_ASR_DRAWS}")
    chosen = [get_system(s) for s in systems]
    directions = {s.direction for s in chosen}
    if len(directions) != 1:
        mixed = ", ".join(f"{s.name}: to {s.direction.value}" for s in chosen)
        raise ConfigError(f"systems={','.join(systems)!r} mixes directions ({mixed}); "
                          "evaluate singing->speech and speech->singing systems separately")
    direction = directions.pop()
    everything = read_manifest(manifest)
    if split == SPLIT_AUTO:
        split = "test" if any(e.split == "test" for e in everything) else "all"
    entries = [e for e in everything if split == "all" or e.split == split]
    if not entries:
        raise ConfigError(f"{manifest}: no entries in split {split!r}")
    if limit is not None:
        entries = entries[:limit]
    out = Path(out)
    clip_dir = clip_dir_of(out)
    result = EvalResult(direction, [s.name for s in chosen],
                        TO_SPEECH_METRICS if direction is Direction.TO_SPEECH else TO_SINGING_METRICS)
    jobs = []
    for system in chosen:
        for entry in entries:
            missing = [n for n in system.needs if not (has_melody(entry) if n == "melody" else getattr(entry, n))]
            if missing:
                result.failures.setdefault(system.name, {})[entry.id] = f"entry has no {', '.join(missing)}"
                continue
            jobs.append((system.name, entry, str(clip_dir),
                         {"model": model, "asr": asr, "asr_draws": asr_draws, "manifest_dir": str(Path(manifest).parent),
                          "vocoders": dict(vocoders or {}), "alignsts_models": dict(alignsts or {}),
                          "content_model": content_model}))
    result.languages = {entry.id: entry.language for entry in entries}
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
    baseline = BASELINE[result.direction]
    if baseline in result.systems:
        text += [f"Paired against `{baseline}` (system minus {baseline}, per clip; CER):", "",
                 "| system | overall | " + " | ".join(sorted(set(result.languages.values()))) + " |",
                 "|" + " --- |" * (2 + len(set(result.languages.values())))]
        overall = result.paired("cer", baseline)
        per_language = {lang: result.paired("cer", baseline, lang) for lang in sorted(set(result.languages.values()))}
        for system in result.systems:
            if system in overall:
                cells = [_cell(overall[system])] + [_cell(per_language[lang].get(system)) for lang in per_language]
                text.append(f"| {system} | " + " | ".join(cells) + " |")
        text.append("")
    languages = sorted(set(result.languages.values()))
    if len(languages) > 1:
        for language in languages:
            count = sum(1 for lang in result.languages.values() if lang == language)
            text += [f"## {language} ({count} clips)", "", result.markdown(language), ""]
    if failures:
        text.append("Clips not scored: " + ", ".join(f"{s} {n}" for s, n in failures.items()) + ".")
    out.write_text("\n".join(text) + "\n")
    out.with_suffix(".json").write_text(json.dumps(
        {"direction": result.direction.value, "manifest": str(manifest), "split": split, "summary": result.summary(),
         "by_language": result.by_language(),
         "paired_cer": {"baseline": BASELINE[result.direction], "overall": result.paired("cer", BASELINE[result.direction]),
                        "by_language": {lang: result.paired("cer", BASELINE[result.direction], lang)
                                        for lang in sorted(set(result.languages.values()))}},
         "failures": result.failures}, indent=2) + "\n")

"""`voxflip corpus features`: compute and cache per-frame features for a manifest.

The features are the engine's own (one implementation for training and
inference): log-mel (:class:`~voxflip.engine.features.mel.MelAnalyzer`), F0
(:func:`~voxflip.engine.features.pitch.estimate_f0` on the mel frame grid),
frame energy and the AlignSTS rhythm representation, and, where the manifest
has phone timings, a phone index per frame.

The cache lives in ``<cache_dir>/<key>/`` where ``key`` hashes the feature
configuration (mel setup, pitch setup, the rhythm beta, a format version): a
configuration change computes into a new folder instead of mixing features.
Each entry is one ``<id>.npz`` written atomically, so an interrupted run
resumes where it stopped. ``phones.json`` holds the phone inventory (index ->
phone) the labels refer to; it is built from the whole manifest first.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from voxflip.engine.audio_io import read_audio
from voxflip.engine.errors import ConfigError, EngineError
from voxflip.engine.features.mel import MelAnalyzer, MelConfig
from voxflip.engine.features.pitch import PitchConfig, estimate_f0
from voxflip.engine.features.rhythm import DEFAULT_BETA, rhythm

from .manifest import ManifestEntry, PhoneSpan, read_manifest

FORMAT_VERSION = 1
#: frame setups by the direction of the model they feed
PRESETS = {"to_speech": MelConfig.for_to_speech, "to_singing": MelConfig.for_to_singing}
#: older names, still read (configs and commands written before the directions were renamed)
PRESET_ALIASES = {"s2s": "to_speech", "sts": "to_singing"}


@dataclass(frozen=True)
class FeatureConfig:
    mel: MelConfig = field(default_factory=MelConfig.for_to_speech)
    pitch: PitchConfig = field(default_factory=PitchConfig)
    rhythm_beta: float = DEFAULT_BETA

    @classmethod
    def preset(cls, name: str, *, mel_window: int | None = None) -> FeatureConfig:
        """The features of a model direction; ``mel_window`` (samples) replaces its mel window."""
        name = PRESET_ALIASES.get(name, name)
        if name not in PRESETS:
            raise ConfigError(f"feature preset {name!r} is not one of {', '.join(PRESETS)}")
        mel = PRESETS[name]()
        return cls(mel=mel if mel_window is None else replace(mel, win_samples=mel_window))

    def to_json(self) -> dict:
        return {"version": FORMAT_VERSION, "mel": asdict(self.mel), "pitch": asdict(self.pitch),
                "rhythm_beta": self.rhythm_beta}

    @property
    def key(self) -> str:
        text = json.dumps(self.to_json(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def phone_inventory(entries: list[ManifestEntry]) -> list[str]:
    """Every phone in the manifest, sorted (index 0 is the first), for frame labels."""
    phones: set[str] = set()
    for e in entries:
        for spans in (e.singing_phones, e.speech_phones):
            if spans:
                phones.update(p.phone for p in spans)
    return sorted(phones)


def frame_labels(spans: list[PhoneSpan] | None, frames: int, frame_s: float, index: dict[str, int]) -> np.ndarray:
    """Phone index of each frame (by the frame centre), -1 where no phone covers it or none is known."""
    labels = np.full(frames, -1, dtype=np.int16)
    if not spans:
        return labels
    centres = np.arange(frames) * frame_s
    for span in spans:
        sel = (centres >= span.start_s) & (centres < span.end_s)
        labels[sel] = index[span.phone]
    return labels


def _resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(audio, target // g, rate // g).astype(np.float32)


def side_features(audio: np.ndarray, rate: int, config: FeatureConfig) -> dict[str, np.ndarray]:
    """Features of one recording: mel (T, n_mels), f0_hz, energy, rhythm (T,)."""
    mel_cfg = config.mel
    x = _resample(audio, rate, mel_cfg.sample_rate)
    analyzer = MelAnalyzer(mel_cfg)
    mel = analyzer.log_mel(x).astype(np.float32)
    energy = analyzer.energy(x).astype(np.float32)
    f0 = estimate_f0(x, mel_cfg.sample_rate, mel_cfg.hop_samples, config.pitch).astype(np.float32)
    n = min(mel.shape[0], f0.shape[0])
    return {"mel": mel[:n], "f0_hz": f0[:n], "energy": energy[:n],
            "rhythm": rhythm(energy[:n], beta=config.rhythm_beta).astype(np.float32)}


def _compute(args: tuple[ManifestEntry, FeatureConfig, str, dict[str, int]]) -> tuple[str, str | None]:
    entry, config, out_dir, index = args
    target = Path(out_dir) / f"{entry.id}.npz"
    try:
        arrays: dict[str, np.ndarray] = {}
        for side, path, spans in (("singing", entry.singing, entry.singing_phones),
                                  ("speech", entry.speech, entry.speech_phones)):
            if path is None:
                continue
            audio, rate = read_audio(path)
            feats = side_features(audio, rate, config)
            feats["phones"] = frame_labels(spans, feats["mel"].shape[0], config.mel.frame_s, index)
            arrays.update({f"{side}_{k}": v for k, v in feats.items()})
        tmp = target.with_name(f".{target.name}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, target)
        return entry.id, None
    except (EngineError, OSError, ValueError) as exc:
        return entry.id, str(exc).splitlines()[0]


@dataclass
class FeatureReport:
    folder: Path
    computed: int = 0
    cached: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def compute_features(
    manifest: str | os.PathLike[str],
    *,
    config: FeatureConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureReport:
    """Compute (or reuse) features for every entry of ``manifest``; see the module docstring."""
    config = config or FeatureConfig()
    entries = read_manifest(manifest)
    root = Path(cache_dir) if cache_dir is not None else Path(manifest).resolve().parent / "features"
    folder = root / config.key
    folder.mkdir(parents=True, exist_ok=True)
    inventory = phone_inventory(entries)
    (folder / "config.json").write_text(json.dumps(config.to_json(), indent=2, sort_keys=True) + "\n")
    (folder / "phones.json").write_text(json.dumps(inventory) + "\n")
    index = {p: i for i, p in enumerate(inventory)}
    report = FeatureReport(folder=folder)
    todo = []
    for entry in entries:
        if (folder / f"{entry.id}.npz").exists():
            report.cached += 1
        else:
            todo.append((entry, config, str(folder), index))
    total = len(entries)
    done = report.cached
    if progress is not None:
        progress(done, total)
    if workers < 1:
        raise ConfigError(f"workers={workers!r} must be >= 1")
    results = map(_compute, todo) if workers == 1 else ProcessPoolExecutor(workers).map(_compute, todo, chunksize=4)
    for entry_id, problem in results:
        if problem is None:
            report.computed += 1
        else:
            report.failed[entry_id] = problem
        done += 1
        if progress is not None:
            progress(done, total)
    return report


def load_features(folder: str | os.PathLike[str], entry_id: str) -> dict[str, np.ndarray]:
    """The cached arrays of one entry (``singing_mel``, ``speech_f0_hz``, ...)."""
    with np.load(Path(folder) / f"{entry_id}.npz") as data:
        return {k: data[k] for k in data.files}

"""Pairs of cached singing/speech features, batched deterministically (so a resumed run repeats exactly)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from voxflip.engine.errors import ConfigError

from .data.features import FeatureConfig, compute_features, load_features
from .data.manifest import ManifestEntry, read_manifest

log = logging.getLogger(__name__)


@dataclass
class Item:
    id: str
    sing_mel: np.ndarray     # (T_si, 80)
    speech_mel: np.ndarray   # (T_sp, 80)
    sing_phones: np.ndarray  # (T_si,) int, -1 = no label
    speech_phones: np.ndarray


@dataclass
class PairData:
    train: list[Item]
    valid: list[Item]
    phones: list[str]
    skipped: dict[str, int]

    def mel_stats(self) -> tuple[np.ndarray, np.ndarray]:
        frames = np.concatenate([np.concatenate([i.sing_mel, i.speech_mel]) for i in self.train])
        return frames.mean(axis=0), frames.std(axis=0)


def load_pairs(manifest: Path, *, preset: str = "to_speech", cache_dir: str | None = None, max_frames: int = 800,
               min_frames: int = 20, workers: int = 1, mel_window: int | None = None) -> PairData:
    """Features for every usable pair of the manifest (computing missing ones), split into train/valid.

    ``mel_window`` replaces the preset's mel window (samples; a flow model's ``model.mel_window``).
    """
    entries: list[ManifestEntry] = read_manifest(manifest)
    report = compute_features(manifest, config=FeatureConfig.preset(preset, mel_window=mel_window),
                              cache_dir=cache_dir or None, workers=workers)
    phones = json.loads((report.folder / "phones.json").read_text())
    skipped = {"no pair": 0, "features failed": len(report.failed), "too long": 0, "too short": 0}
    train: list[Item] = []
    valid: list[Item] = []
    for entry in entries:
        if entry.singing is None or entry.speech is None:
            skipped["no pair"] += 1
            continue
        if entry.id in report.failed:
            continue
        f = load_features(report.folder, entry.id)
        n_si, n_sp = f["singing_mel"].shape[0], f["speech_mel"].shape[0]
        if max(n_si, n_sp) > max_frames:
            skipped["too long"] += 1
            continue
        if min(n_si, n_sp) < min_frames:
            skipped["too short"] += 1
            continue
        item = Item(entry.id, f["singing_mel"], f["speech_mel"], f["singing_phones"], f["speech_phones"])
        (valid if entry.split == "valid" else train if entry.split == "train" else []).append(item)
    if not train:
        raise ConfigError(f"{manifest}: no usable training pairs (skipped: {skipped})")
    if any(skipped.values()):
        log.warning("training data: skipped %s", ", ".join(f"{v} {k}" for k, v in skipped.items() if v))
    return PairData(train, valid, phones, skipped)


def collate(items: list[Item]) -> dict[str, torch.Tensor]:
    b = len(items)
    t_si = max(i.sing_mel.shape[0] for i in items)
    t_sp = max(i.speech_mel.shape[0] for i in items)
    n_mels = items[0].sing_mel.shape[1]
    batch = {
        "sing_mel": torch.zeros(b, n_mels, t_si), "speech_mel": torch.zeros(b, n_mels, t_sp),
        "sing_len": torch.zeros(b, dtype=torch.long), "speech_len": torch.zeros(b, dtype=torch.long),
        "sing_phones": torch.full((b, t_si), -1, dtype=torch.long),
        "speech_phones": torch.full((b, t_sp), -1, dtype=torch.long),
    }
    for k, item in enumerate(items):
        n, m = item.sing_mel.shape[0], item.speech_mel.shape[0]
        batch["sing_mel"][k, :, :n] = torch.from_numpy(item.sing_mel.T.copy())
        batch["speech_mel"][k, :, :m] = torch.from_numpy(item.speech_mel.T.copy())
        batch["sing_len"][k], batch["speech_len"][k] = n, m
        batch["sing_phones"][k, :n] = torch.from_numpy(item.sing_phones.astype(np.int64))
        batch["speech_phones"][k, :m] = torch.from_numpy(item.speech_phones.astype(np.int64))
    return batch


class BatchOrder:
    """Which items make batch ``k`` of epoch ``e``: a seeded permutation per epoch, sharded by rank."""

    def __init__(self, n_items: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.rank, self.world = n_items, batch_size, seed, rank, world
        self.per_epoch = max(1, n_items // (batch_size * world))

    def batch(self, epoch: int, index: int) -> list[int]:
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        start = (index * self.world + self.rank) * self.batch_size
        picked = order[start : start + self.batch_size]
        if picked.size < self.batch_size:  # fewer items than a batch: wrap around
            picked = np.resize(order, self.batch_size) if self.n < self.batch_size else picked
        return picked.tolist()

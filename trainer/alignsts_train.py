"""`voxflip train-alignsts CONFIG --run-dir DIR`: train the AlignSTS speech -> singing model.

Data (``[data]``): a manifest of speech/singing pairs. Each row gives
- the target: the singing's log-mel (the ``to_singing`` features: 24 kHz, hop 128), its F0
  (the engine's YIN, quantised to 256 classes by the model) and its rhythm (eq. 3);
- the content: Whisper encoder states (:mod:`.data.content`) of the **speech**
  (``mode = "paired"``, the paper's main model), or of the **singing** itself
  (``mode = "zeroshot"``: self-supervised on singing alone, the paper's section 4.4; rows
  without speech are used too);
- the timbre: the mel of the recording the content came from.

Losses (:class:`~.models.alignsts.AlignSTS`): MAE and SSIM on the decoder's clean-mel
prediction, the VQ commitment, the rhythm predictor's cross entropy and the guided attention
loss; the ``fs2`` decoder adds a least-squares GAN loss of the multi-window discriminator
(``train.adv_weight``, from ``train.adversarial_from`` steps on).

Runs resume exactly: the batch order is a seeded permutation per epoch and every random
generator's state is in the checkpoint (a test compares 4 straight steps with 2 + 2).
Checkpoints, TensorBoard curves and the resolved ``config.toml`` go to the run folder as
``voxflip train``'s do; under ``torchrun`` every process takes its share of a batch.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from voxflip.engine.converters.alignsts_model import MODEL_KIND, f0_classes
from voxflip.engine.errors import ConfigError

from .config import _build, read_tables
from .data.content import CONTENT_DIM, cached_states
from .data.features import FeatureConfig, compute_features, load_features
from .data.manifest import read_manifest
from .dataset import BatchOrder
from .models.alignsts import AlignSTS, AlignSTSConfig, MultiWindowDiscriminator
from .models.sts_baselines import build_model
from .train import (
    _prune,
    _save,
    finish_run,
    latest_checkpoint,
    optimiser_step,
    read_checkpoint,
    rng_states,
    run_outputs,
    set_rng_states,
    start_run,
)

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1
MODES = ("paired", "zeroshot")


@dataclass(frozen=True)
class AlignSTSDataConfig:
    manifest: str = ""
    mode: str = "paired"
    cache_dir: str = ""           # default: features/ and content_features/ next to the manifest
    max_frames: int = 1700        # target (singing) frames, 9 s
    min_frames: int = 60
    valid_items: int = 8          # rows kept out for validation when the manifest marks none
    max_items: int = 0            # 0: every row

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"data.mode={self.mode!r} must be one of {', '.join(MODES)}")
        if not 1 <= self.min_frames <= self.max_frames:
            raise ConfigError(f"data.min_frames={self.min_frames} and max_frames={self.max_frames} must satisfy "
                              "1 <= min_frames <= max_frames")


@dataclass(frozen=True)
class AlignSTSTrainConfig:
    seed: int = 0
    batch_size: int = 8
    max_steps: int = 200_000      # the paper's
    lr: float = 2e-4
    warmup_steps: int = 1000
    grad_clip: float = 1.0
    adv_weight: float = 0.05      # fs2 decoder only
    adversarial_from: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 50
    valid_every: int = 500
    threads: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_steps < 1:
            raise ConfigError("train.batch_size and train.max_steps must be >= 1")
        if not self.lr > 0:
            raise ConfigError(f"train.lr={self.lr} must be > 0")


@dataclass(frozen=True)
class AlignSTSRunConfig:
    data: AlignSTSDataConfig
    model: AlignSTSConfig
    train: AlignSTSTrainConfig
    base_dir: str = "."

    def manifest_path(self) -> Path:
        return (Path(self.base_dir) / self.data.manifest).resolve()

    def to_toml(self) -> str:
        import tomli_w

        data = replace(self.data, manifest=str(self.manifest_path()))
        return tomli_w.dumps({"data": dataclasses.asdict(data), "model": self.model.to_dict(),
                              "train": dataclasses.asdict(self.train)})


def load_alignsts_config(path: str | Path | None, overrides: list[str] | None = None) -> AlignSTSRunConfig:
    """A TOML file with ``[data]``, ``[model]`` (:class:`AlignSTSConfig` fields) and ``[train]``; ``--set`` overrides."""
    raw, base = read_tables(path, overrides, ("data", "model", "train"), {"data": ("manifest", "cache_dir")})
    return AlignSTSRunConfig(data=_build("data", AlignSTSDataConfig, raw.get("data", {})),
                             model=_build("model", AlignSTSConfig, raw.get("model", {})),
                             train=_build("train", AlignSTSTrainConfig, raw.get("train", {})), base_dir=base)


# -- data -----------------------------------------------------------------------------------------
@dataclass
class Utterance:
    id: str
    content: np.ndarray      # (N, 512) float16
    f0_bins: np.ndarray      # (T,) int
    rhythm: np.ndarray       # (T,)
    mel: np.ndarray          # (T, n_mels) target singing
    timbre_mel: np.ndarray   # (M, n_mels) of the content's recording


def load_utterances(config: AlignSTSRunConfig, progress: bool = True) -> tuple[list[Utterance], list[Utterance]]:
    """(train, valid) utterances of the manifest (rows with ``split`` != train, else the last ``valid_items``, validate)."""
    dc, mc = config.data, config.model
    manifest = config.manifest_path()
    if not manifest.is_file():
        raise ConfigError(f"data.manifest {str(manifest)!r} does not exist (paths are relative to the config file)")
    entries = read_manifest(manifest)
    if dc.max_items:
        entries = entries[: dc.max_items]
    need_speech = dc.mode == "paired"
    entries = [e for e in entries if e.singing is not None and (e.speech is not None or not need_speech)]
    if not entries:
        raise ConfigError(f"{manifest}: no rows with {'speech and singing' if need_speech else 'singing'}")
    root = Path(dc.cache_dir) if dc.cache_dir else manifest.parent
    report = compute_features(manifest, config=FeatureConfig.preset("to_singing"), cache_dir=root / "features")
    held = {e.id for e in entries if e.split != "train"}
    if not held and dc.valid_items:
        held = {e.id for e in entries[-dc.valid_items :]}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(entries), desc="alignsts features", unit="row", file=sys.stderr,
                   mininterval=0.1 if sys.stderr.isatty() else 30.0)
    train, valid = [], []
    skipped = {"features failed": 0, "too long": 0, "too short": 0}
    for e in entries:
        if bar is not None:
            bar.update(1)
        if e.id in report.failed:
            skipped["features failed"] += 1
            continue
        f = load_features(report.folder, e.id)
        t = f["singing_mel"].shape[0]
        if t > dc.max_frames:
            skipped["too long"] += 1
            continue
        if t < dc.min_frames:
            skipped["too short"] += 1
            continue
        side = "speech" if need_speech else "singing"
        content = cached_states(getattr(e, side), root / "content_features").astype(np.float16)
        utt = Utterance(e.id, content, f0_classes(f["singing_f0_hz"], mc.pitch_bins, mc.f0_min_hz, mc.f0_max_hz),
                        f["singing_rhythm"].astype(np.float32), f["singing_mel"], f[f"{side}_mel"])
        (valid if e.id in held else train).append(utt)
    if bar is not None:
        bar.close()
    if any(skipped.values()):
        log.warning("alignsts data: skipped %s", ", ".join(f"{v} {k}" for k, v in skipped.items() if v))
    if not train:
        raise ConfigError(f"{manifest}: no usable training rows (skipped: {skipped})")
    return train, valid


def collate(items: list[Utterance]) -> dict[str, torch.Tensor]:
    b = len(items)
    t = max(u.mel.shape[0] for u in items)
    n = max(u.content.shape[0] for u in items)
    m = max(u.timbre_mel.shape[0] for u in items)
    n_mels = items[0].mel.shape[1]
    batch = {"content": torch.zeros(b, CONTENT_DIM, n), "content_len": torch.zeros(b, dtype=torch.long),
             "f0_bins": torch.zeros(b, t, dtype=torch.long), "rhythm": torch.zeros(b, t),
             "mel": torch.zeros(b, n_mels, t), "mel_len": torch.zeros(b, dtype=torch.long),
             "timbre_mel": torch.zeros(b, n_mels, m), "timbre_len": torch.zeros(b, dtype=torch.long)}
    for k, u in enumerate(items):
        tt, nn_, mm = u.mel.shape[0], u.content.shape[0], u.timbre_mel.shape[0]
        batch["content"][k, :, :nn_] = torch.from_numpy(u.content.T.astype(np.float32))
        batch["content_len"][k] = nn_
        batch["f0_bins"][k, :tt] = torch.from_numpy(u.f0_bins.astype(np.int64))
        batch["rhythm"][k, :tt] = torch.from_numpy(u.rhythm)
        batch["mel"][k, :, :tt] = torch.from_numpy(np.ascontiguousarray(u.mel.T))
        batch["mel_len"][k] = tt
        batch["timbre_mel"][k, :, :mm] = torch.from_numpy(np.ascontiguousarray(u.timbre_mel.T))
        batch["timbre_len"][k] = mm
    return batch


def data_stats(items: list[Utterance]) -> tuple[np.ndarray, ...]:
    mels = np.concatenate([np.concatenate([u.mel, u.timbre_mel]) for u in items])
    content = np.concatenate([u.content.astype(np.float32) for u in items])
    return mels.mean(0), mels.std(0), content.mean(0), content.std(0)


# -- the loop -------------------------------------------------------------------------------------
_SCALARS = ("loss", "mae", "ssim", "commit", "rhythm_ce", "rhythm_acc", "guided")


def _valid_scores(model: AlignSTS, valid: list[Utterance], batch_size: int) -> dict[str, float]:
    model.eval()
    scores: dict[str, list[float]] = {}
    state = torch.get_rng_state()
    torch.manual_seed(0)      # the diffusion step and noise of validation are the same at every check
    with torch.no_grad():
        for i in range(0, len(valid), batch_size):
            out = model(**collate(valid[i : i + batch_size]))
            for key in (k for k in _SCALARS if k in out):
                scores.setdefault(key, []).append(float(out[key]))
    torch.set_rng_state(state)
    model.train()
    return {k: float(np.mean(v)) for k, v in scores.items()}


def train_alignsts(config: AlignSTSRunConfig, run_dir: str | Path, *, resume: bool = True, progress: bool = True,
                   stop_after: int | None = None) -> Path:
    """Train until ``train.max_steps`` (or ``stop_after`` more steps); returns the last checkpoint."""
    run_dir = Path(run_dir)
    tc, cfg = config.train, config.model
    text = config.to_toml()
    rank, world, (train, valid) = start_run(run_dir, text, tc.threads,
                                            lambda rank: load_utterances(config, progress=progress and rank == 0))

    random.seed(tc.seed)
    np.random.seed(tc.seed)
    torch.manual_seed(tc.seed)
    model = build_model(cfg)
    model.set_stats(*data_stats(train))
    opt = torch.optim.AdamW(model.parameters(), tc.lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0)
    adversarial = cfg.decoder == "fs2" and tc.adv_weight > 0
    disc = MultiWindowDiscriminator(cfg.n_mels) if adversarial else None
    opt_d = torch.optim.AdamW(disc.parameters(), tc.lr, betas=(0.9, 0.98)) if disc is not None else None
    per_rank = tc.batch_size // world if world > 1 else tc.batch_size
    order = BatchOrder(len(train), max(1, per_rank), tc.seed, rank, world)
    step, epoch, index = 0, 0, 0
    last = latest_checkpoint(run_dir) if resume else None
    if last is not None:
        payload = read_checkpoint(last, needs=("model", "optimizer", "step", "epoch", "index", "rng", "model_config"))
        if AlignSTSConfig.from_dict(payload["model_config"], f"checkpoint {last}") != cfg:
            raise ConfigError(f"checkpoint {str(last)!r} is of another [model]; pass --no-resume to start over, "
                              "or another --run-dir")
        model.load_state_dict(payload["model"])
        opt.load_state_dict(payload["optimizer"])
        if disc is not None:
            disc.load_state_dict(payload["discriminator"])
            opt_d.load_state_dict(payload["opt_d"])
        step, epoch, index = int(payload["step"]), int(payload["epoch"]), int(payload["index"])
        set_rng_states(payload["rng"], last)
        if rank == 0:
            log.info("resumed from %s (step %d)", last, step)
    wrapped: torch.nn.Module = model
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    writer, bar = run_outputs(run_dir, rank, progress, tc.max_steps, step, "training alignsts")
    target = tc.max_steps if stop_after is None else min(tc.max_steps, step + stop_after)
    checkpoint = last
    started = time.perf_counter()
    model.train()
    while step < target:
        batch = collate([train[i] for i in order.batch(epoch, index)])
        index += 1
        if index >= order.per_epoch:
            epoch, index = epoch + 1, 0
        lr = tc.lr * min(1.0, (step + 1) / max(1, tc.warmup_steps))
        for o in (opt, opt_d):
            for group in (o.param_groups if o is not None else []):
                group["lr"] = lr
        out = wrapped(**batch)
        loss = out["loss"]
        scalars = {k: float(out[k].detach()) for k in _SCALARS if k in out}
        if disc is not None and step >= tc.adversarial_from:
            starts = disc.draw(batch["mel_len"])
            real_scores = disc(out["target"], starts)
            fake_scores = disc(out["pred"].detach(), starts)
            loss_d = sum(((1 - r) ** 2).mean() + (f**2).mean() for r, f in zip(real_scores, fake_scores, strict=True))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            adv = sum(((1 - s) ** 2).mean() for s in disc(out["pred"], starts))
            scalars["disc"] = float(loss_d.detach())
            loss = loss + tc.adv_weight * adv
            scalars["adv"] = float(adv.detach())
        grad = optimiser_step(opt, loss, model.parameters(), tc.grad_clip)
        step += 1
        if rank != 0:
            continue
        if bar is not None:
            bar.set_postfix(loss=f"{scalars['loss']:.3f}", mae=f"{scalars['mae']:.3f}", refresh=False)
            bar.update(1)
        if writer is not None and (step % tc.log_every == 0 or step == 1):
            for key, value in scalars.items():
                writer.add_scalar(f"train/{key}", value, step)
            writer.add_scalar("train/lr", lr, step)
            writer.add_scalar("train/grad_norm", float(grad), step)
        if writer is not None and step % tc.valid_every == 0 and valid:
            for key, value in _valid_scores(model, valid, tc.batch_size).items():
                writer.add_scalar(f"valid/{key}", value, step)
        if step % tc.checkpoint_every == 0 or step == target:
            checkpoint = run_dir / "checkpoints" / f"step_{step:08d}.pt"
            payload = {"format": CHECKPOINT_FORMAT, "kind": MODEL_KIND, "model": model.state_dict(),
                       "optimizer": opt.state_dict(), "model_config": cfg.to_dict(), "step": step, "epoch": epoch,
                       "index": index, "rng": rng_states(), "train_config": text}
            if disc is not None:
                payload.update(discriminator=disc.state_dict(), opt_d=opt_d.state_dict())
            _save(checkpoint, payload)
            _prune(run_dir, tc.keep_checkpoints)
    return finish_run(writer, bar, world, rank, step, started, checkpoint, run_dir)


def load_alignsts(path: str | Path) -> tuple[AlignSTS, dict]:
    """A trained model (eval mode) and its checkpoint's payload, read with ``weights_only=True``."""
    path = Path(path)
    payload = read_checkpoint(path)
    if payload.get("kind") != MODEL_KIND:
        raise ConfigError(f"checkpoint {str(path)!r} is not an AlignSTS checkpoint (kind={payload.get('kind')!r})")
    model = build_model(AlignSTSConfig.from_dict(payload["model_config"], f"checkpoint {path}"))
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise ConfigError(f"checkpoint {str(path)!r} does not fit its model_config: {str(exc).splitlines()[0]}") from None
    model.eval()
    return model, payload

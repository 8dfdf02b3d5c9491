"""`voxflip train-content CONFIG --run-dir DIR`: distil Whisper's encoder into a causal content student.

The teacher is what the AlignSTS models read today: Whisper base's encoder states of each
recording (:mod:`.data.content`, cached per file). The student
(:mod:`.models.content_student`) reads the engine's 16 kHz log-mel of the same recording and learns
the states standardised by the training set's statistics (mean squared error; ``1 - loss`` is the
share of the states' variance it explains, reported as ``r2``).

Each step draws ``batch_size`` random segments of ``segment_frames`` mel frames from the speech
and/or singing of the training rows. With ``data.augment`` each segment's mel is changed as a
recording chain would change it, while the target stays the clean recording's states: a gain of
+-12 dB, a smooth random equaliser (+-6 dB), a vocal-tract-length warp of the frequency axis
(factor 0.88-1.12), and a noise floor 25-60 dB under the segment's level. The synthetic corpus
has four voices; these are what keep the student from learning them instead of the words.

Validation: the manifest's held-out rows, and ``data.valid_manifest`` (real recordings, e.g.
dev-data, never trained on) per side, whole clips through the same path as the engine's
(:func:`voxflip.engine.features.content_student.student_log_mel`).

Runs resume exactly (segments and augmentation are drawn by a generator seeded with
``(seed, rank, step)``, dropout by a torch seed per step; a test compares weights), write
TensorBoard curves and checkpoints as ``voxflip train``'s do, and take their share of each batch
under ``torchrun``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from voxflip.engine.errors import ConfigError
from voxflip.engine.features.content_student import (
    STUDENT_MEL,
    content_positions,
    student_log_mel,
)
from voxflip.engine.features.mel import MelAnalyzer, band_edges_hz

from .config import _build, read_tables, recording_sides
from .data.content import cached_states
from .models.content_student import TEACHER_KIND, ContentStudent, ContentStudentConfig, teacher_index
from .train import (
    _prune,
    _save,
    finish_run,
    latest_checkpoint,
    optimiser_step,
    read_checkpoint,
    run_outputs,
    start_run,
)

log = logging.getLogger("voxflip.train_content")
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class ContentDataConfig:
    manifest: str = ""
    valid_manifest: str = ""       # real recordings scored during training, never trained on
    sides: str = "both"
    cache_dir: str = ""            # default: content_features/ next to the manifest
    segment_frames: int = 400      # mel frames per segment (4 s)
    augment: bool = True
    max_items: int = 0             # 0: every row

    def __post_init__(self) -> None:
        recording_sides(self.sides)
        if not 20 <= self.segment_frames <= 3000:
            raise ConfigError(f"data.segment_frames={self.segment_frames} must be in 20..3000")


@dataclass(frozen=True)
class ContentTrainConfig:
    seed: int = 0
    batch_size: int = 16
    max_steps: int = 3000
    lr: float = 1e-3
    warmup_steps: int = 200
    final_lr_share: float = 0.05   # the learning rate falls along a cosine to this share of lr
    grad_clip: float = 5.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 50
    valid_every: int = 500
    threads: int = 0
    init_from: str = ""            # a student checkpoint to start from (its weights and statistics)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_steps < 1:
            raise ConfigError("train.batch_size and train.max_steps must be >= 1")
        if not 0 < self.lr <= 1e-1 or not 0 <= self.final_lr_share <= 1:
            raise ConfigError(f"train.lr={self.lr} must be in (0, 0.1] and train.final_lr_share in 0..1")

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        done = min(1.0, (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps))
        return float(self.lr * (self.final_lr_share + (1 - self.final_lr_share) * 0.5 * (1 + np.cos(np.pi * done))))


@dataclass(frozen=True)
class ContentRunConfig:
    data: ContentDataConfig
    model: ContentStudentConfig
    train: ContentTrainConfig
    base_dir: str = "."

    def path(self, value: str) -> Path:
        return (Path(self.base_dir) / value).resolve()


def load_content_config(path: str | Path | None, overrides: list[str] | None = None) -> ContentRunConfig:
    """A TOML file with ``[data]``, ``[model]`` and ``[train]``; ``--set TABLE.KEY=VALUE`` overrides."""
    raw, base = read_tables(path, overrides, ("data", "model", "train"),
                            {"data": ("manifest", "valid_manifest", "cache_dir"), "train": ("init_from",)})
    model = dict(raw.get("model", {}))
    if "dilations" in model:
        model["dilations"] = tuple(model["dilations"])
    return ContentRunConfig(data=_build("data", ContentDataConfig, raw.get("data", {})),
                            model=_build("model", ContentStudentConfig, model),
                            train=_build("train", ContentTrainConfig, raw.get("train", {})), base_dir=base)


def content_config_toml(config: ContentRunConfig) -> str:
    import tomli_w

    data, train = dataclasses.asdict(config.data), dataclasses.asdict(config.train)
    for table, key in (("data", "manifest"), ("data", "valid_manifest"), ("data", "cache_dir"), ("train", "init_from")):
        values = data if table == "data" else train
        if values[key]:
            values[key] = str(config.path(values[key]))
    return tomli_w.dumps({"data": data, "model": config.model.to_dict(), "train": train})


# -- data -----------------------------------------------------------------------------------------
@dataclass
class Clip:
    name: str
    side: str
    magnitude: np.ndarray   # (frames, n_mels) mel magnitudes before the log, float32
    states: np.ndarray      # (content frames, 512) the teacher's, float16
    level: float            # the clip's RMS at 16 kHz
    audio: np.ndarray       # 16 kHz float32, for whole-clip validation (dropped from training clips)


def _clip(path: Path, side: str, cache: Path, lookahead: int) -> Clip:
    from voxflip.engine.audio_io import read_audio

    from .data.features import _resample

    audio, rate = read_audio(path)
    x = _resample(np.asarray(audio, np.float32), rate, STUDENT_MEL.sample_rate).astype(np.float32)
    log_mel = student_log_mel(x, lookahead)
    states = cached_states(path, cache).astype(np.float16)
    return Clip(path.stem, side, np.exp(log_mel).astype(np.float32), states,
                float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12)), x)


def _clips_of(manifest: Path, sides: tuple[str, ...], cache: Path, lookahead: int, max_items: int, desc: str,
              progress: bool) -> tuple[list[Clip], list[Clip]]:
    """(train rows' clips, other rows' clips) of a manifest."""
    from .data.manifest import read_manifest

    if not manifest.is_file():
        raise ConfigError(f"manifest {str(manifest)!r} does not exist (paths are relative to the config file)")
    entries = read_manifest(manifest)[: max_items or None]
    jobs = [(e.split == "train", side, Path(getattr(e, side))) for e in entries for side in sides
            if getattr(e, side, None) is not None]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=desc, unit="clip", file=sys.stderr,
                   mininterval=0.1 if sys.stderr.isatty() else 30.0)
    train, held = [], []
    for is_train, side, path in jobs:
        (train if is_train else held).append(_clip(path, side, cache, lookahead))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return train, held


def load_data(config: ContentRunConfig, progress: bool = True) -> tuple[list[Clip], list[Clip], list[Clip]]:
    """(train, held-out, real validation) clips; Whisper's states are computed once and cached."""
    dc = config.data
    manifest = config.path(dc.manifest)
    cache = config.path(dc.cache_dir) if dc.cache_dir else manifest.parent / "content_features"
    sides = recording_sides(dc.sides)
    look = config.model.lookahead
    train, held = _clips_of(manifest, sides, cache, look, dc.max_items, "content features", progress)
    train = [c for c in train if c.magnitude.shape[0] >= dc.segment_frames // 2]
    for clip in train:   # segments are drawn from the mel; only validation runs whole recordings
        clip.audio = np.zeros(0, np.float32)
    if not train:
        raise ConfigError(f"{manifest}: no training recording of at least {dc.segment_frames // 2} mel frames")
    real: list[Clip] = []
    if dc.valid_manifest:
        a, b = _clips_of(config.path(dc.valid_manifest), ("speech", "singing"), cache, look, 0,
                         "validation features", progress)
        real = a + b
    return train, held, real


class Augment:
    """What a recording chain does to a mel, drawn per segment (module docstring)."""

    def __init__(self) -> None:
        edges = band_edges_hz(STUDENT_MEL)
        self.centres = edges[1:-1]
        bank = MelAnalyzer(STUDENT_MEL)
        # the expected mel magnitude of unit-variance white noise: E|X_k| = sqrt(pi/4 * sum w^2) per bin
        self.noise_mel = (np.sqrt(np.pi / 4 * np.sum(bank.window ** 2)) * bank.filterbank.sum(axis=1)).astype(np.float32)

    def __call__(self, magnitude: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        m = magnitude.astype(np.float64)
        n = m.shape[1]
        warp = rng.uniform(0.88, 1.12)
        m = np.stack([np.interp(self.centres / warp, self.centres, row) for row in m])
        x = np.linspace(0.0, np.pi, n)
        curve_db = sum(rng.uniform(-2.0, 2.0) * np.cos(k * x + rng.uniform(0, np.pi)) for k in (1, 2, 3))
        m = m * 10.0 ** ((curve_db + rng.uniform(-12.0, 12.0)) / 20.0)[None, :]
        noise = level * 10.0 ** (rng.uniform(-60.0, -25.0) / 20.0) * self.noise_mel
        jitter = np.clip(1.0 + 0.3 * rng.standard_normal(m.shape), 0.2, None)
        return np.sqrt(m * m + (noise[None, :] * jitter) ** 2)


def draw_batch(clips: list[Clip], rng: np.random.Generator, batch: int, frames: int, lookahead: int,
               augment: Augment | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log-mel [B, 80, frames], standardised-state targets [B, 512, frames] unscaled, mask [B, frames])``.

    Targets are the raw teacher states at each frame's :func:`teacher_index`; the caller standardises."""
    lengths = np.array([c.magnitude.shape[0] for c in clips], np.float64)
    mels = np.zeros((batch, STUDENT_MEL.n_mels, frames), np.float32)
    targets = np.zeros((batch, clips[0].states.shape[1], frames), np.float32)
    mask = np.zeros((batch, frames), np.float32)
    index = teacher_index(frames + int(lengths.max()), lookahead).numpy()
    for b, i in enumerate(rng.choice(len(clips), size=batch, p=lengths / lengths.sum())):
        clip = clips[i]
        total = clip.magnitude.shape[0]
        a = int(rng.integers(0, max(1, total - frames + 1)))
        seg = clip.magnitude[a : a + frames]
        if augment is not None:
            seg = augment(seg, clip.level, rng)
        count = seg.shape[0]
        mels[b, :, :count] = np.log(np.maximum(seg, STUDENT_MEL.log_floor)).T
        mels[b, :, count:] = np.log(STUDENT_MEL.log_floor)
        k = index[a : a + count]
        ok = (k >= 0) & (k < clip.states.shape[0])
        targets[b, :, :count][:, ok] = clip.states[k[ok]].T
        mask[b, :count] = ok
    return torch.from_numpy(mels), torch.from_numpy(targets), torch.from_numpy(mask)


def data_stats(clips: list[Clip]) -> tuple[np.ndarray, ...]:
    mels = np.log(np.maximum(np.concatenate([c.magnitude for c in clips]), STUDENT_MEL.log_floor))
    states = np.concatenate([c.states.astype(np.float32) for c in clips])
    return mels.mean(0), mels.std(0) + 1e-3, states.mean(0), states.std(0) + 1e-3


@torch.no_grad()
def clip_scores(model: ContentStudent, clips: list[Clip]) -> dict[str, float]:
    """Whole clips through the engine's path: ``r2`` (the standardised states' variance explained) and the
    mean cosine of the raw states, over every content frame of the clips."""
    mean, std = model.out_mean.numpy(), model.out_std.numpy()
    err = var = cos = frames = 0.0
    for clip in clips:
        log_mel = student_log_mel(clip.audio, model.cfg.lookahead)
        out = model(torch.from_numpy(log_mel.T[None]))[0].numpy().T
        teacher = clip.states.astype(np.float32)
        pred = out[content_positions(teacher.shape[0], model.cfg.lookahead)]
        zp, zt = (pred - mean) / std, (teacher - mean) / std
        err += float(np.sum((zp - zt) ** 2))
        var += float(np.sum(zt ** 2))
        cos += float(np.sum(np.sum(pred * teacher, 1) / (np.linalg.norm(pred, axis=1) * np.linalg.norm(teacher, axis=1)
                                                         + 1e-9)))
        frames += teacher.shape[0]
    return {"r2": 1.0 - err / max(var, 1e-9), "cosine": cos / max(frames, 1.0)}


def _valid(model: ContentStudent, held: list[Clip], real: list[Clip]) -> dict[str, float]:
    model.eval()
    out = {}
    for prefix, clips in (("valid", held), ("real", real)):
        for side in ("speech", "singing"):
            chosen = [c for c in clips if c.side == side]
            if chosen:
                for key, value in clip_scores(model, chosen).items():
                    out[f"{prefix}/{side}_{key}"] = value
    model.train()
    return out


def train_content(config: ContentRunConfig, run_dir: str | Path, *, resume: bool = True, progress: bool = True,
                  stop_after: int | None = None) -> Path:
    """Train until ``train.max_steps`` (or ``stop_after`` more steps); returns the last checkpoint."""
    run_dir = Path(run_dir)
    tc, mc = config.train, config.model
    text = content_config_toml(config)
    rank, world, (train, held, real) = start_run(run_dir, text, tc.threads,
                                                 lambda rank: load_data(config, progress=progress and rank == 0))
    torch.manual_seed(tc.seed)
    model = ContentStudent(mc)
    model.set_stats(*(torch.from_numpy(v) for v in data_stats(train)))
    opt = torch.optim.AdamW(model.parameters(), tc.lr, betas=(0.9, 0.98), weight_decay=0.01)
    step = 0
    last = latest_checkpoint(run_dir) if resume else None
    if last is not None:
        payload = read_checkpoint(last, needs=("model", "opt", "step", "model_config"))
        if ContentStudentConfig.from_dict(payload["model_config"], f"checkpoint {last}") != mc:
            raise ConfigError(f"checkpoint {str(last)!r} is of another student; pass --no-resume to start over, "
                              "or another --run-dir")
        model.load_state_dict(payload["model"])
        opt.load_state_dict(payload["opt"])
        step = int(payload["step"])
        if rank == 0:
            log.info("resumed from %s (step %d)", last, step)
    elif tc.init_from:
        start, _ = load_student(config.path(tc.init_from))
        if start.cfg != mc:
            raise ConfigError(f"train.init_from {tc.init_from!r} is a student of another shape; [model] must match it")
        model.load_state_dict(start.state_dict())
        if rank == 0:
            log.info("started from %s (its weights and its statistics)", tc.init_from)
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    augment = Augment() if config.data.augment else None
    writer, bar = run_outputs(run_dir, rank, progress, tc.max_steps, step, "training content student")
    target = tc.max_steps if stop_after is None else min(tc.max_steps, step + stop_after)
    checkpoint = last
    per_rank = max(1, tc.batch_size // world)
    mean, std = model.out_mean[None, :, None], model.out_std[None, :, None]
    started = time.perf_counter()
    model.train()
    while step < target:
        rng = np.random.default_rng([tc.seed, rank, step])
        torch.manual_seed(int(rng.integers(0, 2**62)))
        mel, states, mask = draw_batch(train, rng, per_rank, config.data.segment_frames, mc.lookahead, augment)
        lr = tc.lr_at(step)
        for group in opt.param_groups:
            group["lr"] = lr
        pred = wrapped(mel, standard=True)
        z = (states - mean) / std
        loss = (((pred - z) ** 2).mean(1) * mask).sum() / mask.sum().clamp(min=1.0)
        grad = optimiser_step(opt, loss, model.parameters(), tc.grad_clip)
        step += 1
        if rank != 0:
            continue
        if bar is not None:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.update(1)
        if writer is not None and (step % tc.log_every == 0 or step == 1):
            writer.add_scalar("train/mse", loss.item(), step)
            writer.add_scalar("train/lr", lr, step)
            writer.add_scalar("train/grad_norm", float(grad), step)
        if step % tc.valid_every == 0 or step == target:
            scores = _valid(model, held, real)
            for key, value in scores.items():
                if writer is not None:
                    writer.add_scalar(key, value, step)
            if scores:
                log.info("step %d: %s", step, ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        if step % tc.checkpoint_every == 0 or step == target:
            checkpoint = run_dir / "checkpoints" / f"step_{step:08d}.pt"
            _save(checkpoint, {"format": CHECKPOINT_FORMAT, "kind": "content-student", "teacher": TEACHER_KIND,
                               "model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                               "model_config": mc.to_dict(), "train_config": text})
            _prune(run_dir, tc.keep_checkpoints)
    return finish_run(writer, bar, world, rank, step, started, checkpoint, run_dir)


def load_student(path: str | Path) -> tuple[ContentStudent, dict]:
    """A trained student (eval mode) and its checkpoint's payload."""
    payload = read_checkpoint(path, needs=("model", "model_config"))
    if payload.get("kind") != "content-student":
        raise ConfigError(f"checkpoint {str(path)!r} is not a content student's (kind {payload.get('kind')!r})")
    model = ContentStudent(ContentStudentConfig.from_dict(payload["model_config"], f"checkpoint {path}"))
    model.load_state_dict(payload["model"])
    return model.eval(), payload


"""`voxflip train CONFIG`: train the S2S flow model, resumable, logged, multi-process ready.

- Checkpoints (``run_dir/checkpoints/step_<step, 8 digits>.pt``, e.g. ``step_00004000.pt``) are written atomically every
  ``train.checkpoint_every`` steps and at the end; the newest ``keep_checkpoints`` are kept.
  They hold the model, the optimiser, the step, the position in the data order and every
  random generator's state, so a killed run resumed from its last checkpoint continues
  exactly as if it had not stopped (a test checks bit-identical weights).
- TensorBoard curves go to ``run_dir/tb``; a progress bar to stderr; the resolved
  configuration to ``run_dir/config.toml``.
- Under ``torchrun --nproc_per_node=N voxflip train ...`` every process takes its share of
  each batch (DistributedDataParallel, gloo on CPU, nccl on GPU); only rank 0 writes.
"""

from __future__ import annotations

import logging
import os
import random
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from voxflip.engine.errors import ConfigError

from .config import SHIPPED, RunConfig, to_toml, with_manifest_absolute
from .dataset import BatchOrder, PairData, collate, load_pairs
from .models.to_speech_flow import ToSpeechFlow

log = logging.getLogger(__name__)
_CKPT = re.compile(r"step_(\d{8})\.pt$")


def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def latest_checkpoint(run_dir: Path) -> Path | None:
    folder = run_dir / "checkpoints"
    found = sorted(p for p in folder.glob("step_*.pt") if _CKPT.search(p.name)) if folder.is_dir() else []
    return found[-1] if found else None


def _save(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _prune(run_dir: Path, keep: int) -> None:
    found = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    for old in found[:-keep]:
        old.unlink(missing_ok=True)


def build_model(config: RunConfig, data: PairData) -> ToSpeechFlow:
    model_cfg = replace(config.model, n_phones=max(1, len(data.phones)))
    model = ToSpeechFlow(model_cfg)
    mean, std = data.mel_stats()
    model.set_mel_stats(mean, std)
    return model


def load_checkpoint(path: str | Path) -> tuple[ToSpeechFlow, dict]:
    """A model (eval mode) and the checkpoint's payload."""
    from .models.to_speech_flow import ToSpeechFlowConfig

    payload = torch.load(path, map_location="cpu", weights_only=False)
    model = ToSpeechFlow(ToSpeechFlowConfig(**payload["model_config"]))
    model.load_state_dict(payload["model"])
    model.eval()
    model.flow.refresh_inverse()
    return model, payload


def _init_weights(model: ToSpeechFlow, path: Path, rank: int, keep_fresh: list[str]) -> None:
    """``train.init_from``: a checkpoint (``.pt``) or an export (``model.manifest.json``/``.onnx``).

    An export lacks what inference never runs (the phone predictor, one unused projection per
    coupling network): those keep this run's own seeded initialisation, as do the parts named
    in ``keep_fresh`` (``train.init_fresh``).
    """
    if path.suffix in (".json", ".onnx"):
        from .export import load_exported

        init, fresh = load_exported(path)
        if rank == 0 and fresh:
            print(f"init_from {path.name}: {len(fresh)} tensors not in the export start fresh "
                  f"({', '.join(sorted({k.rsplit('.', 1)[0] for k in fresh}))})", file=sys.stderr)
    else:
        init, _ = load_checkpoint(path)
        fresh = []
    if init.cfg.residual != model.cfg.residual and not {"flow", "prior"} <= set(keep_fresh):
        raise ConfigError(
            f"train.init_from {str(path)!r} has model.residual = {str(init.cfg.residual).lower()} and the [model] "
            f"section {str(model.cfg.residual).lower()}: its flow and prior model another quantity; set "
            f"model.residual = {str(init.cfg.residual).lower()}, or start them fresh (train.init_fresh = \"flow,prior\")")
    mine = model.state_dict()
    weights = {k: v for k, v in init.state_dict().items()
               if k not in fresh and k.split(".", 1)[0] not in keep_fresh}
    if keep_fresh and rank == 0:
        print(f"init_from {path.name}: {', '.join(keep_fresh)} start fresh (train.init_fresh)", file=sys.stderr)
    for key, value in weights.items():
        if key not in mine or mine[key].shape != value.shape:
            have = tuple(mine[key].shape) if key in mine else "no such tensor"
            raise ConfigError(f"train.init_from {str(path)!r} does not fit the [model] section: {key} is "
                              f"{tuple(value.shape)} there and {have} here; copy its model settings "
                              f"(model_config in the manifest or checkpoint)")
    model.load_state_dict(weights, strict=not (fresh or keep_fresh))


def _train_mode(model: ToSpeechFlow, trainable: str) -> None:
    """Training mode for what learns; a frozen part stays in eval mode (no dropout), as at inference."""
    if trainable == "all":
        model.train()
    else:
        model.eval()
        getattr(model, trainable).train()


def _trainable_parameters(model: ToSpeechFlow, trainable: str) -> list[torch.nn.Parameter]:
    if trainable == "all":
        return list(model.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(getattr(model, trainable).parameters())
    for p in params:
        p.requires_grad_(True)
    return params


def _valid_scores(model: ToSpeechFlow, data: PairData, batch_size: int, trainable: str) -> dict[str, float]:
    if not data.valid:
        return {}
    model.eval()
    scores: dict[str, list[float]] = {}
    with torch.no_grad():
        for i in range(0, min(len(data.valid), 4 * batch_size), batch_size):
            batch = collate(data.valid[i : i + batch_size])
            for key, value in model(**batch).items():
                scores.setdefault(key, []).append(float(value))
    _train_mode(model, trainable)
    return {key: float(np.mean(values)) for key, values in scores.items()}


def train(config: RunConfig, run_dir: str | Path, *, resume: bool = True, progress: bool = True,
          stop_after: int | None = None) -> Path:
    """Train until ``train.max_steps`` (or ``stop_after`` more steps); returns the last checkpoint."""
    run_dir = Path(run_dir)
    tc = config.train
    rank, world = _dist()
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(to_toml(with_manifest_absolute(config)))
    manifest = config.manifest_path()
    if not manifest.is_file():
        raise ConfigError(f"data.manifest {str(manifest)!r} does not exist (paths are relative to the config file)")
    if world > 1 and rank != 0:
        torch.distributed.barrier()  # rank 0 computes the features first
    data = load_pairs(manifest, preset=config.data.features, cache_dir=config.data.cache_dir or None,
                      max_frames=config.data.max_frames, min_frames=config.data.min_frames)
    if world > 1 and rank == 0:
        torch.distributed.barrier()

    random.seed(tc.seed)
    np.random.seed(tc.seed)
    torch.manual_seed(tc.seed)
    model = build_model(config, data)
    if tc.init_from:
        init_path = config.init_path()
        if not init_path.is_file():
            if tc.init_from == SHIPPED:
                raise ConfigError("train.init_from='shipped', but no flow model is shipped with this installation "
                                  f"({init_path} is missing); name a checkpoint or an export instead")
            raise ConfigError(f"train.init_from {str(init_path)!r} does not exist (paths are relative to the config file)")
        _init_weights(model, init_path, rank, tc.fresh_parts)
    optimiser = torch.optim.Adam(_trainable_parameters(model, tc.trainable), lr=tc.lr, betas=(0.9, 0.98), eps=1e-9)
    order = BatchOrder(len(data.train), tc.batch_size // world if world > 1 else tc.batch_size, tc.seed, rank, world)
    step, epoch, index = 0, 0, 0
    last = latest_checkpoint(run_dir) if resume else None
    if last is not None:
        payload = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(payload["model"])
        optimiser.load_state_dict(payload["optimizer"])
        step, epoch, index = payload["step"], payload["epoch"], payload["index"]
        torch.set_rng_state(payload["rng"]["torch"])
        np.random.set_state(payload["rng"]["numpy"])
        random.setstate(payload["rng"]["python"])
        if rank == 0:
            log.info("resumed from %s (step %d)", last, step)
    wrapped: torch.nn.Module = model
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)

    writer = None
    if rank == 0:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run_dir / "tb"))
        except ImportError:
            log.warning("tensorboard is not installed: no curves (pip install -e '.[train]')")
    bar = None
    if rank == 0 and progress:
        from tqdm import tqdm

        bar = tqdm(total=tc.max_steps, initial=step, desc="training", unit="step", file=sys.stderr,
                   mininterval=0.1 if sys.stderr.isatty() else 30.0)
    target = tc.max_steps if stop_after is None else min(tc.max_steps, step + stop_after)
    checkpoint = last
    _train_mode(model, tc.trainable)
    started = time.perf_counter()
    while step < target:
        batch = collate([data.train[i] for i in order.batch(epoch, index)])
        index += 1
        if index >= order.per_epoch:
            epoch, index = epoch + 1, 0
        lr = tc.lr * min(1.0, (step + 1) / max(1, tc.warmup_steps))
        for group in optimiser.param_groups:
            group["lr"] = lr
        out = wrapped(**batch)
        optimiser.zero_grad(set_to_none=True)
        out["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_([p for g in optimiser.param_groups for p in g["params"]],
                                                   tc.grad_clip)
        optimiser.step()
        step += 1
        if rank == 0:
            if bar is not None:
                # postfix first, without its own refresh, so a log file gets a line per 30 s, not per step
                bar.set_postfix(loss=f"{out['loss'].item():.3f}", nll=f"{out['nll'].item():.3f}", refresh=False)
                bar.update(1)
            if writer is not None and (step % tc.log_every == 0 or step == 1):
                for key, value in out.items():
                    writer.add_scalar(f"train/{key}", float(value.detach()), step)
                writer.add_scalar("train/lr", lr, step)
                writer.add_scalar("train/grad_norm", float(grad_norm), step)
            if writer is not None and step % tc.valid_every == 0:
                for key, value in _valid_scores(model, data, tc.batch_size, tc.trainable).items():
                    writer.add_scalar(f"valid/{key}", value, step)
            if step % tc.checkpoint_every == 0 or step == target:
                checkpoint = run_dir / "checkpoints" / f"step_{step:08d}.pt"
                _save(checkpoint, {
                    "model": model.state_dict(), "optimizer": optimiser.state_dict(),
                    "model_config": model.cfg.to_dict(), "phones": data.phones,
                    "step": step, "epoch": epoch, "index": index,
                    "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
                    "train_config": to_toml(with_manifest_absolute(config)),
                })
                _prune(run_dir, tc.keep_checkpoints)
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    if world > 1:
        torch.distributed.barrier()
    if rank == 0:
        log.info("trained to step %d in %.0f s", step, time.perf_counter() - started)
    return checkpoint if checkpoint is not None else run_dir

"""`voxflip train CONFIG`: train the S2S flow model, resumable, logged, multi-process ready.

- Checkpoints (``run_dir/checkpoints/step_<step, 8 digits>.pt``, e.g. ``step_00004000.pt``) are written atomically every
  ``train.checkpoint_every`` steps and at the end; the newest ``keep_checkpoints`` are kept.
  They hold the model, the optimiser, the step, the position in the data order and every
  random generator's state, so a killed run resumed from its last checkpoint continues
  exactly as if it had not stopped (a test checks bit-identical weights).
- A checkpoint holds tensors and plain values only (the configuration as a dict or TOML
  text, the random states as tensors and numbers) and is read with
  ``torch.load(weights_only=True)``: unpickling objects could run code from a file made
  elsewhere (docs/security.md). Checkpoints of an older voxflip, which pickled numpy's
  random state, are refused with one line.
- TensorBoard curves go to ``run_dir/tb``; a progress bar to stderr; the resolved
  configuration to ``run_dir/config.toml``.
- Under ``torchrun --nproc_per_node=N voxflip train ...`` every process takes its share of
  each batch (DistributedDataParallel, gloo on CPU, nccl on GPU); only rank 0 writes.
"""

from __future__ import annotations

import logging
import os
import pickle
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
#: ``payload["format"]`` of the checkpoints this voxflip writes (tensors and plain values only)
CHECKPOINT_FORMAT = 2
_RESUME_KEYS = ("model", "optimizer", "step", "epoch", "index", "rng")


def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def leave_process_group() -> None:
    """Tear down torchrun's process group, if this process joined one. Called by the CLI once training
    returns or raises: a process that exits with the gloo group still up can abort (SIGABRT) in interpreter
    finalisation, when gloo's worker threads release tensors after the interpreter has gone."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


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


def optimiser_step(optimiser: torch.optim.Optimizer, loss: torch.Tensor, parameters, clip: float) -> torch.Tensor:
    """One update of every trainer: gradients of ``loss``, their norm clipped to ``clip``, a step; returns the
    norm before clipping."""
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(parameters, clip)
    optimiser.step()
    return norm


def rng_states() -> dict:
    """Every random generator's state as tensors and plain values (what ``weights_only`` loads)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"bit_generator": str(name), "keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": None if gauss_next is None else float(gauss_next)},
    }


def set_rng_states(states: dict, path: Path) -> None:
    """Restore what :func:`rng_states` returned (read from the checkpoint ``path``)."""
    try:
        torch.set_rng_state(states["torch"])
        n = states["numpy"]
        np.random.set_state((n["bit_generator"], n["keys"].numpy().astype(np.uint32), int(n["pos"]),
                             int(n["has_gauss"]), float(n["cached_gaussian"])))
        py = states["python"]
        random.setstate((int(py["version"]), tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"]))
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise ConfigError(f"checkpoint {str(path)!r}: its random generator states (rng) are not what this voxflip "
                          f"writes ({_one_line(exc)}); resume from another checkpoint or pass --no-resume") from None


def run_outputs(run_dir: Path, rank: int, progress: bool, total: int, step: int, desc: str):
    """Rank 0's TensorBoard writer (``run_dir/tb``; None without tensorboard) and progress bar (None
    without ``progress``); other ranks get neither. A log file gets a bar line per 30 s, a terminal 10 per s."""
    writer = bar = None
    if rank != 0:
        return writer, bar
    try:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))
    except ImportError:
        log.warning("tensorboard is not installed: no curves (pip install -e '.[train]')")
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc=desc, unit="step", file=sys.stderr,
                   mininterval=0.1 if sys.stderr.isatty() else 30.0)
    return writer, bar


def start_run(run_dir: Path, config_text: str, threads: int, load):
    """What every trainer does first: join torchrun's process group (gloo on CPU, nccl on GPU), write
    ``config.toml`` (rank 0), call ``load(rank)`` with rank 0 first (it fills the feature caches the
    others then read), then set torch's threads (after loading: CTranslate2 may reset the OpenMP
    threads torch shares). Returns ``(rank, world, what load returned)``."""
    rank, world = _dist()
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(config_text)
    if world > 1 and rank != 0:
        torch.distributed.barrier()
    loaded = load(rank)
    if world > 1 and rank == 0:
        torch.distributed.barrier()
    if threads:
        torch.set_num_threads(threads)
    return rank, world, loaded


def finish_run(writer, bar, world: int, rank: int, step: int, started: float, checkpoint: Path | None,
               run_dir: Path) -> Path:
    """Close the bar and the curves, wait for every process, log the time; the last checkpoint (or the run folder)."""
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    if world > 1:
        torch.distributed.barrier()
    if rank == 0:
        log.info("trained to step %d in %.0f s", step, time.perf_counter() - started)
    return checkpoint if checkpoint is not None else run_dir


def _one_line(exc: BaseException, limit: int = 200) -> str:
    found = re.search(r"Unsupported [^.]*", str(exc))   # torch's weights_only refusal, e.g. "... GLOBAL exec was not ..."
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = found.group(0).strip() if found else (lines or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_checkpoint(path: str | Path, *, needs: tuple[str, ...] = ("model", "model_config")) -> dict:
    """A checkpoint's payload, loaded with ``torch.load(weights_only=True)``: tensors and plain values only.

    Args:
        path: a ``.pt`` file written by :func:`train`.
        needs: the keys the caller reads.

    Raises:
        ConfigError: one line -- the file holds pickled objects (it is refused unread: loading
            them could run code), it is not a torch checkpoint, or it lacks a key of ``needs``.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConfigError(
            f"checkpoint {str(path)!r} holds pickled objects, not only tensors and plain values "
            f"({_one_line(exc)}); voxflip refuses them unread, since unpickling can run code. A checkpoint "
            "of an older voxflip must be made again (voxflip train), or fine-tune from its ONNX export "
            "(train.init_from = model.manifest.json)"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise ConfigError(f"checkpoint {str(path)!r} is not a torch checkpoint this voxflip can read: "
                          f"{_one_line(exc)}") from None
    if not isinstance(payload, dict):
        raise ConfigError(f"checkpoint {str(path)!r} holds a {type(payload).__name__}, not a voxflip checkpoint "
                          "(a dict with model, model_config, ...)")
    missing = [k for k in needs if k not in payload]
    if missing:
        raise ConfigError(f"checkpoint {str(path)!r} has no {missing[0]!r}; a voxflip checkpoint has "
                          f"{', '.join(needs)} (format {CHECKPOINT_FORMAT})")
    return payload


def _load_model_state(model: torch.nn.Module, state: object, path: Path) -> None:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"checkpoint {str(path)!r}: 'model' must map parameter names to tensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"checkpoint {str(path)!r} does not fit this model: {_one_line(exc)}") from None


def build_model(config: RunConfig, data: PairData) -> ToSpeechFlow:
    model_cfg = replace(config.model, n_phones=max(1, len(data.phones)))
    model = ToSpeechFlow(model_cfg)
    mean, std = data.mel_stats()
    model.set_mel_stats(mean, std)
    return model


#: the largest value of a whole-number model setting read from a checkpoint or an export (sizes, layers)
MAX_MODEL_SETTING = 4096
#: the most parameters a model read from a checkpoint or an export may have (800 MB of float32)
MAX_MODEL_PARAMETERS = 200_000_000


def model_config_from(raw: object, where: str):
    """A ``ToSpeechFlowConfig`` from a checkpoint's or export's ``model_config`` dict, checked field by field.

    Every key must be a setting of this voxflip, of the setting's type, whole numbers within
    0..:data:`MAX_MODEL_SETTING`, and the model at most :data:`MAX_MODEL_PARAMETERS` parameters
    (counted on the meta device, before anything is allocated), so a file cannot ask for a
    model that fills memory.

    Raises:
        ConfigError: one line naming ``where``, the setting and what is allowed.
    """
    from dataclasses import fields

    from .models.to_speech_flow import ToSpeechFlowConfig

    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: model_config must be a dict of model settings, got {type(raw).__name__}")
    known = {f.name: type(f.default) for f in fields(ToSpeechFlowConfig)}
    for key, value in raw.items():
        kind = known.get(key)
        if kind is None:
            raise ConfigError(f"{where}: model_config has an unknown setting {str(key)[:40]!r}; "
                              f"settings: {', '.join(known)}")
        ok = (isinstance(value, bool) if kind is bool
              else isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_MODEL_SETTING
              if kind is int
              else isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value))
        if not ok:
            allowed = {bool: "true or false", int: f"a whole number in 0..{MAX_MODEL_SETTING}"}.get(kind, "a finite number")
            raise ConfigError(f"{where}: model_config.{key}={str(value)[:40]} must be {allowed}")
    try:
        config = ToSpeechFlowConfig(**raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: model_config does not fit this voxflip: {_one_line(exc)}") from None
    with torch.device("meta"):   # sizes only: nothing is allocated
        count = sum(p.numel() for p in ToSpeechFlow(config).parameters())
    if count > MAX_MODEL_PARAMETERS:
        raise ConfigError(f"{where}: model_config describes a model of {count} parameters; at most "
                          f"{MAX_MODEL_PARAMETERS} are allowed (the tiny and default models have about 2 million)")
    return config


def load_checkpoint(path: str | Path) -> tuple[ToSpeechFlow, dict]:
    """A model (eval mode) and the checkpoint's payload, read with ``weights_only=True``.

    Raises:
        ConfigError: one line -- a file with pickled objects, a missing or bad field, weights
            that do not fit the model its ``model_config`` describes.
    """
    path = Path(path)
    payload = read_checkpoint(path)
    model = ToSpeechFlow(model_config_from(payload["model_config"], f"checkpoint {str(path)!r}"))
    _load_model_state(model, payload["model"], path)
    model.eval()
    model.flow.refresh_inverse()
    return model, payload


def _init_weights(model: ToSpeechFlow, path: Path, rank: int, keep_fresh: list[str],
                  data: PairData | None = None) -> None:
    """``train.init_from``: a checkpoint (``.pt``) or an export (``model.manifest.json``/``.onnx``).

    An export lacks what inference never runs (the phone predictor, one unused projection per
    coupling network): those keep this run's own seeded initialisation, as do the parts named
    in ``keep_fresh`` (``train.init_fresh``). A model that reads another mel window
    (``model.mel_window``) keeps this run's mel statistics, those of the frames it will read.
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
    if init.cfg.mel_window != model.cfg.mel_window and data is not None:
        model.set_mel_stats(*data.mel_stats())
        if rank == 0:
            print(f"init_from {path.name}: its mel window is {init.cfg.mel_window} samples, this model's "
                  f"{model.cfg.mel_window}: the mel statistics are this run's data's", file=sys.stderr)


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
                      max_frames=config.data.max_frames, min_frames=config.data.min_frames,
                      mel_window=config.model.mel_window)
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
        _init_weights(model, init_path, rank, tc.fresh_parts, data)
    optimiser = torch.optim.Adam(_trainable_parameters(model, tc.trainable), lr=tc.lr, betas=(0.9, 0.98), eps=1e-9)
    order = BatchOrder(len(data.train), tc.batch_size // world if world > 1 else tc.batch_size, tc.seed, rank, world)
    step, epoch, index = 0, 0, 0
    last = latest_checkpoint(run_dir) if resume else None
    if last is not None:
        payload = read_checkpoint(last, needs=_RESUME_KEYS)
        _load_model_state(model, payload["model"], last)
        try:
            optimiser.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"checkpoint {str(last)!r}: its optimiser state does not fit this run: "
                              f"{_one_line(exc)}; pass --no-resume to start over") from None
        step, epoch, index = payload["step"], payload["epoch"], payload["index"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (step, epoch, index)):
            raise ConfigError(f"checkpoint {str(last)!r}: step, epoch and index must be whole numbers >= 0")
        set_rng_states(payload["rng"], last)
        if rank == 0:
            log.info("resumed from %s (step %d)", last, step)
    wrapped: torch.nn.Module = model
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)

    writer, bar = run_outputs(run_dir, rank, progress, tc.max_steps, step, "training")
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
        grad_norm = optimiser_step(optimiser, out["loss"], [p for g in optimiser.param_groups for p in g["params"]],
                                   tc.grad_clip)
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
                    "format": CHECKPOINT_FORMAT,
                    "model": model.state_dict(), "optimizer": optimiser.state_dict(),
                    "model_config": model.cfg.to_dict(), "phones": list(data.phones),
                    "step": step, "epoch": epoch, "index": index,
                    "rng": rng_states(),
                    "train_config": to_toml(with_manifest_absolute(config)),
                })
                _prune(run_dir, tc.keep_checkpoints)
    return finish_run(writer, bar, world, rank, step, started, checkpoint, run_dir)

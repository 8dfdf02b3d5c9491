"""`voxflip train-vocoder CONFIG --run-dir DIR`: train HiFi-GAN, Parallel WaveGAN or harmonic-plus-noise on a manifest's audio.

The vocoder learns the engine's own features: log-mel frames of its mel setup (``to_speech`` or
``to_singing``, from the generator's rate and hop) and the engine's YIN F0 (:func:`~voxflip.trainer.data.features.side_features`), cached per clip. Each step
draws ``batch_size`` random segments of ``segment_frames`` frames from the speech and/or singing
of the training rows; the target is the audio ``lookahead_frames`` hops behind the frames (what
the causal generator is to produce, see :mod:`.models.vocoder`).

Losses, from the papers (weights in ``[train]``):
- HiFi-GAN: least-squares GAN over the multi-period and multi-scale discriminators, feature
  matching (x2) and the L1 distance of log-mel spectrograms (x45);
- Parallel WaveGAN: multi-resolution STFT loss (spectral convergence + log magnitude at three
  resolutions) plus the least-squares GAN loss (x4) of its dilated-convolution discriminator;
- harmonic-plus-noise (``hn``): the multi-resolution STFT loss and the log-mel L1, as DDSP trains
  on spectral losses alone; HiFi-GAN's discriminators join if ``adv_weight`` is set above 0.
Both can start without the discriminator (``adversarial_from`` steps of spectral losses only), as
Parallel WaveGAN's recipe does; on a CPU most of a short run is spent there.

Runs resume exactly: segments are drawn by a generator seeded with ``(seed, rank, step)``, so a
resumed run draws what the uninterrupted one would have (a test compares weights). Checkpoints,
TensorBoard curves (``tb/``) and the resolved ``config.toml`` go to the run folder as
``voxflip train``'s do, and under ``torchrun`` every process trains on its own segments
(DistributedDataParallel; rank 0 writes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from voxflip.engine.errors import ConfigError
from voxflip.engine.features.mel import MelConfig, mel_filterbank

from .config import _build, read_tables, recording_sides
from .models.vocoder import VARIANTS, VocoderConfig, build_discriminator, build_generator
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

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class VocoderDataConfig:
    manifest: str = ""
    sides: str = "both"            # which recordings of each row to learn from
    cache_dir: str = ""            # default: vocoder_features/ next to the manifest
    segment_frames: int = 32       # frames per training segment (32 = 0.32 s)
    valid_items: int = 4           # rows kept out for validation when the manifest marks none
    max_items: int = 0             # 0: every row

    def __post_init__(self) -> None:
        recording_sides(self.sides)
        if not 8 <= self.segment_frames <= 400:
            raise ConfigError(f"data.segment_frames={self.segment_frames} must be in 8..400")


@dataclass(frozen=True)
class VocoderTrainConfig:
    seed: int = 0
    batch_size: int = 8
    max_steps: int = 20_000
    lr: float = 2e-4               # both papers' generator rate (HiFi-GAN's discriminator too)
    lr_decay: float = 0.98         # per 1000 steps (HiFi-GAN decays 0.999 per epoch)
    adversarial_from: int = 0      # steps of spectral losses only before the discriminator joins
    mel_weight: float = -1.0       # -1: the kind's paper value (HiFi-GAN 45, PWG 0, hn 1)
    stft_weight: float = -1.0      # -1: the kind's paper value (HiFi-GAN 0, PWG 1, hn 1)
    fm_weight: float = -1.0        # -1: HiFi-GAN 2, PWG 0, hn 2
    adv_weight: float = -1.0       # -1: HiFi-GAN 1, PWG 4, hn 0 (DDSP trains on spectral losses alone)
    disc_channels_div: int = 4     # discriminator channels / this (1: the papers')
    mel_jitter: float = 0.0        # std (nats) of noise added to the input log-mel, per frame and band:
                                   # a model's frames carry such errors, a recording's do not
    grad_clip: float = 10.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 50
    valid_every: int = 500
    threads: int = 0               # torch threads (0: torch's default)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_steps < 1:
            raise ConfigError("train.batch_size and train.max_steps must be >= 1")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"train.lr_decay={self.lr_decay} must be in (0, 1]")
        if not 0.0 <= self.mel_jitter <= 2.0:
            raise ConfigError(f"train.mel_jitter={self.mel_jitter} must be in 0..2 (nats)")
        if self.disc_channels_div not in (1, 2, 4, 8, 16):
            raise ConfigError(f"train.disc_channels_div={self.disc_channels_div} must be 1, 2, 4, 8 or 16")

    def weights(self, kind: str) -> dict[str, float]:
        paper = {"hifigan": {"mel": 45.0, "stft": 0.0, "fm": 2.0, "adv": 1.0},
                 "pwg": {"mel": 0.0, "stft": 1.0, "fm": 0.0, "adv": 4.0},
                 "hn": {"mel": 1.0, "stft": 1.0, "fm": 2.0, "adv": 0.0}}[kind]
        mine = {"mel": self.mel_weight, "stft": self.stft_weight, "fm": self.fm_weight, "adv": self.adv_weight}
        return {k: (paper[k] if v < 0 else v) for k, v in mine.items()}


@dataclass(frozen=True)
class VocoderRunConfig:
    data: VocoderDataConfig
    model: VocoderConfig
    train: VocoderTrainConfig
    preset: str
    base_dir: str = "."

    def manifest_path(self) -> Path:
        return (Path(self.base_dir) / self.data.manifest).resolve()


def load_vocoder_config(path: str | Path | None, overrides: list[str] | None = None) -> VocoderRunConfig:
    """A TOML file with ``[data]``, ``[model]`` (``preset`` = a name of ``VARIANTS``, plus any generator
    field to change) and ``[train]``; ``--set TABLE.KEY=VALUE`` overrides."""
    raw, base = read_tables(path, overrides, ("data", "model", "train"), {"data": ("manifest", "cache_dir")})
    model = dict(raw.get("model", {}))
    preset = model.pop("preset", "hifigan-v3")
    if preset not in VARIANTS:
        raise ConfigError(f"model.preset={preset!r} must be one of {', '.join(VARIANTS)}")
    cfg = VARIANTS[preset]
    names = {f.name for f in fields(VocoderConfig)}
    bad = sorted(set(model) - names)
    if bad:
        raise ConfigError(f"[model] has unknown key(s) {', '.join(bad)}; valid keys: preset, {', '.join(sorted(names))}")
    if model:
        cfg = VocoderConfig.from_dict({**cfg.to_dict(), **model})
    return VocoderRunConfig(data=_build("data", VocoderDataConfig, raw.get("data", {})), model=cfg,
                            train=_build("train", VocoderTrainConfig, raw.get("train", {})), preset=preset,
                            base_dir=base)


def vocoder_config_toml(config: VocoderRunConfig) -> str:
    import tomli_w

    data = replace(config.data, manifest=str(config.manifest_path()))
    return tomli_w.dumps({"data": dataclasses.asdict(data), "model": {"preset": config.preset, **config.model.to_dict()},
                          "train": dataclasses.asdict(config.train)})


# -- data -----------------------------------------------------------------------------------------
@dataclass
class Clip:
    name: str
    audio: np.ndarray      # float32 at the mel rate
    mel: np.ndarray        # (frames, n_mels)
    f0: np.ndarray         # (frames,)


def _clip_features(path: Path, cache: Path, mel: MelConfig) -> Clip:
    from voxflip.engine.audio_io import read_audio

    from .data.features import FeatureConfig, _resample, side_features

    cfg = FeatureConfig(mel=mel)
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{cfg.key}".encode()).hexdigest()[:20]
    file = cache / f"{key}.npz"
    if file.is_file():
        with np.load(file) as z:
            return Clip(path.name, z["audio"], z["mel"], z["f0"])
    audio, rate = read_audio(path)
    feats = side_features(audio, rate, cfg)
    x = _resample(np.asarray(audio, np.float32), rate, cfg.mel.sample_rate).astype(np.float32)
    clip = Clip(path.name, x, feats["mel"], feats["f0_hz"])
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{key}.tmp.npz"
    np.savez(tmp, audio=clip.audio, mel=clip.mel, f0=clip.f0)
    tmp.replace(file)
    return clip


def load_clips(config: VocoderRunConfig, progress: bool = True) -> tuple[list[Clip], list[Clip]]:
    """(train, valid) clips of the manifest's rows (``split`` != train, or the last ``valid_items`` rows, validate)."""
    from .data.manifest import read_manifest

    manifest = config.manifest_path()
    if not manifest.is_file():
        raise ConfigError(f"data.manifest {str(manifest)!r} does not exist (paths are relative to the config file)")
    entries = read_manifest(manifest)
    if config.data.max_items:
        entries = entries[: config.data.max_items]
    held = [e for e in entries if e.split != "train"]
    if not held:
        held = entries[len(entries) - config.data.valid_items :] if config.data.valid_items else []
    held_ids = {e.id for e in held}
    cache = Path(config.data.cache_dir) if config.data.cache_dir else manifest.parent / "vocoder_features"
    sides = recording_sides(config.data.sides)
    paths = [(e.id in held_ids, getattr(e, side)) for e in entries for side in sides if getattr(e, side) is not None]
    if not paths:
        raise ConfigError(f"{manifest}: no {config.data.sides} recordings to train on")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="vocoder features", unit="clip", file=sys.stderr,
                   mininterval=0.1 if sys.stderr.isatty() else 30.0)
    train, valid = [], []
    for held_out, path in paths:
        clip = _clip_features(Path(path), cache, config.model.mel())
        (valid if held_out else train).append(clip)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    frames = config.data.segment_frames
    train = [c for c in train if c.mel.shape[0] > frames]
    if not train:
        raise ConfigError(f"{manifest}: no training clip is longer than data.segment_frames={frames}")
    return train, valid


def draw_batch(clips: list[Clip], weights: np.ndarray, rng: np.random.Generator, batch: int, frames: int,
               hop: int, lookahead: int) -> dict[str, Tensor]:
    """Random segments: mel and F0 of ``frames`` frames, and the audio ``lookahead`` hops behind them."""
    mels, f0s, audios = [], [], []
    for i in rng.choice(len(clips), size=batch, p=weights):
        clip = clips[i]
        a = int(rng.integers(0, clip.mel.shape[0] - frames + 1))
        mels.append(clip.mel[a : a + frames].T)
        f0s.append(clip.f0[a : a + frames])
        start, end = (a - lookahead) * hop, (a + frames - lookahead) * hop
        seg = clip.audio[max(start, 0) : max(end, 0)]
        seg = np.concatenate([np.zeros(max(0, -start), np.float32)[: end - start], seg])
        audios.append(np.pad(seg, (0, end - start - seg.shape[0])))
    return {"mel": torch.from_numpy(np.stack(mels)).float(), "f0": torch.from_numpy(np.stack(f0s)).float(),
            "audio": torch.from_numpy(np.stack(audios)).float().unsqueeze(1)}


# -- losses ---------------------------------------------------------------------------------------
class SpectralLosses(torch.nn.Module):
    """The engine's log-mel (for HiFi-GAN's mel loss) and Parallel WaveGAN's multi-resolution STFT loss."""

    RESOLUTIONS = ((512, 50, 240), (1024, 120, 600), (2048, 240, 1200))

    def __init__(self, mel: MelConfig) -> None:
        super().__init__()
        self.mel_cfg = mel
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(mel)).float(), persistent=False)
        self.register_buffer("mel_window", torch.hann_window(mel.win_samples), persistent=False)
        for fft, _, win in self.RESOLUTIONS:
            self.register_buffer(f"win{fft}", torch.hann_window(win), persistent=False)

    def log_mel(self, x: Tensor) -> Tensor:
        """``(B, 1, T)`` -> ``(B, n_mels, frames)``, the engine's MelAnalyzer in torch (same centred frames)."""
        c = self.mel_cfg
        spec = torch.stft(x.squeeze(1), c.n_fft, c.hop_samples, c.win_samples, self.mel_window, center=True,
                          pad_mode="constant", return_complex=True).abs()
        return torch.log(torch.clamp(self.fb @ spec, min=c.log_floor))

    def mel_l1(self, fake: Tensor, real: Tensor) -> Tensor:
        return F.l1_loss(self.log_mel(fake), self.log_mel(real))

    def stft(self, fake: Tensor, real: Tensor) -> Tensor:
        total = fake.new_zeros(())
        for fft, hop, win in self.RESOLUTIONS:
            window = getattr(self, f"win{fft}")
            sf = torch.stft(fake.squeeze(1), fft, hop, win, window, return_complex=True).abs().clamp(min=1e-7)
            sr = torch.stft(real.squeeze(1), fft, hop, win, window, return_complex=True).abs().clamp(min=1e-7)
            convergence = torch.linalg.norm(sr - sf) / torch.linalg.norm(sr).clamp(min=1e-7)
            total = total + convergence + F.l1_loss(torch.log(sf), torch.log(sr))
        return total / len(self.RESOLUTIONS)


def discriminator_loss(real: list, fake: list) -> Tensor:
    return sum(torch.mean((1 - r[0]) ** 2) + torch.mean(f[0] ** 2) for r, f in zip(real, fake, strict=True))


def generator_adv_loss(fake: list) -> Tensor:
    return sum(torch.mean((1 - f[0]) ** 2) for f in fake)


def feature_matching_loss(real: list, fake: list) -> Tensor:
    return sum(F.l1_loss(fm, rm.detach()) for r, f in zip(real, fake, strict=True) for rm, fm in zip(r[1], f[1], strict=True))


# -- the loop -------------------------------------------------------------------------------------
def _valid_mel_l1(generator, losses: SpectralLosses, clips: list[Clip], lookahead: int, hop: int,
                  seconds: float = 3.0) -> float:
    """Mean log-mel L1 of the first ``seconds`` of each held-out clip, synthesised whole (no GAN noise)."""
    if not clips:
        return float("nan")
    scores = []
    with torch.no_grad():
        for clip in clips:
            n = min(clip.mel.shape[0], int(seconds / losses.mel_cfg.frame_s))
            mel = torch.from_numpy(np.ascontiguousarray(clip.mel[: n + lookahead].T))[None].float()
            f0 = torch.from_numpy(clip.f0[: n + lookahead])[None].float()
            noise = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 1, mel.shape[2] * hop),
                                                                               dtype=np.float32))
            out = generator(mel, f0, noise)[:, :, lookahead * hop :]
            real = torch.from_numpy(clip.audio[: out.shape[2]])[None, None]
            out = out[:, :, : real.shape[2]]
            scores.append(float(losses.mel_l1(out, real)))
    return float(np.mean(scores))


def train_vocoder(config: VocoderRunConfig, run_dir: str | Path, *, resume: bool = True, progress: bool = True,
                  stop_after: int | None = None) -> Path:
    """Train until ``train.max_steps`` (or ``stop_after`` more steps); returns the last checkpoint."""
    run_dir = Path(run_dir)
    tc, cfg = config.train, config.model
    text = vocoder_config_toml(config)
    rank, world, (train, valid) = start_run(run_dir, text, tc.threads,
                                            lambda rank: load_clips(config, progress=progress and rank == 0))
    lengths = np.array([c.mel.shape[0] - config.data.segment_frames for c in train], np.float64)
    weights = lengths / lengths.sum()

    torch.manual_seed(tc.seed)
    generator = build_generator(cfg)
    discriminator = build_discriminator(cfg.kind, tc.disc_channels_div)
    opt_g = torch.optim.AdamW(generator.parameters(), tc.lr, betas=(0.8, 0.99), weight_decay=0.0)
    opt_d = torch.optim.AdamW(discriminator.parameters(), tc.lr, betas=(0.8, 0.99), weight_decay=0.0)
    losses = SpectralLosses(cfg.mel())
    step = 0
    last = latest_checkpoint(run_dir) if resume else None
    if last is not None:
        payload = read_checkpoint(last, needs=("generator", "discriminator", "opt_g", "opt_d", "step", "model_config"))
        if VocoderConfig.from_dict(payload["model_config"], f"checkpoint {last}") != cfg:
            raise ConfigError(f"checkpoint {str(last)!r} is of another generator ({payload['model_config'].get('variant')}); "
                              "pass --no-resume to start over, or another --run-dir")
        generator.load_state_dict(payload["generator"])
        discriminator.load_state_dict(payload["discriminator"])
        opt_g.load_state_dict(payload["opt_g"])
        opt_d.load_state_dict(payload["opt_d"])
        step = int(payload["step"])
        if rank == 0:
            log.info("resumed from %s (step %d)", last, step)
    gen_w, disc_w = generator, discriminator
    if world > 1:
        gen_w = torch.nn.parallel.DistributedDataParallel(generator)
        disc_w = torch.nn.parallel.DistributedDataParallel(discriminator)
    weights_of = tc.weights(cfg.kind)
    writer, bar = run_outputs(run_dir, rank, progress, tc.max_steps, step, "training vocoder")
    target = tc.max_steps if stop_after is None else min(tc.max_steps, step + stop_after)
    checkpoint = last
    per_rank = max(1, tc.batch_size // world)
    started = time.perf_counter()
    generator.train()
    discriminator.train()
    while step < target:
        rng = np.random.default_rng([tc.seed, rank, step])
        batch = draw_batch(train, weights, rng, per_rank, config.data.segment_frames, cfg.hop_samples,
                           cfg.lookahead_frames)
        noise = torch.from_numpy(rng.standard_normal(batch["audio"].shape, dtype=np.float32))
        if tc.mel_jitter:
            batch["mel"] = batch["mel"] + tc.mel_jitter * torch.from_numpy(
                rng.standard_normal(batch["mel"].shape, dtype=np.float32))
        lr = tc.lr * tc.lr_decay ** (step / 1000.0)
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        fake = gen_w(batch["mel"], batch["f0"], noise)
        real = batch["audio"]
        adversarial = step >= tc.adversarial_from and weights_of["adv"] > 0
        scalars: dict[str, float] = {}
        if adversarial:
            loss_d = discriminator_loss(disc_w(real), disc_w(fake.detach()))
            optimiser_step(opt_d, loss_d, discriminator.parameters(), tc.grad_clip)
            scalars["disc"] = loss_d.item()
        loss_g = fake.new_zeros(())
        if weights_of["mel"]:
            mel_l1 = losses.mel_l1(fake, real)
            loss_g = loss_g + weights_of["mel"] * mel_l1
            scalars["mel_l1"] = mel_l1.item()
        if weights_of["stft"]:
            stft = losses.stft(fake, real)
            loss_g = loss_g + weights_of["stft"] * stft
            scalars["stft"] = stft.item()
        if adversarial:
            real_out, fake_out = disc_w(real), disc_w(fake)
            adv = generator_adv_loss(fake_out)
            loss_g = loss_g + weights_of["adv"] * adv
            scalars["adv"] = adv.item()
            if weights_of["fm"]:
                fm = feature_matching_loss(real_out, fake_out)
                loss_g = loss_g + weights_of["fm"] * fm
                scalars["fm"] = fm.item()
        grad = optimiser_step(opt_g, loss_g, generator.parameters(), tc.grad_clip)
        step += 1
        if rank != 0:
            continue
        if bar is not None:
            bar.set_postfix(loss=f"{loss_g.item():.3f}", refresh=False)
            bar.update(1)
        if writer is not None and (step % tc.log_every == 0 or step == 1):
            for key, value in scalars.items():
                writer.add_scalar(f"train/{key}", value, step)
            writer.add_scalar("train/generator", loss_g.item(), step)
            writer.add_scalar("train/lr", lr, step)
            writer.add_scalar("train/grad_norm", float(grad), step)
        if writer is not None and step % tc.valid_every == 0 and valid:
            generator.eval()
            writer.add_scalar("valid/mel_l1", _valid_mel_l1(generator, losses, valid, cfg.lookahead_frames,
                                                            cfg.hop_samples), step)
            generator.train()
        if step % tc.checkpoint_every == 0 or step == target:
            checkpoint = run_dir / "checkpoints" / f"step_{step:08d}.pt"
            _save(checkpoint, {"format": CHECKPOINT_FORMAT, "kind": "vocoder", "preset": config.preset,
                               "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
                               "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step,
                               "model_config": cfg.to_dict(), "train_config": text})
            _prune(run_dir, tc.keep_checkpoints)
    return finish_run(writer, bar, world, rank, step, started, checkpoint, run_dir)

"""A causal content encoder distilled from Whisper: what was said, frame by frame, as it is said.

Whisper's encoder (voxflip's content features, :mod:`voxflip.engine.features.content`) reads
30 s windows with attention over all of them: nothing it says about a frame is final before the
window has ended. The student reads the engine's 16 kHz log-mel (the low-latency flow model's
setup, ``MelConfig.for_to_speech(400)``: 10 ms hop, 25 ms window) through causal dilated
convolutions and predicts Whisper base's 512-wide encoder states, so a converter that was trained
on Whisper's states can read the student's instead, chunk by chunk.

Frames: the student runs at the mel's 10 ms; its output frame ``j`` has seen mel frames ``<= j``
and stands for Whisper frame ``(j - 1 - lookahead) // 2`` (Whisper's frame ``k`` covers mel frames
``2k`` and ``2k + 1``). A content frame ``k`` is read at output frame ``2k + 1 + lookahead``:
``lookahead`` mel frames (10 ms each) past the end of the frame it describes.

The model holds its input and output statistics (buffers), so it takes the raw log-mel and gives
states on Whisper's own scale. Every layer streams with a cache of its past inputs
(:mod:`.layers`): ``step`` over chunks equals ``forward`` over the whole.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from voxflip.engine.errors import ConfigError

from .layers import CausalConv1d, ChannelNorm, ResidualBlock

#: what an export's manifest says the student imitates (the AlignSTS exports' ``content.kind``)
TEACHER_KIND = "whisper-base-encoder"


@dataclass(frozen=True)
class ContentStudentConfig:
    n_mels: int = 80
    hidden: int = 256
    kernel_size: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 1, 2, 4, 8, 16, 32)
    lookahead: int = 6            # mel frames (10 ms) each output waits past its content frame
    out_dim: int = 512            # Whisper base's encoder width
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if not 16 <= self.hidden <= 1024:
            raise ConfigError(f"model.hidden={self.hidden} must be in 16..1024")
        if self.kernel_size not in (2, 3, 5):
            raise ConfigError(f"model.kernel_size={self.kernel_size} must be 2, 3 or 5")
        if not self.dilations or any(not isinstance(d, int) or not 1 <= d <= 64 for d in self.dilations):
            raise ConfigError(f"model.dilations={list(self.dilations)} must be 1..64 each, at least one")
        if not 0 <= self.lookahead <= 50:
            raise ConfigError(f"model.lookahead={self.lookahead} must be in 0..50 mel frames (10 ms each)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout} must be in [0, 1)")

    @property
    def receptive_frames(self) -> int:
        """Mel frames an output frame reads: itself and this many - 1 before it."""
        return 1 + (self.kernel_size - 1) * (1 + sum(self.dilations))

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["dilations"] = list(self.dilations)
        return out

    @classmethod
    def from_dict(cls, raw: object, where: str = "the config") -> ContentStudentConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(raw, dict) or set(raw) - names:
            extra = sorted(set(raw) - names) if isinstance(raw, dict) else raw
            raise ConfigError(f"{where}: not a content student's model config (unknown: {extra})")
        values = dict(raw)
        if "dilations" in values:
            values["dilations"] = tuple(values["dilations"])
        return cls(**values)


class ContentStudent(nn.Module):
    """log-mel ``[batch, n_mels, frames]`` -> Whisper-like states ``[batch, out_dim, frames]`` (module docstring)."""

    def __init__(self, cfg: ContentStudentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mel_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("mel_std", torch.ones(cfg.n_mels))
        self.register_buffer("out_mean", torch.zeros(cfg.out_dim))
        self.register_buffer("out_std", torch.ones(cfg.out_dim))
        self.inp = CausalConv1d(cfg.n_mels, cfg.hidden, cfg.kernel_size)
        self.blocks = nn.ModuleList(ResidualBlock(cfg.hidden, cfg.kernel_size, d, cfg.dropout) for d in cfg.dilations)
        self.norm = ChannelNorm(cfg.hidden)
        self.out = nn.Conv1d(cfg.hidden, cfg.out_dim, 1)

    def set_stats(self, mel_mean: Tensor, mel_std: Tensor, out_mean: Tensor, out_std: Tensor) -> None:
        for name, value in (("mel_mean", mel_mean), ("mel_std", mel_std), ("out_mean", out_mean), ("out_std", out_std)):
            getattr(self, name).copy_(torch.as_tensor(value, dtype=torch.float32))

    def _normalise(self, mel: Tensor) -> Tensor:
        return (mel - self.mel_mean[None, :, None]) / self.mel_std[None, :, None]

    def forward_standard(self, mel: Tensor) -> Tensor:
        """The states standardised by the teacher's statistics (what the loss compares)."""
        h = self.inp(self._normalise(mel))
        for block in self.blocks:
            h = block(h)
        return self.out(self.norm(h))

    def forward(self, mel: Tensor, standard: bool = False) -> Tensor:
        """The states on Whisper's scale, or with ``standard`` standardised (through DistributedDataParallel
        in training: its gradients are shared only through ``forward``)."""
        y = self.forward_standard(mel)
        return y if standard else y * self.out_std[None, :, None] + self.out_mean[None, :, None]

    def init_cache(self, batch: int = 1) -> list[Tensor]:
        return [self.inp.init_cache(batch)] + [b.conv.init_cache(batch) for b in self.blocks]

    def step(self, mel: Tensor, caches: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """A chunk of frames with the caches of everything before it (eval mode: no dropout)."""
        h, first = self.inp.step(self._normalise(mel), caches[0])
        new = [first]
        for block, cache in zip(self.blocks, caches[1:], strict=True):
            h, c = block.step(h, cache)
            new.append(c)
        y = self.out(self.norm(h))
        return y * self.out_std[None, :, None] + self.out_mean[None, :, None], new


def teacher_index(frames: int, lookahead: int) -> Tensor:
    """For each output frame ``j < frames``, the Whisper frame it stands for (``-1``: none yet)."""
    j = torch.arange(frames)
    return torch.div(j - 1 - lookahead, 2, rounding_mode="floor").clamp(min=-1)


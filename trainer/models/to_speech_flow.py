"""The singing-to-speech model of Huang and Benetos: a Glow-TTS-like flow with phone posteriorgrams and MAST.

Shapes are ``[batch, channels, frames]``; mels are 80-band log-mels at 16 kHz with a
10 ms hop and a ``mel_window``-sample window (:meth:`voxflip.engine.features.mel.MelConfig.for_to_speech`),
normalised per band with the training set's mean and standard deviation (buffers of the model).

- **Mel encoder** (causal residual convolutions, output delayed by ``lookahead``
  frames so each frame sees that much future): singing mel -> hidden states ->
  a prior mean and log-scale per singing frame.
- **Phone predictor** (1x1 on the hidden states): phone posteriorgrams of singing
  and, running the same encoder on the speech mel, of speech; trained with cross
  entropy against frame phone labels where the data has them.
- **MAST** (:mod:`voxflip.trainer.mast`): aligns every speech frame to a singing
  frame, monotonically, skipping singing frames; the score is the log agreement of
  the two posteriorgrams plus the prior log-likelihood of the speech frame's
  latent (per dimension). No gradient flows through the alignment.
- **Flow decoder** (:class:`~.flow.FlowDecoder`): speech mel -> latent; trained by
  maximum likelihood under the aligned prior.
- **Duration predictor** (causal convolutions on the detached hidden states):
  ``log(1 + d)`` of the speech frames each singing frame receives, ``d`` being
  the MAST path's counts averaged over ``duration_smoothing`` frames; ``dur``
  inference expands the prior by it (fractions carried from frame to frame), ``nodur`` keeps the singing's timing (one
  speech frame per singing frame).

Inference samples the prior with ``noise_scale`` (the paper: 0.3) and inverts the flow.

**Residual** (``residual = true``, our addition; the paper's model is ``false``): the flow
models the difference between a speech frame and the singing frame it is aligned to, in
normalised mel, so the output is the singing frame plus a sampled correction. A small model
predicting whole speech frames from singing over-smooths them: with the speech aligned by
MAST itself, its decoded frames were less intelligible than the aligned singing frames
(docs/models.md). The change of variables is the same, since the singing frame is given.
The alignment score's likelihood term then cannot use the flow (the latent depends on
the path); it scores each pair by the squared distance of the two normalised mel frames.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from voxflip.engine.errors import ConfigError
from voxflip.engine.features.mel import MelConfig

from ..mast import mast
from .flow import FlowDecoder
from .layers import CausalConv1d, ResidualBlock


@dataclass(frozen=True)
class ToSpeechFlowConfig:
    n_mels: int = 80
    n_phones: int = 50
    hidden: int = 128
    encoder_layers: int = 6
    encoder_kernel: int = 5
    lookahead: int = 2
    flow_blocks: int = 6
    flow_hidden: int = 96
    flow_layers: int = 3
    duration_hidden: int = 64
    max_skip: int = 12
    noise_scale: float = 0.3
    ppg_weight: float = 10.0
    duration_weight: float = 1.0
    likelihood_in_alignment: float = 1.0
    dropout: float = 0.1
    duration_smoothing: int = 9     # frames of the moving average over the duration targets (1 = none)
    residual: bool = False          # the flow models speech minus the aligned singing frame (see the module docstring)
    mel_window: int = 640           # samples of the mel analysis window at 16 kHz (40 ms; 400 = 25 ms, low latency)

    def __post_init__(self) -> None:
        if self.duration_smoothing < 1 or self.duration_smoothing % 2 == 0:
            raise ConfigError(f"model.duration_smoothing={self.duration_smoothing!r} must be an odd number >= 1")
        mel = MelConfig.for_to_speech()
        if not mel.hop_samples <= self.mel_window <= mel.n_fft:
            raise ConfigError(f"model.mel_window={self.mel_window!r} must be a whole number of samples in "
                              f"{mel.hop_samples}..{mel.n_fft} (at {mel.sample_rate} Hz)")

    @property
    def mel(self) -> MelConfig:
        """The mel frames this model reads and writes."""
        return MelConfig.for_to_speech(self.mel_window)

    def to_dict(self) -> dict:
        return asdict(self)


class MelEncoder(nn.Module):
    """Causal residual convolutions; ``forward`` delays the output by ``lookahead`` frames."""

    def __init__(self, cfg: ToSpeechFlowConfig) -> None:
        super().__init__()
        self.lookahead = cfg.lookahead
        self.inp = nn.Conv1d(cfg.n_mels, cfg.hidden, 1)
        self.blocks = nn.ModuleList(
            ResidualBlock(cfg.hidden, cfg.encoder_kernel, dilation=1 + (i % 3), dropout=cfg.dropout)
            for i in range(cfg.encoder_layers)
        )

    def causal(self, mel: Tensor) -> Tensor:
        h = self.inp(mel)
        for block in self.blocks:
            h = block(h)
        return h

    def forward(self, mel: Tensor) -> Tensor:
        """Hidden state of every frame, each computed from its frame and ``lookahead`` more."""
        if self.lookahead:
            mel = nn.functional.pad(mel, (0, self.lookahead))
        h = self.causal(mel)
        return h[:, :, self.lookahead :]

    def init_state(self, batch: int = 1) -> list[Tensor]:
        return [b.conv.init_cache(batch) for b in self.blocks]

    def step(self, mel: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Causal chunk step: the output lags the input by ``lookahead`` frames."""
        h = self.inp(mel)
        new = []
        for block, cache in zip(self.blocks, state, strict=True):
            h, c = block.step(h, cache)
            new.append(c)
        return h, new


class DurationPredictor(nn.Module):
    def __init__(self, cfg: ToSpeechFlowConfig) -> None:
        super().__init__()
        self.c1 = CausalConv1d(cfg.hidden, cfg.duration_hidden, 3)
        self.c2 = CausalConv1d(cfg.duration_hidden, cfg.duration_hidden, 3)
        self.out = nn.Conv1d(cfg.duration_hidden, 1, 1)

    def forward(self, h: Tensor) -> Tensor:
        x = nn.functional.gelu(self.c1(h))
        x = nn.functional.gelu(self.c2(x))
        return self.out(x)[:, 0]

    def init_state(self, batch: int = 1) -> list[Tensor]:
        return [self.c1.init_cache(batch), self.c2.init_cache(batch)]

    def step(self, h: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        x, s1 = self.c1.step(h, state[0])
        x = nn.functional.gelu(x)
        x, s2 = self.c2.step(x, state[1])
        return self.out(nn.functional.gelu(x))[:, 0], [s1, s2]


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def smooth_rate(counts: Tensor, mask: Tensor, width: int) -> Tensor:
    """Centred moving average of ``counts`` ``[b, T]`` over the valid frames of ``mask`` ``[b, T]``.

    The MAST path gives each singing frame a whole number of speech frames (0 inside a held
    vowel, 1-2 at consonants). Regressed in the log domain, such spikes are predicted near
    their geometric mean and the summed durations come out far too short; their local
    average (speech frames per singing frame) is smooth, and its sum is the speech length
    up to the edges.
    """
    if width == 1:
        return counts * mask
    kernel = torch.ones(1, 1, width, dtype=counts.dtype, device=counts.device)
    total = nn.functional.conv1d((counts * mask)[:, None], kernel, padding=width // 2)[:, 0]
    weight = nn.functional.conv1d(mask[:, None], kernel, padding=width // 2)[:, 0]
    return total / weight.clamp(min=1.0) * mask


def expand_counts(log_dur: Tensor) -> Tensor:
    """Whole speech frames per singing frame from predicted ``log(1 + d)`` ``[T]``, carrying fractions
    forward (frame i gets ``floor(D_i) - floor(D_{i-1})`` with ``D`` the running sum), as the engine does."""
    rate = torch.expm1(torch.clamp(log_dur.double(), min=0.0))
    total = torch.floor(torch.cumsum(rate, 0))
    return torch.diff(total, prepend=total.new_zeros(1)).long()


class ToSpeechFlow(nn.Module):
    """See the module docstring."""

    def __init__(self, cfg: ToSpeechFlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = MelEncoder(cfg)
        self.prior = nn.Conv1d(cfg.hidden, 2 * cfg.n_mels, 1)
        nn.init.zeros_(self.prior.weight)
        nn.init.zeros_(self.prior.bias)
        self.phone = nn.Conv1d(cfg.hidden, cfg.n_phones, 1)
        self.duration = DurationPredictor(cfg)
        self.flow = FlowDecoder(cfg.n_mels, cfg.flow_blocks, cfg.flow_hidden, cfg.flow_layers)
        self.register_buffer("mel_mean", torch.zeros(1, cfg.n_mels, 1))
        self.register_buffer("mel_std", torch.ones(1, cfg.n_mels, 1))

    # -- normalisation ---------------------------------------------------------------------------------
    def set_mel_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mel_mean.copy_(torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1))
        self.mel_std.copy_(torch.as_tensor(np.maximum(std, 1e-3), dtype=torch.float32).view(1, -1, 1))

    def normalise(self, mel: Tensor) -> Tensor:
        return (mel - self.mel_mean) / self.mel_std

    def denormalise(self, mel: Tensor) -> Tensor:
        return mel * self.mel_std + self.mel_mean

    # -- training ------------------------------------------------------------------------------------------
    def forward(self, sing_mel: Tensor, sing_len: Tensor, speech_mel: Tensor, speech_len: Tensor,
                sing_phones: Tensor | None = None, speech_phones: Tensor | None = None) -> dict[str, Tensor]:
        """Losses for a batch. Phone label tensors hold -1 where a frame has no label."""
        cfg = self.cfg
        b, _, t_si = sing_mel.shape
        t_sp = speech_mel.shape[2]
        m_si = (torch.arange(t_si)[None, :] < sing_len[:, None]).float().unsqueeze(1)
        m_sp = (torch.arange(t_sp)[None, :] < speech_len[:, None]).float().unsqueeze(1)
        x_si = self.normalise(sing_mel) * m_si
        x_sp = self.normalise(speech_mel) * m_sp

        h_si = self.encoder(x_si)
        mu, logs = self.prior(h_si).chunk(2, dim=1)
        ppg_si = self.phone(h_si)
        ppg_sp = self.phone(self.encoder(x_sp))

        if cfg.residual:
            with torch.no_grad():   # the likelihood term scores mel distance: unit variance around the singing frame
                paths = self._align(x_si, torch.zeros_like(x_si), ppg_si, ppg_sp, x_sp, sing_len, speech_len)
            index = paths.unsqueeze(1).expand(-1, cfg.n_mels, -1)       # [b, C, t_sp]
            z, logdet = self.flow((x_sp - torch.gather(x_si, 2, index)) * m_sp, m_sp)
        else:
            z, logdet = self.flow(x_sp, m_sp)
            with torch.no_grad():
                paths = self._align(mu, logs, ppg_si, ppg_sp, z, sing_len, speech_len)
            index = paths.unsqueeze(1).expand(-1, cfg.n_mels, -1)       # [b, C, t_sp]
        mu_a = torch.gather(mu, 2, index)
        logs_a = torch.gather(logs, 2, index)
        nll = 0.5 * ((z - mu_a) * torch.exp(-logs_a)) ** 2 + logs_a + 0.5 * math.log(2 * math.pi)
        frames = m_sp.sum() * cfg.n_mels
        loss_nll = ((nll * m_sp).sum() - logdet.sum()) / frames

        loss_ppg = torch.zeros((), device=sing_mel.device)
        for logits, labels in ((ppg_si, sing_phones), (ppg_sp, speech_phones)):
            if labels is not None and bool((labels >= 0).any()):
                loss_ppg = loss_ppg + nn.functional.cross_entropy(logits, labels.long(), ignore_index=-1)

        targets = torch.zeros(b, t_si, device=sing_mel.device)
        for i in range(b):
            n_sp = int(speech_len[i])
            targets[i] = torch.bincount(paths[i, :n_sp], minlength=t_si)[:t_si].float()
        log_dur = self.duration(h_si.detach())
        rate = smooth_rate(targets, m_si[:, 0], cfg.duration_smoothing)
        loss_dur = _masked_mean((log_dur - torch.log1p(rate)) ** 2, m_si[:, 0])
        predicted = (torch.expm1(torch.clamp(log_dur.detach(), min=0.0)) * m_si[:, 0]).sum()

        total = loss_nll + cfg.ppg_weight * loss_ppg + cfg.duration_weight * loss_dur
        return {"loss": total, "nll": loss_nll.detach(), "ppg": loss_ppg.detach(), "duration": loss_dur.detach(),
                "duration_ratio": predicted / speech_len.sum().clamp(min=1)}

    def _align(self, mu, logs, ppg_si, ppg_sp, z, sing_len, speech_len) -> Tensor:
        cfg = self.cfg
        b = mu.shape[0]
        t_sp = z.shape[2]
        p_si = torch.softmax(ppg_si, dim=1)
        p_sp = torch.softmax(ppg_sp, dim=1)
        paths = torch.zeros(b, t_sp, dtype=torch.long)
        for i in range(b):
            n_si, n_sp = int(sing_len[i]), int(speech_len[i])
            agree = torch.log(torch.einsum("pi,pj->ij", p_si[i, :, :n_si], p_sp[i, :, :n_sp]) + 1e-6)
            inv = torch.exp(-2 * logs[i, :, :n_si])                                # [C, n_si]
            zz = z[i, :, :n_sp]                                                     # [C, n_sp]
            # log N(z_j; mu_i, s_i) per dimension, for every pair (i, j), without a [C, n_si, n_sp] tensor
            quad = (inv.T @ (zz**2)) - 2 * ((mu[i, :, :n_si] * inv).T @ zz) + (mu[i, :, :n_si] ** 2 * inv).sum(0)[:, None]
            loglik = -0.5 * quad / cfg.n_mels - logs[i, :, :n_si].mean(0)[:, None] - 0.5 * math.log(2 * math.pi)
            score = agree + cfg.likelihood_in_alignment * loglik
            path = mast(score.cpu().numpy(), cfg.max_skip)
            paths[i, :n_sp] = torch.from_numpy(path)
        return paths.to(mu.device)

    # -- inference -------------------------------------------------------------------------------------
    @torch.no_grad()
    def infer(self, sing_mel: Tensor, *, dur: bool = False, noise_scale: float | None = None,
              generator: torch.Generator | None = None, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Speech mel (un-normalised) for one singing mel ``[1, n_mels, T]``.

        ``nodur`` runs exactly what the streaming graph runs: the causal encoder over the mel
        followed by ``lookahead`` zero frames, the flow over every one of its outputs, and the
        first ``lookahead`` outputs (frames before the start) dropped -- so a stream and a whole
        utterance agree. ``noise`` (``[1, n_mels, T + lookahead]``) replaces the random draw.
        Returns ``(speech_mel, source_index)``: the singing frame each output frame came from."""
        scale = self.cfg.noise_scale if noise_scale is None else noise_scale
        look = self.cfg.lookahead
        x_si = self.normalise(sing_mel)
        skip = x_si if self.cfg.residual else torch.zeros_like(x_si)
        h = self.encoder.causal(nn.functional.pad(x_si, (0, look)))
        mu, logs = self.prior(h).chunk(2, dim=1)
        if noise is None:
            noise = torch.randn(mu.shape, generator=generator)
        if dur:
            h_valid = h[:, :, look:]
            counts = expand_counts(self.duration.forward(h)[0, look:])
            index = torch.repeat_interleave(torch.arange(h_valid.shape[2]), counts)
            if index.numel() == 0:
                index = torch.zeros(1, dtype=torch.long)
            mu, logs, noise = mu[:, :, look:][:, :, index], logs[:, :, look:][:, :, index], noise[:, :, : index.numel()]
            x = self.flow.inverse(mu + torch.exp(logs) * noise * scale) + skip[:, :, index]
            return self.denormalise(x), index
        x = self.flow.inverse(mu + torch.exp(logs) * noise * scale)
        return self.denormalise(x[:, :, look:] + skip), torch.arange(sing_mel.shape[2])

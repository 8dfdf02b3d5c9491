"""AlignSTS (Li et al., ACL Findings 2023): speech -> singing by a rhythm adaptor and a cross-modal aligner.

Shapes are ``[batch, frames, channels]`` inside the attention blocks and ``[batch, channels,
frames]`` around the convolutions; the public inputs and outputs say which. Two time axes:

- the **target** axis ``T``: frames of the singing mel (24 kHz, hop 128, 5.3 ms:
  :meth:`MelConfig.for_to_singing`), of the target F0 and of the rhythm;
- the **content** axis ``N``: frames of the speech's content features (Whisper encoder
  states, 20 ms; :mod:`voxflip.trainer.data.content`).

The parts, as in the paper's figure 1 and appendix A:

- **Encoders** ``E_P`` (F0 quantised to 256 bins, 3 convolutions of kernel 5), ``E_R``
  (the rhythm of eq. 3, 2 convolutions of kernel 7) and ``E_C`` (content, a 32-wide linear
  bottleneck then 2 convolutions of kernel 3).
- **Rhythm adaptor**: ``E_R``'s output vector-quantised (:class:`RhythmVQ`, an EMA codebook of
  6 codes, commitment loss eq. 4), and a **rhythm predictor**: windowed cross-attention of
  the pitch (query) on the content (key, value), a feed-forward of kernel 9, two
  convolutions, logits over the codes; cross entropy against the VQ's indices (eq. 6).
  Training feeds the VQ's embeddings on; inference the predicted codes' embeddings.
- **Cross-modal aligner**: two windowed cross-attention layers, query the rhythm
  embeddings, key and value the content; the guided attention loss of eqs. 10-11 on each
  layer's head-averaged weights (:func:`guided_attention_loss`).
- **Fusion**: aligned content + rhythm + pitch + timbre, added.
- **Decoder**: ``diffusion`` (the paper's: a generator-based diffusion model after ProDiff's
  teacher, :class:`DiffusionDecoder`, trained with MAE and SSIM on its clean-mel
  prediction, eqs. 7-8) or ``fs2`` (the paper's AlignSTS-GAN: FastSpeech 2's decoder of
  feed-forward transformer blocks, trained with MAE + SSIM and a multi-window
  discriminator, :class:`MultiWindowDiscriminator`).

**Windows on absolute frames.** The paper centres query ``t``'s window at ``t * N / T`` with a
half-width that is a share of ``N`` (``window_mode = "relative"``: the window sizes 0.5 and 0.4
read as the whole window's share of the key axis), so every output frame depends on both whole
lengths. With ``window_mode = "absolute"`` the half-width is ``window_frames`` content frames and
the centre is ``t * ratio`` with ``ratio`` an input: ``N / T`` when a whole utterance is given
(the paper's centre), the expected content frames per target frame when streaming (the speaking
rate against the melody's). A frame then sees a bounded neighbourhood of its inputs
(:mod:`voxflip.engine.converters.alignsts_context`). Self-attention in the ``fs2`` decoder is
windowed too (``decoder_context`` frames each side).

**Timbre.** The paper adds a Resemblyzer d-vector; here a small reference encoder over the
speech's own mel frames (convolutions, masked mean), trained with the rest (Resemblyzer's
weights cannot ship, and the live path has no torch). Documented in ``docs/models.md``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxflip.engine.converters.alignsts_context import BASELINES
from voxflip.engine.converters.alignsts_model import ARCHITECTURES
from voxflip.engine.errors import ConfigError

from . import check_known_keys

#: the score masked attention positions get before the softmax (the paper: -1e8; finite in float16 too)
MASKED = -1e4
DECODERS = ("diffusion", "fs2", "conv")
WINDOW_MODES = ("relative", "absolute")


@dataclass(frozen=True)
class AlignSTSConfig:
    architecture: str = ARCHITECTURES[0]   # the paper's model; or a baseline (:mod:`.sts_baselines`)
    n_mels: int = 80
    content_dim: int = 512        # Whisper base encoder states
    content_bottleneck: int = 32  # the paper's 32-dimensional linguistic features
    hidden: int = 256
    pitch_bins: int = 256
    f0_min_hz: float = 50.0
    f0_max_hz: float = 1100.0
    pitch_kernel: int = 5
    pitch_layers: int = 3
    content_kernel: int = 3
    content_layers: int = 2
    rhythm_kernel: int = 7
    rhythm_layers: int = 2
    encoder_dropout: float = 0.1
    vq_codes: int = 6
    vq_decay: float = 0.99
    commitment: float = 0.25      # weight of eq. 4 (the paper gives none; VQ-VAE's)
    rp_heads: int = 1
    rp_window: float = 0.5
    rp_ffn_kernel: int = 9
    rp_conv_kernel: int = 3
    rp_conv_layers: int = 2
    rp_dropout: float = 0.8       # the paper's table 4 value
    aligner_heads: int = 2
    aligner_layers: int = 2
    aligner_dropout: float = 0.1
    aligner_window: float = 0.4
    guided_g: float = 0.1
    window_mode: str = "relative"
    window_frames: int = 25       # "absolute": half-width in content frames (25 = 0.5 s)
    timbre_layers: int = 3
    decoder: str = "diffusion"
    decoder_layers: int = 4       # fs2: FFT blocks; diffusion: residual layers = 5 x this
    decoder_heads: int = 2
    decoder_kernel: int = 9
    decoder_context: int = 64     # fs2 self-attention: frames each side
    diffusion_steps: int = 4
    diffusion_channels: int = 256
    diffusion_dilation_cycle: int = 4
    ssim_weight: float = 1.0
    guided_weight: float = 100.0  # eq. 10 averages over T x N, so it is at most 1/N: scaled up (our choice)
    rhythm_weight: float = 1.0
    # the baselines (architecture "parekh" or "speechsplit2"; :mod:`.sts_baselines`)
    baseline_kernel: int = 5      # their convolutions' kernel
    baseline_layers: int = 3      # convolutions per encoder; the decoder has decoder_layers
    mel_per_content: float = 3.75  # mel frames (5.3 ms) per content frame (20 ms): where the speech mel is read
    ss_content_dim: int = 8       # SpeechSplit's bottleneck widths (its paper's: 8, 1, 32)
    ss_rhythm_dim: int = 1
    ss_pitch_dim: int = 32
    ss_smooth: int = 9            # frames of the moving average that stands in for its down-sampling by 8
    ss_rhythm_input: str = "source"   # "source": the speech's envelope (w/o SE); "target": the singing's (w/ SE)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"model.architecture={self.architecture!r} must be one of {', '.join(ARCHITECTURES)}")
        if self.decoder not in DECODERS:
            raise ConfigError(f"model.decoder={self.decoder!r} must be one of {', '.join(DECODERS)}")
        baseline = self.architecture in BASELINES
        if baseline and (self.decoder != "conv" or self.window_mode != "absolute"):
            raise ConfigError(f"model.architecture={self.architecture!r} takes decoder = \"conv\" and window_mode = "
                              f"\"absolute\" (got {self.decoder!r}, {self.window_mode!r}): its stretch reads absolute "
                              "frames")
        if not baseline and self.decoder == "conv":
            raise ConfigError("model.decoder=\"conv\" is the baselines' decoder; AlignSTS takes diffusion or fs2")
        if self.ss_rhythm_input not in ("source", "target"):
            raise ConfigError(f"model.ss_rhythm_input={self.ss_rhythm_input!r} must be 'source' or 'target'")
        if self.baseline_kernel < 1 or self.baseline_kernel % 2 == 0 or self.ss_smooth < 1 or self.ss_smooth % 2 == 0:
            raise ConfigError(f"model.baseline_kernel={self.baseline_kernel} and ss_smooth={self.ss_smooth} must be "
                              "odd and >= 1")
        if min(self.baseline_layers, self.ss_content_dim, self.ss_rhythm_dim, self.ss_pitch_dim) < 1:
            raise ConfigError("model.baseline_layers and the ss_*_dim widths must be >= 1")
        if not self.mel_per_content > 0:
            raise ConfigError(f"model.mel_per_content={self.mel_per_content} must be > 0")
        if self.window_mode not in WINDOW_MODES:
            raise ConfigError(f"model.window_mode={self.window_mode!r} must be one of {', '.join(WINDOW_MODES)}")
        for name in ("rp_window", "aligner_window"):
            if not 0.0 < getattr(self, name) <= 2.0:
                raise ConfigError(f"model.{name}={getattr(self, name)} must be in (0, 2] (a share of the content axis)")
        if self.vq_codes < 2 or self.pitch_bins < 2:
            raise ConfigError("model.vq_codes and model.pitch_bins must be >= 2")
        if self.hidden % max(self.aligner_heads, self.rp_heads, self.decoder_heads) != 0:
            raise ConfigError(f"model.hidden={self.hidden} must divide by every attention's heads")
        if not 0 < self.f0_min_hz < self.f0_max_hz:
            raise ConfigError(f"model.f0_min_hz={self.f0_min_hz} and f0_max_hz={self.f0_max_hz} must rise from > 0")
        if self.diffusion_steps < 1 or self.window_frames < 1:
            raise ConfigError("model.diffusion_steps and model.window_frames must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict, where: str = "model") -> AlignSTSConfig:
        check_known_keys(cls, raw, where)
        return cls(**raw)


# -- inputs ---------------------------------------------------------------------------------------
def sinusoid(positions: Tensor, channels: int) -> Tensor:
    """``(B, L)`` real positions -> ``(B, L, channels)`` sinusoidal encodings (Vaswani et al.)."""
    half = channels // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angle = positions.float().unsqueeze(-1) * freq
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


def lengths_mask(lengths: Tensor, size: int) -> Tensor:
    """``(B,)`` lengths -> ``(B, size)`` True where a frame is real."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def window_mask(t_len: Tensor, n_len: Tensor, t_size: int, n_size: int, *, centre_ratio: Tensor,
                half_width: Tensor, t_offset: Tensor | None = None, n_offset: Tensor | None = None) -> Tensor:
    """``(B, T, N)`` True where query ``t`` may attend to key ``n``.

    Key ``n`` is allowed when it is a real frame and ``|n - c_t| <= half_width`` with the centre
    ``c_t = (t + t_offset) * centre_ratio - n_offset`` (all per utterance, ``(B,)``; the offsets
    place a streamed slice on the utterance's absolute frames, zero for a whole utterance). The
    centre is clipped to the last real key, so every query of a whole utterance has a key.
    """
    b = t_len.shape[0]
    zero = torch.zeros(b, device=t_len.device)
    t_off = (zero if t_offset is None else t_offset.float())[:, None, None]
    n_off = (zero if n_offset is None else n_offset.float())[:, None, None]
    t = torch.arange(t_size, device=t_len.device, dtype=torch.float32)[None, :, None]
    n = torch.arange(n_size, device=t_len.device, dtype=torch.float32)[None, None, :]
    last = (n_len.float() - 1).clamp(min=0)[:, None, None]
    centre = torch.minimum((t + t_off) * centre_ratio.float()[:, None, None] - n_off, last)
    inside = (n - centre).abs() <= half_width.float()[:, None, None]
    real = lengths_mask(n_len, n_size)[:, None, :]
    return inside & real


def guided_attention_loss(attn: Tensor, t_len: Tensor, n_len: Tensor, g: float = 0.1) -> Tensor:
    """Eqs. 10-11: the mean over real ``(t, n)`` of ``attn[t, n] * (1 - exp(-(n/N - t/T)^2 / (2 g^2)))``.

    Args:
        attn: ``(B, T, N)`` attention weights (rows sum to 1 over the real keys).
        t_len, n_len: ``(B,)`` real query and key lengths.
        g: the concentration (the paper: 0.1).

    Each utterance is averaged over its own ``T * N`` and the batch mean is returned.
    """
    b, t_size, n_size = attn.shape
    t = torch.arange(t_size, device=attn.device, dtype=torch.float32)[None, :, None] / t_len.float()[:, None, None]
    n = torch.arange(n_size, device=attn.device, dtype=torch.float32)[None, None, :] / n_len.float()[:, None, None]
    w = 1.0 - torch.exp(-((n - t) ** 2) / (2.0 * g * g))
    real = lengths_mask(t_len, t_size)[:, :, None] & lengths_mask(n_len, n_size)[:, None, :]
    per = (attn * w * real).sum(dim=(1, 2)) / (t_len * n_len).float()
    return per.mean()


# -- blocks ---------------------------------------------------------------------------------------
class ConvStack(nn.Module):
    """``layers`` x (same-padded conv -> ReLU -> layer norm -> dropout), on ``(B, C, T)``, masked."""

    def __init__(self, channels: int, kernel: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=kernel // 2) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(layers))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask[:, None, :].to(x.dtype)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = torch.relu(conv(x * m))
            x = self.drop(norm(x.transpose(1, 2)).transpose(1, 2))
        return x * m


class WindowedAttention(nn.Module):
    """Multi-head scaled dot-product attention with a boolean mask, returning head-averaged weights."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.o = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: Tensor, key: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        b, t, h = query.shape
        n = key.shape[1]
        d = h // self.heads
        q = self.q(query).view(b, t, self.heads, d).transpose(1, 2)
        k = self.k(key).view(b, n, self.heads, d).transpose(1, 2)
        v = self.v(key).view(b, n, self.heads, d).transpose(1, 2)
        scores = q @ k.transpose(2, 3) / math.sqrt(d)
        scores = scores.masked_fill(~mask[:, None], MASKED)
        weights = torch.softmax(scores, dim=-1)
        out = (self.drop(weights) @ v).transpose(1, 2).reshape(b, t, h)
        return self.o(out), weights.mean(dim=1)


class CrossAttentionLayer(nn.Module):
    """Attention (post-norm, residual) then a feed-forward of a ``kernel`` convolution and a linear layer."""

    def __init__(self, hidden: int, heads: int, dropout: float, kernel: int = 9) -> None:
        super().__init__()
        self.attn = WindowedAttention(hidden, heads, dropout)
        self.norm1 = nn.LayerNorm(hidden)
        self.ffn_conv = nn.Conv1d(hidden, hidden * 4, kernel, padding=kernel // 2)
        self.ffn_out = nn.Linear(hidden * 4, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: Tensor, key: Tensor, mask: Tensor, query_mask: Tensor) -> tuple[Tensor, Tensor]:
        a, weights = self.attn(query, key, mask)
        x = self.norm1(query + self.drop(a))
        qm = query_mask[:, :, None].to(x.dtype)
        y = torch.relu(self.ffn_conv((x * qm).transpose(1, 2))).transpose(1, 2)
        x = self.norm2(x + self.drop(self.ffn_out(y)))
        return x * qm, weights


class RhythmVQ(nn.Module):
    """Vector quantiser with an exponential-moving-average codebook (van den Oord et al., appendix).

    ``forward(z, mask)`` -> ``(quantised with the straight-through gradient, indices,
    commitment loss ||z - sg[e]||^2)``; in training mode the codebook follows the assigned
    vectors' running means (decay ``decay``); ``embed(indices)`` looks codes up.
    """

    def __init__(self, codes: int, dim: int, decay: float = 0.99, eps: float = 1e-5) -> None:
        super().__init__()
        self.decay, self.eps = decay, eps
        self.register_buffer("codebook", torch.randn(codes, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(codes))
        self.register_buffer("embed_sum", self.codebook.clone())

    def embed(self, indices: Tensor) -> Tensor:
        return F.embedding(indices, self.codebook)

    def forward(self, z: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        flat = z[mask]                                              # (M, D)
        distances = torch.cdist(z, self.codebook[None].expand(z.shape[0], -1, -1))
        indices = distances.argmin(dim=-1)                          # (B, T)
        quantised = self.embed(indices)
        if self.training and flat.shape[0] > 0:
            with torch.no_grad():
                onehot = F.one_hot(indices[mask], self.codebook.shape[0]).to(z.dtype)   # (M, K)
                self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
                self.embed_sum.mul_(self.decay).add_(onehot.T @ flat.detach(), alpha=1 - self.decay)
                total = self.cluster_size.sum()
                size = (self.cluster_size + self.eps) / (total + self.codebook.shape[0] * self.eps) * total
                self.codebook.copy_(self.embed_sum / size[:, None])
        m = mask[:, :, None].to(z.dtype)
        commit = (((z - quantised.detach()) ** 2) * m).sum() / (m.sum() * z.shape[-1]).clamp(min=1)
        straight = z + (quantised - z).detach()
        return straight * m, indices, commit


class TimbreEncoder(nn.Module):
    """Mel frames -> one vector per utterance (convolutions, masked mean, linear)."""

    def __init__(self, n_mels: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.inp = nn.Conv1d(n_mels, hidden, 1)
        self.stack = ConvStack(hidden, 5, layers, 0.0)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, mel: Tensor, mask: Tensor) -> Tensor:
        h = self.stack(self.inp(mel), mask)
        m = mask[:, None, :].to(h.dtype)
        pooled = (h * m).sum(dim=2) / m.sum(dim=2).clamp(min=1)
        return self.out(pooled)


class FFTBlock(nn.Module):
    """FastSpeech 2's feed-forward transformer block, self-attention windowed to ``context`` frames each side."""

    def __init__(self, hidden: int, heads: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.layer = CrossAttentionLayer(hidden, heads, dropout, kernel)

    def forward(self, x: Tensor, mask: Tensor, window: Tensor) -> Tensor:
        return self.layer(x, x, window, mask)[0]


class FS2Decoder(nn.Module):
    """FastSpeech 2's mel decoder: FFT blocks, then a linear projection to the mel bands."""

    def __init__(self, cfg: AlignSTSConfig) -> None:
        super().__init__()
        self.context = cfg.decoder_context
        self.blocks = nn.ModuleList(FFTBlock(cfg.hidden, cfg.decoder_heads, cfg.decoder_kernel, 0.1)
                                    for _ in range(cfg.decoder_layers))
        self.out = nn.Linear(cfg.hidden, cfg.n_mels)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``(B, T, H)`` fused features -> ``(B, n_mels, T)`` normalised mel."""
        t = torch.arange(x.shape[1], device=x.device)
        window = ((t[None, :, None] - t[None, None, :]).abs() <= self.context) & mask[:, None, :]
        for block in self.blocks:
            x = block(x, mask, window)
        return self.out(x).transpose(1, 2) * mask[:, None, :].to(x.dtype)


def cosine_schedule(steps: int, s: float = 0.008) -> Tensor:
    """``alpha_bar`` of each step ``1..steps`` (Nichol and Dhariwal's cosine schedule), float64."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = (f / f[0]).clamp(min=1e-5)
    return alpha_bar[1:]


class Denoiser(nn.Module):
    """DiffSinger's non-causal WaveNet denoiser: gated dilated convolutions conditioned on the step and the features.

    Predicts the clean mel (a generator-based model, as ProDiff's teacher)."""

    def __init__(self, n_mels: int, cond: int, channels: int, layers: int, cycle: int) -> None:
        super().__init__()
        self.inp = nn.Conv1d(n_mels, channels, 1)
        self.step_mlp = nn.Sequential(nn.Linear(channels, channels * 4), nn.Mish(), nn.Linear(channels * 4, channels))
        self.channels = channels
        self.dilated = nn.ModuleList(nn.Conv1d(channels, 2 * channels, 3, padding=2 ** (i % cycle),
                                               dilation=2 ** (i % cycle)) for i in range(layers))
        self.conds = nn.ModuleList(nn.Conv1d(cond, 2 * channels, 1) for _ in range(layers))
        self.steps = nn.ModuleList(nn.Linear(channels, channels) for _ in range(layers))
        self.outs = nn.ModuleList(nn.Conv1d(channels, 2 * channels, 1) for _ in range(layers))
        self.skip_out = nn.Conv1d(channels, channels, 1)
        self.final = nn.Conv1d(channels, n_mels, 1)
        self.layers = layers

    def forward(self, x_t: Tensor, step: Tensor, cond: Tensor, mask: Tensor) -> Tensor:
        """``x_t`` ``(B, n_mels, T)``, ``step`` ``(B,)`` in ``1..steps``, ``cond`` ``(B, H, T)``."""
        m = mask[:, None, :].to(x_t.dtype)
        h = torch.relu(self.inp(x_t)) * m
        s = self.step_mlp(sinusoid(step.float()[:, None] * 100.0, self.channels))[:, 0]   # (B, C)
        skip = torch.zeros_like(h)
        for conv, c, st, out in zip(self.dilated, self.conds, self.steps, self.outs, strict=True):
            y = conv((h + st(s)[:, :, None]) * m) + c(cond)
            a, b = y.chunk(2, dim=1)
            y = out(torch.tanh(a) * torch.sigmoid(b))
            res, sk = y.chunk(2, dim=1)
            h = (h + res) / math.sqrt(2.0)
            skip = skip + sk
        skip = torch.relu(self.skip_out(skip / math.sqrt(self.layers)))
        return self.final(skip) * m


class DiffusionDecoder(nn.Module):
    """A few-step generator-based diffusion decoder (ProDiff's teacher): the network predicts ``x_0``.

    Training draws a step ``t`` per utterance, noises the normalised target mel to
    ``x_t = a_t x_0 + sqrt(1 - a_t^2) eps`` (``a_t = sqrt(alpha_bar_t)``) and returns the
    network's ``x_0``; inference starts from noise and walks ``t = steps .. 1``, each time
    predicting ``x_0`` and drawing ``x_{t-1}`` from the posterior ``q(x_{t-1} | x_t, x_0)``.
    """

    def __init__(self, cfg: AlignSTSConfig) -> None:
        super().__init__()
        self.steps = cfg.diffusion_steps
        self.net = Denoiser(cfg.n_mels, cfg.hidden, cfg.diffusion_channels, 5 * cfg.decoder_layers,
                            cfg.diffusion_dilation_cycle)
        alpha_bar = cosine_schedule(cfg.diffusion_steps)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        beta = 1 - alpha_bar / prev
        self.register_buffer("alpha_bar", alpha_bar.float(), persistent=False)
        # posterior q(x_{t-1} | x_t, x_0): mean = c0 x_0 + ct x_t, variance var
        self.register_buffer("c0", (prev.sqrt() * beta / (1 - alpha_bar)).float(), persistent=False)
        self.register_buffer("ct", ((1 - beta).sqrt() * (1 - prev) / (1 - alpha_bar)).float(), persistent=False)
        self.register_buffer("var", (beta * (1 - prev) / (1 - alpha_bar)).float(), persistent=False)

    def training_prediction(self, x0: Tensor, cond: Tensor, mask: Tensor) -> Tensor:
        b = x0.shape[0]
        step = torch.randint(1, self.steps + 1, (b,), device=x0.device)
        a = self.alpha_bar[step - 1][:, None, None]
        noise = torch.randn_like(x0)
        x_t = (a.sqrt() * x0 + (1 - a).sqrt() * noise) * mask[:, None, :].to(x0.dtype)
        return self.net(x_t, step, cond, mask)

    def sample(self, cond: Tensor, mask: Tensor, noise: Tensor) -> Tensor:
        """``noise`` ``(steps, B, n_mels, T)`` standard normal: the start and each step's draw (the last unused)."""
        m = mask[:, None, :].to(cond.dtype)
        x = noise[0] * m
        b = cond.shape[0]
        for k, t in enumerate(range(self.steps, 0, -1)):
            x0 = self.net(x, torch.full((b,), t, device=cond.device, dtype=torch.long), cond, mask)
            if t == 1:
                x = x0
            else:
                i = t - 1
                draw = noise[k + 1] if k + 1 < noise.shape[0] else torch.zeros_like(x)
                x = (self.c0[i] * x0 + self.ct[i] * x + self.var[i].sqrt() * draw) * m
        return x


def ssim_loss(pred: Tensor, target: Tensor, mask: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """``1 - SSIM`` of two ``(B, n_mels, T)`` mels as images (Wang et al.; a Gaussian window), over real frames.

    Inputs are normalised mels (about zero mean, unit deviation): the usual constants
    ``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2`` take a dynamic range ``L`` of 8.
    """
    coords = torch.arange(window, dtype=pred.dtype, device=pred.device) - window // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :])[None, None]
    m = mask[:, None, :].to(pred.dtype)
    x, y = (pred * m)[:, None], (target * m)[:, None]
    pad = window // 2

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(F.pad(z, (pad, pad, pad, pad), mode="replicate"), kernel)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * 8) ** 2, (0.03 * 8) ** 2
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    real = m[:, None].expand_as(ssim)
    return 1.0 - (ssim * real).sum() / real.sum().clamp(min=1)


class MultiWindowDiscriminator(nn.Module):
    """Wu and Luan's multi-window discriminator: one 2-D conv stack per window of 32, 64 and 128 frames.

    Each scores a random window of every utterance (the same windows for the real and the
    generated mel: ``starts`` from :meth:`draw`)."""

    SIZES = (32, 64, 128)

    def __init__(self, n_mels: int, channels: int = 32) -> None:
        super().__init__()

        def stack() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(channels, channels * 2, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(channels * 2, channels * 2, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(channels * 2, 1, 3, padding=1))

        self.stacks = nn.ModuleList(stack() for _ in self.SIZES)

    def draw(self, lengths: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        starts = []
        for size in self.SIZES:
            room = (lengths - size).clamp(min=0) + 1
            starts.append((torch.rand(lengths.shape, generator=generator) * room.float()).long())
        return starts

    def forward(self, mel: Tensor, starts: list[Tensor]) -> list[Tensor]:
        scores = []
        for size, stack, start in zip(self.SIZES, self.stacks, starts, strict=True):
            pad = F.pad(mel, (0, max(0, size - mel.shape[2])))
            windows = torch.stack([pad[i, :, int(s) : int(s) + size] for i, s in enumerate(start.tolist())])
            scores.append(stack(windows[:, None]).mean(dim=(1, 2, 3)))
        return scores


# -- the model ------------------------------------------------------------------------------------
def add_shared_parts(module: nn.Module, cfg: AlignSTSConfig) -> None:
    """What AlignSTS and its baselines (:mod:`.sts_baselines`) all have: ``cfg``, the normalisation buffers
    (the training set's mel and content mean and deviation; :meth:`AlignSTS.set_stats`) and the pitch encoder
    ``E_P`` (F0 classes embedded, convolutions)."""
    module.cfg = cfg
    module.register_buffer("mel_mean", torch.zeros(cfg.n_mels))
    module.register_buffer("mel_std", torch.ones(cfg.n_mels))
    module.register_buffer("content_mean", torch.zeros(cfg.content_dim))
    module.register_buffer("content_std", torch.ones(cfg.content_dim))
    module.pitch_embed = nn.Embedding(cfg.pitch_bins, cfg.hidden)
    module.pitch_encoder = ConvStack(cfg.hidden, cfg.pitch_kernel, cfg.pitch_layers, cfg.encoder_dropout)


class AlignSTS(nn.Module):
    """See the module docstring. ``forward`` trains; :meth:`infer` converts."""

    def __init__(self, cfg: AlignSTSConfig) -> None:
        super().__init__()
        add_shared_parts(self, cfg)
        h = cfg.hidden
        self.rhythm_in = nn.Conv1d(1, h, 1)
        self.rhythm_encoder = ConvStack(h, cfg.rhythm_kernel, cfg.rhythm_layers, cfg.encoder_dropout)
        self.content_in = nn.Sequential(nn.Conv1d(cfg.content_dim, cfg.content_bottleneck, 1),
                                        nn.Conv1d(cfg.content_bottleneck, h, 1))
        self.content_encoder = ConvStack(h, cfg.content_kernel, cfg.content_layers, cfg.encoder_dropout)
        self.vq = RhythmVQ(cfg.vq_codes, h, cfg.vq_decay)
        self.rp_attention = CrossAttentionLayer(h, cfg.rp_heads, 0.1, cfg.rp_ffn_kernel)
        self.rp_convs = ConvStack(h, cfg.rp_conv_kernel, cfg.rp_conv_layers, cfg.rp_dropout)
        self.rp_out = nn.Linear(h, cfg.vq_codes)
        self.aligner = nn.ModuleList(CrossAttentionLayer(h, cfg.aligner_heads, cfg.aligner_dropout)
                                     for _ in range(cfg.aligner_layers))
        self.timbre = TimbreEncoder(cfg.n_mels, h, cfg.timbre_layers)
        self.decoder = DiffusionDecoder(cfg) if cfg.decoder == "diffusion" else FS2Decoder(cfg)

    def set_stats(self, mel_mean: np.ndarray, mel_std: np.ndarray, content_mean: np.ndarray,
                  content_std: np.ndarray) -> None:
        for name, value in (("mel_mean", mel_mean), ("mel_std", mel_std), ("content_mean", content_mean),
                            ("content_std", content_std)):
            v = torch.as_tensor(np.asarray(value, np.float32))
            if name.endswith("std"):
                v = v.clamp(min=1e-3)
            getattr(self, name).copy_(v)

    # -- pieces shared by training and inference --------------------------------------------------
    def _attention_inputs(self, query: Tensor, enc: dict[str, Tensor], t_len: Tensor, n_len: Tensor,
                          share: float) -> tuple[Tensor, Tensor, Tensor]:
        """Query and keys (the content) with their positions added, and the window mask.

        Positions are absolute content frames: key ``n`` at ``n + n_offset``, query ``t`` at its
        window centre ``(t + t_offset) * ratio``; the half-width follows ``window_mode``.
        """
        cfg, x_c, ratio = self.cfg, enc["x_c"], enc["ratio"]
        if cfg.window_mode == "relative":
            half = (share * n_len.float() / 2).clamp(min=1.0)
        else:
            half = torch.full_like(n_len, cfg.window_frames, dtype=torch.float32)
        t_off, n_off = enc["t_offset"], enc["n_offset"]
        window = window_mask(t_len, n_len, query.shape[1], x_c.shape[1], centre_ratio=ratio, half_width=half,
                             t_offset=t_off, n_offset=n_off)
        t_pos = (torch.arange(query.shape[1], device=query.device)[None, :] + t_off[:, None]) * ratio[:, None]
        n_pos = torch.arange(x_c.shape[1], device=x_c.device)[None, :] + n_off[:, None]
        return query + sinusoid(t_pos, cfg.hidden), x_c + sinusoid(n_pos, cfg.hidden), window

    def encode(self, content: Tensor, n_len: Tensor, f0_bins: Tensor, t_len: Tensor, timbre_mel: Tensor,
               timbre_len: Tensor, t_offset: Tensor | None = None, n_offset: Tensor | None = None,
               ratio: Tensor | None = None) -> dict[str, Tensor]:
        """Content ``(B, content_dim, N)``, F0 classes ``(B, T)``, timbre mel ``(B, n_mels, M)`` -> encodings.

        ``t_offset``/``n_offset`` ``(B,)``: the absolute frame of the first target and content frame
        (a streamed slice; zero for a whole utterance). ``ratio`` ``(B,)``: content frames per target
        frame, the attention windows' slope (default ``N / T`` of the given lengths)."""
        t_size, n_size = f0_bins.shape[1], content.shape[2]
        t_mask, n_mask = lengths_mask(t_len, t_size), lengths_mask(n_len, n_size)
        c = (content - self.content_mean[None, :, None]) / self.content_std[None, :, None]
        x_c = self.content_encoder(self.content_in(c * n_mask[:, None, :]), n_mask).transpose(1, 2)   # (B, N, H)
        x_p = self.pitch_encoder(self.pitch_embed(f0_bins).transpose(1, 2), t_mask).transpose(1, 2)   # (B, T, H)
        mel = (timbre_mel - self.mel_mean[None, :, None]) / self.mel_std[None, :, None]
        timbre = self.timbre(mel, lengths_mask(timbre_len, timbre_mel.shape[2]))                      # (B, H)
        zero = torch.zeros(content.shape[0], device=content.device)
        return {"x_c": x_c, "x_p": x_p, "timbre": timbre, "t_mask": t_mask, "n_mask": n_mask,
                "t_offset": zero if t_offset is None else t_offset.float(),
                "n_offset": zero if n_offset is None else n_offset.float(),
                "ratio": n_len.float() / t_len.float() if ratio is None else ratio.float()}

    def predict_rhythm(self, enc: dict[str, Tensor], t_len: Tensor, n_len: Tensor) -> tuple[Tensor, Tensor]:
        """Rhythm-code logits ``(B, T, codes)`` and the predictor's attention ``(B, T, N)``."""
        q, k, window = self._attention_inputs(enc["x_p"], enc, t_len, n_len, self.cfg.rp_window)
        y, attn = self.rp_attention(q, k, window, enc["t_mask"])
        y = self.rp_convs(y.transpose(1, 2), enc["t_mask"]).transpose(1, 2)
        return self.rp_out(y), attn

    def align(self, x_r: Tensor, enc: dict[str, Tensor], t_len: Tensor, n_len: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Content re-aligned to the rhythm ``(B, T, H)`` and each aligner layer's head-averaged weights."""
        q, k, window = self._attention_inputs(x_r, enc, t_len, n_len, self.cfg.aligner_window)
        weights = []
        for layer in self.aligner:
            q, w = layer(q, k, window, enc["t_mask"])
            weights.append(w)
        return q, weights

    def _fuse(self, aligned: Tensor, x_r: Tensor, enc: dict[str, Tensor]) -> Tensor:
        fused = aligned + x_r + enc["x_p"] + enc["timbre"][:, None, :]
        return fused * enc["t_mask"][:, :, None].to(fused.dtype)

    # -- training ---------------------------------------------------------------------------------
    def forward(self, content: Tensor, content_len: Tensor, f0_bins: Tensor, rhythm: Tensor, mel: Tensor,
                mel_len: Tensor, timbre_mel: Tensor, timbre_len: Tensor) -> dict[str, Tensor]:
        """Losses of one batch. ``rhythm`` ``(B, T)`` and ``mel`` ``(B, n_mels, T)`` are the target singing's."""
        cfg = self.cfg
        enc = self.encode(content, content_len, f0_bins, mel_len, timbre_mel, timbre_len)
        t_mask = enc["t_mask"]
        z = self.rhythm_encoder(self.rhythm_in(rhythm[:, None, :]), t_mask).transpose(1, 2)
        x_r, codes, commit = self.vq(z, t_mask)
        logits, _ = self.predict_rhythm(enc, mel_len, content_len)
        ce = F.cross_entropy(logits[t_mask], codes[t_mask])
        aligned, weights = self.align(x_r, enc, mel_len, content_len)
        guided = sum(guided_attention_loss(w, mel_len, content_len, cfg.guided_g) for w in weights) / len(weights)
        cond = self._fuse(aligned, x_r, enc)
        target = (mel - self.mel_mean[None, :, None]) / self.mel_std[None, :, None] * t_mask[:, None, :]
        if cfg.decoder == "diffusion":
            pred = self.decoder.training_prediction(target, cond.transpose(1, 2), t_mask)
        else:
            pred = self.decoder(cond, t_mask)
        m = t_mask[:, None, :].to(pred.dtype)
        mae = ((pred - target).abs() * m).sum() / (m.sum() * cfg.n_mels)
        ssim = ssim_loss(pred, target, t_mask)
        loss = (mae + cfg.ssim_weight * ssim + cfg.commitment * commit + cfg.rhythm_weight * ce
                + cfg.guided_weight * guided)
        accuracy = (logits.argmax(-1)[t_mask] == codes[t_mask]).float().mean()
        return {"loss": loss, "mae": mae, "ssim": ssim, "commit": commit, "rhythm_ce": ce,
                "rhythm_acc": accuracy, "guided": guided, "pred": pred, "target": target}

    # -- inference --------------------------------------------------------------------------------
    @torch.no_grad()
    def infer(self, content: Tensor, content_len: Tensor, f0_bins: Tensor, t_len: Tensor, timbre_mel: Tensor,
              timbre_len: Tensor, noise: Tensor | None = None, rhythm: Tensor | None = None,
              t_offset: Tensor | None = None, n_offset: Tensor | None = None,
              ratio: Tensor | None = None) -> dict[str, Tensor]:
        """Convert: the predicted rhythm codes (or, given ``rhythm``, the VQ's: an oracle), the aligned
        content, and the mel ``(B, n_mels, T)`` in log units. ``noise`` ``(steps, B, n_mels, T)`` for the
        diffusion decoder (default: zeros, the posterior means from a zero start)."""
        enc = self.encode(content, content_len, f0_bins, t_len, timbre_mel, timbre_len, t_offset, n_offset, ratio)
        t_mask = enc["t_mask"]
        if rhythm is None:
            logits, rp_attn = self.predict_rhythm(enc, t_len, content_len)
            codes = logits.argmax(-1)
        else:
            z = self.rhythm_encoder(self.rhythm_in(rhythm[:, None, :]), t_mask).transpose(1, 2)
            _, codes, _ = self.vq(z, t_mask)
            rp_attn = None
        x_r = self.vq.embed(codes) * t_mask[:, :, None].to(enc["x_p"].dtype)
        aligned, weights = self.align(x_r, enc, t_len, content_len)
        cond = self._fuse(aligned, x_r, enc)
        if self.cfg.decoder == "diffusion":
            if noise is None:
                noise = torch.zeros(self.cfg.diffusion_steps, *cond.shape[:1], self.cfg.n_mels, cond.shape[1])
            norm = self.decoder.sample(cond.transpose(1, 2), t_mask, noise)
        else:
            norm = self.decoder(cond, t_mask)
        mel = norm * self.mel_std[None, :, None] + self.mel_mean[None, :, None]
        return {"mel": mel * t_mask[:, None, :].to(mel.dtype), "codes": codes, "attention": weights[-1],
                "rp_attention": rp_attn}

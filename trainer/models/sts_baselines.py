"""The AlignSTS paper's baselines, smaller: Parekh et al. (2020) and SpeechSplit 2.0 (Chan et al., 2022).

Both take what AlignSTS takes (content, the target F0 classes, the speech's mel) and give what it
gives (a sung mel), so they train with :mod:`..alignsts_train`, export with
:mod:`..alignsts_export` and run in the ``alignsts`` converter unchanged. Neither aligns: as in
the AlignSTS paper's section 4.1.4, the speech is **stretched linearly** to the length of the
target F0 contour. Target frame ``t`` reads the speech at content position ``t * ratio``
(``ratio`` = content frames per target frame, ``N / T`` for a whole utterance) and at mel
position ``t * ratio * mel_per_content``, with linear interpolation; every later step is a
convolution, so an output frame depends on a bounded neighbourhood of its inputs, and a chunked
run equals the whole one (:class:`~voxflip.engine.converters.alignsts_context.AlignSTSContext`).

- :class:`ParekhSTS`, after "Speech-to-singing conversion in an encoder-decoder framework":
  the stretched speech spectrogram and the target F0 are encoded apart, their latents
  concatenated, and a convolutional decoder predicts the singing's spectrogram. Here the
  spectrogram is the 80-band log-mel and a voice vector from the speech is added (the timbre
  encoder AlignSTS has); the encoder and decoder are stacks of ``baseline_layers`` and
  ``decoder_layers`` convolutions.
- :class:`SpeechSplit2STS`, after SpeechSplit 2.0: three encoders with narrow bottlenecks
  (content 8 wide, rhythm 1, pitch 32: SpeechSplit's), a voice vector and a decoder. Its
  rhythm encoder reads the speech's spectral envelope stretched to the target length
  (``ss_rhythm_input = "source"``, the AlignSTS paper's "w/o SE") or the target singing's
  (``"target"``, "w/ SE", its appendix D: an oracle that needs the real singing). The content
  encoder reads the stretched content features (Whisper encoder states, as AlignSTS here), the
  pitch encoder the F0 classes. SpeechSplit down-samples each code by 8 and copies it back;
  here an ``ss_smooth``-frame moving average smooths it instead (translation-equivariant, so
  streaming stays exact). The LSTMs of the original are convolutions here.

Both are trained with AlignSTS's reconstruction losses (MAE and SSIM on the normalised mel), so a
table of the three compares architectures, not losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxflip.engine.converters.alignsts_context import BASELINES

from .alignsts import (
    AlignSTS,
    AlignSTSConfig,
    ConvStack,
    TimbreEncoder,
    add_shared_parts,
    lengths_mask,
    ssim_loss,
)


def stretch_weights(t_size: int, n_len: Tensor, n_size: int, ratio: Tensor, t_offset: Tensor,
                    n_offset: Tensor) -> Tensor:
    """``(B, T, N)`` linear-interpolation weights: target frame ``t`` reads position ``(t + t_offset) * ratio
    - n_offset``, clipped to the real frames ``[0, n_len - 1]``. Each row sums to 1 (the linear stretch as an
    alignment matrix; what the ``attention`` output of a baseline shows)."""
    t = torch.arange(t_size, device=n_len.device, dtype=torch.float32)[None, :, None]
    n = torch.arange(n_size, device=n_len.device, dtype=torch.float32)[None, None, :]
    last = (n_len.float() - 1).clamp(min=0)[:, None, None]
    pos = ((t + t_offset.float()[:, None, None]) * ratio.float()[:, None, None] - n_offset.float()[:, None, None])
    pos = torch.minimum(pos.clamp(min=0.0), last)
    return (1.0 - (n - pos).abs()).clamp(min=0.0)


def stretch_gather(x: Tensor, x_len: Tensor, t_size: int, positions_per_frame: Tensor, t_offset: Tensor) -> Tensor:
    """``x`` ``(B, C, M)`` read at ``(t + t_offset) * positions_per_frame`` (clipped to ``[0, x_len - 1]``) with
    linear interpolation -> ``(B, C, T)``. For long inputs (a mel), where a ``T x M`` matrix would not fit."""
    t = torch.arange(t_size, device=x.device, dtype=torch.float32)[None, :]
    last = (x_len.float() - 1).clamp(min=0)[:, None]
    pos = torch.minimum(((t + t_offset.float()[:, None]) * positions_per_frame.float()[:, None]).clamp(min=0.0), last)
    lo = pos.floor()
    frac = (pos - lo)[:, None, :]
    lo_i = lo.long()
    hi_i = torch.minimum(lo + 1, last).long()
    c = x.shape[1]
    a = torch.gather(x, 2, lo_i[:, None, :].expand(-1, c, -1))
    b = torch.gather(x, 2, hi_i[:, None, :].expand(-1, c, -1))
    return a + (b - a) * frac


class _Baseline(nn.Module):
    """What both baselines share: the normalisation buffers, the pitch and voice encoders, the
    stretch of the speech, the losses and the inference interface of :class:`~.alignsts.AlignSTS`.

    Each baseline defines ``_latent(content, content_len, f0_bins, t_len, timbre_mel, timbre_len, t_offset,
    n_offset, ratio, target_mel) -> (latent (B, H, T), stretch weights (B, T, N))``: what it makes of
    its inputs before the voice vector and the decoder."""

    def __init__(self, cfg: AlignSTSConfig) -> None:
        super().__init__()
        add_shared_parts(self, cfg)
        h = cfg.hidden
        self.timbre = TimbreEncoder(cfg.n_mels, h, cfg.timbre_layers)
        self.decoder = ConvStack(h, cfg.baseline_kernel, cfg.decoder_layers, cfg.encoder_dropout)
        self.out = nn.Conv1d(h, cfg.n_mels, 1)

    set_stats = AlignSTS.set_stats   # the same buffers, set the same way

    def _norm_mel(self, mel: Tensor) -> Tensor:
        return (mel - self.mel_mean[None, :, None]) / self.mel_std[None, :, None]

    def _speech_mel(self, timbre_mel: Tensor, timbre_len: Tensor, t_size: int, ratio: Tensor,
                    t_offset: Tensor) -> Tensor:
        """The speech's normalised mel stretched onto the target frames ``(B, n_mels, T)``."""
        mel = self._norm_mel(timbre_mel) * lengths_mask(timbre_len, timbre_mel.shape[2])[:, None, :]
        return stretch_gather(mel, timbre_len, t_size, ratio * self.cfg.mel_per_content, t_offset)

    def _decode(self, latent: Tensor, t_mask: Tensor) -> Tensor:
        """``(B, H, T)`` -> the normalised mel ``(B, n_mels, T)``."""
        return self.out(self.decoder(latent, t_mask)) * t_mask[:, None, :].to(latent.dtype)

    def _run(self, content: Tensor, content_len: Tensor, f0_bins: Tensor, t_len: Tensor, timbre_mel: Tensor,
             timbre_len: Tensor, t_offset: Tensor | None, n_offset: Tensor | None, ratio: Tensor | None,
             target_mel: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """The normalised mel, the target mask and the stretch's weights."""
        zero = torch.zeros(content.shape[0], device=content.device)
        t_offset = zero if t_offset is None else t_offset.float()
        n_offset = zero if n_offset is None else n_offset.float()
        ratio = content_len.float() / t_len.float() if ratio is None else ratio.float()
        t_mask = lengths_mask(t_len, f0_bins.shape[1])
        latent, weights = self._latent(content, content_len, f0_bins, t_len, timbre_mel, timbre_len, t_offset,
                                       n_offset, ratio, target_mel)
        mel_dims = t_mask[:, None, :].to(latent.dtype)
        timbre = self.timbre(self._norm_mel(timbre_mel), lengths_mask(timbre_len, timbre_mel.shape[2]))
        return self._decode((latent + timbre[:, :, None]) * mel_dims, t_mask), t_mask, weights

    def _pitch(self, f0_bins: Tensor, t_mask: Tensor) -> Tensor:
        return self.pitch_encoder(self.pitch_embed(f0_bins).transpose(1, 2), t_mask)

    # -- training ---------------------------------------------------------------------------------
    def forward(self, content: Tensor, content_len: Tensor, f0_bins: Tensor, rhythm: Tensor, mel: Tensor,
                mel_len: Tensor, timbre_mel: Tensor, timbre_len: Tensor) -> dict[str, Tensor]:
        """Losses of one batch (``rhythm``, the singing's eq. 3 contour, is not read: neither baseline has it)."""
        pred, t_mask, _ = self._run(content, content_len, f0_bins, mel_len, timbre_mel, timbre_len, None, None, None,
                                    mel)
        target = self._norm_mel(mel) * t_mask[:, None, :]
        m = t_mask[:, None, :].to(pred.dtype)
        mae = ((pred - target).abs() * m).sum() / (m.sum() * self.cfg.n_mels)
        ssim = ssim_loss(pred, target, t_mask)
        return {"loss": mae + self.cfg.ssim_weight * ssim, "mae": mae, "ssim": ssim, "pred": pred, "target": target}

    # -- inference --------------------------------------------------------------------------------
    @torch.no_grad()
    def infer(self, content: Tensor, content_len: Tensor, f0_bins: Tensor, t_len: Tensor, timbre_mel: Tensor,
              timbre_len: Tensor, noise: Tensor | None = None, rhythm: Tensor | None = None,
              t_offset: Tensor | None = None, n_offset: Tensor | None = None, ratio: Tensor | None = None,
              target_mel: Tensor | None = None) -> dict[str, Tensor]:
        """:meth:`AlignSTS.infer`'s interface: the mel ``(B, n_mels, T)`` in log units, ``codes`` (zeros: no
        rhythm codes) and ``attention``, the linear stretch's weights ``(B, T, N)``. ``target_mel``: the
        real singing's mel, for a SpeechSplit reading the target's envelope."""
        norm, t_mask, weights = self._run(content, content_len, f0_bins, t_len, timbre_mel, timbre_len, t_offset,
                                          n_offset, ratio, target_mel)
        mel = norm * self.mel_std[None, :, None] + self.mel_mean[None, :, None]
        codes = torch.zeros_like(f0_bins)
        return {"mel": mel * t_mask[:, None, :].to(mel.dtype), "codes": codes, "attention": weights,
                "rp_attention": None}


class ParekhSTS(_Baseline):
    """Parekh et al. (2020), smaller: the stretched speech mel and the target F0, encoded apart, concatenated,
    decoded by convolutions. See the module docstring."""

    def __init__(self, cfg: AlignSTSConfig) -> None:
        super().__init__(cfg)
        h = cfg.hidden
        self.speech_in = nn.Conv1d(cfg.n_mels, h, 1)
        self.speech_encoder = ConvStack(h, cfg.baseline_kernel, cfg.baseline_layers, cfg.encoder_dropout)
        self.fuse = nn.Conv1d(2 * h, h, 1)

    def _latent(self, content, content_len, f0_bins, t_len, timbre_mel, timbre_len, t_offset, n_offset, ratio,
                target_mel):
        t_size = f0_bins.shape[1]
        t_mask = lengths_mask(t_len, t_size)
        speech = self._speech_mel(timbre_mel, timbre_len, t_size, ratio, t_offset)
        x_s = self.speech_encoder(self.speech_in(speech), t_mask)
        latent = self.fuse(torch.cat([x_s, self._pitch(f0_bins, t_mask)], dim=1))
        # the alignment it implies, on the content axis (what an AlignSTS graph's attention output shows)
        weights = stretch_weights(t_size, content_len, content.shape[2], ratio, t_offset, n_offset)
        return latent, weights


class SpeechSplit2STS(_Baseline):
    """SpeechSplit 2.0, smaller: content, rhythm and pitch codes through narrow bottlenecks, a voice vector,
    a convolutional decoder. See the module docstring."""

    def __init__(self, cfg: AlignSTSConfig) -> None:
        super().__init__(cfg)
        h = cfg.hidden
        self.content_in = nn.Sequential(nn.Conv1d(cfg.content_dim, cfg.content_bottleneck, 1),
                                        nn.Conv1d(cfg.content_bottleneck, h, 1))
        self.content_encoder = ConvStack(h, cfg.baseline_kernel, cfg.baseline_layers, cfg.encoder_dropout)
        self.rhythm_in = nn.Conv1d(cfg.n_mels, h, 1)
        self.rhythm_encoder = ConvStack(h, cfg.baseline_kernel, cfg.baseline_layers, cfg.encoder_dropout)
        self.content_code = nn.Conv1d(h, cfg.ss_content_dim, 1)
        self.rhythm_code = nn.Conv1d(h, cfg.ss_rhythm_dim, 1)
        self.pitch_code = nn.Conv1d(h, cfg.ss_pitch_dim, 1)
        self.codes_in = nn.Conv1d(cfg.ss_content_dim + cfg.ss_rhythm_dim + cfg.ss_pitch_dim, h, 1)

    def _smooth(self, code: Tensor, t_mask: Tensor) -> Tensor:
        k = self.cfg.ss_smooth
        m = t_mask[:, None, :].to(code.dtype)
        return F.avg_pool1d(code * m, k, stride=1, padding=k // 2, count_include_pad=True) * m

    def _latent(self, content, content_len, f0_bins, t_len, timbre_mel, timbre_len, t_offset, n_offset, ratio,
                target_mel):
        t_size = f0_bins.shape[1]
        t_mask = lengths_mask(t_len, t_size)
        weights = stretch_weights(t_size, content_len, content.shape[2], ratio, t_offset, n_offset)
        n_mask = lengths_mask(content_len, content.shape[2])
        c = (content - self.content_mean[None, :, None]) / self.content_std[None, :, None] * n_mask[:, None, :]
        stretched = self.content_in(c) @ weights.transpose(1, 2)                 # (B, H, T)
        x_c = self.content_code(self.content_encoder(stretched, t_mask))
        if self.cfg.ss_rhythm_input == "target":
            if target_mel is None:
                raise ValueError("this SpeechSplit reads the target singing's envelope (ss_rhythm_input = \"target\"): "
                                 "give target_mel")
            envelope = self._norm_mel(target_mel) * t_mask[:, None, :]
        else:
            envelope = self._speech_mel(timbre_mel, timbre_len, t_size, ratio, t_offset)
        x_r = self.rhythm_code(self.rhythm_encoder(self.rhythm_in(envelope), t_mask))
        x_p = self.pitch_code(self._pitch(f0_bins, t_mask))
        codes = torch.cat([self._smooth(x, t_mask) for x in (x_c, x_r, x_p)], dim=1)
        return self.codes_in(codes), weights


def build_model(cfg: AlignSTSConfig) -> nn.Module:
    """The model ``cfg.architecture`` names (untrained)."""
    if cfg.architecture not in BASELINES:
        return AlignSTS(cfg)
    return {"parekh": ParekhSTS, "speechsplit2": SpeechSplit2STS}[cfg.architecture](cfg)

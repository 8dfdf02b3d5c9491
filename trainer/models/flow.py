"""A causal normalising flow over mel frames (after Glow / Glow-TTS's decoder).

Blocks of ActNorm, an invertible 1x1 convolution (channel mixing per frame) and
an affine coupling whose network (:class:`~.layers.GatedWaveNet`) is causal.
``forward(x) -> (z, logdet)`` is used for training (speech mel -> latent);
``inverse(z) -> x`` for synthesis. Every part is causal with no lookahead, so
the inverse streams: ``init_state`` / ``inverse_step`` keep only the coupling
networks' convolution caches.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import GatedWaveNet


class ActNorm(nn.Module):
    """Per-channel scale and bias, initialised from the first batch (data-dependent init)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))
        self.register_buffer("initialised", torch.tensor(False))

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if not bool(self.initialised) and self.training:
            with torch.no_grad():
                n = mask.sum().clamp(min=1.0)
                mean = (x * mask).sum(dim=(0, 2), keepdim=True) / n
                var = (((x - mean) * mask) ** 2).sum(dim=(0, 2), keepdim=True) / n
                self.log_scale.data.copy_(-0.5 * torch.log(var + 1e-6))
                self.bias.data.copy_(-mean * torch.exp(self.log_scale))
                self.initialised.fill_(True)
        z = (x * torch.exp(self.log_scale) + self.bias) * mask
        logdet = self.log_scale.sum() * mask.sum(dim=(1, 2))
        return z, logdet

    def inverse(self, z: Tensor) -> Tensor:
        return (z - self.bias) * torch.exp(-self.log_scale)


class InvConv1x1(nn.Module):
    """An invertible channel-mixing matrix applied to every frame."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        self.weight = nn.Parameter(w)
        # The inverse matrix, computed once for inference and export (ONNX has no matrix inverse).
        self.register_buffer("inv_weight", torch.eye(channels), persistent=False)
        self.inverse_ready = False

    def refresh_inverse(self) -> None:
        with torch.no_grad():
            self.inv_weight.copy_(torch.linalg.inv(self.weight))
        self.inverse_ready = True

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        z = torch.einsum("ij,bjt->bit", self.weight, x) * mask
        logdet = torch.linalg.slogdet(self.weight)[1] * mask.sum(dim=(1, 2))
        return z, logdet

    def inverse(self, z: Tensor) -> Tensor:
        inv = self.inv_weight if self.inverse_ready else torch.linalg.inv(self.weight)
        return nn.functional.conv1d(z, inv[:, :, None])   # one Conv op in an ONNX graph


class AffineCoupling(nn.Module):
    """Transforms one half of the channels with a scale and shift computed causally from the other."""

    def __init__(self, channels: int, hidden: int, layers: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.half = channels // 2
        self.coupled = channels - self.half
        self.net = GatedWaveNet(self.half, hidden, 2 * self.coupled, layers, kernel_size)

    def _params(self, h: Tensor) -> tuple[Tensor, Tensor]:
        # split by constant sizes (chunk() exports as shape arithmetic: ops a streaming step pays per call)
        log_s, t = h.split([self.coupled, self.coupled], dim=1)
        return torch.tanh(log_s), t  # bounded scales keep training and inversion stable

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        xa, xb = x[:, : self.half], x[:, self.half :]
        log_s, t = self._params(self.net(xa))
        zb = (xb * torch.exp(log_s) + t) * mask
        return torch.cat([xa, zb], dim=1), (log_s * mask).sum(dim=(1, 2))

    def inverse(self, z: Tensor) -> Tensor:
        za, zb = z[:, : self.half], z[:, self.half :]
        log_s, t = self._params(self.net(za))
        return torch.cat([za, (zb - t) * torch.exp(-log_s)], dim=1)

    def inverse_step(self, z: Tensor, cache: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        za, zb = z[:, : self.half], z[:, self.half :]
        h, cache = self.net.step(za, cache)
        log_s, t = self._params(h)
        return torch.cat([za, (zb - t) * torch.exp(-log_s)], dim=1), cache


class FlowDecoder(nn.Module):
    """``blocks`` x (ActNorm, InvConv1x1, AffineCoupling), alternating which half couples."""

    def __init__(self, channels: int, blocks: int = 6, hidden: int = 96, layers: int = 3) -> None:
        super().__init__()
        self.channels = channels
        self.actnorms = nn.ModuleList(ActNorm(channels) for _ in range(blocks))
        self.invconvs = nn.ModuleList(InvConv1x1(channels) for _ in range(blocks))
        self.couplings = nn.ModuleList(AffineCoupling(channels, hidden, layers) for _ in range(blocks))

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x -> (z, logdet per item)."""
        logdet = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for norm, inv, coupling in zip(self.actnorms, self.invconvs, self.couplings, strict=True):
            x, ld1 = norm(x, mask)
            x, ld2 = inv(x, mask)
            x, ld3 = coupling(x, mask)
            logdet = logdet + ld1 + ld2 + ld3
        return x, logdet

    def inverse(self, z: Tensor) -> Tensor:
        for norm, inv, coupling in zip(reversed(self.actnorms), reversed(self.invconvs), reversed(self.couplings),
                                       strict=True):
            z = coupling.inverse(z)
            z = inv.inverse(z)
            z = norm.inverse(z)
        return z

    def refresh_inverse(self) -> None:
        """Compute the 1x1 convolutions' inverses once (before inference or export; after training)."""
        for inv in self.invconvs:
            inv.refresh_inverse()

    def train(self, mode: bool = True) -> FlowDecoder:
        super().train(mode)
        if mode:
            for inv in self.invconvs:
                inv.inverse_ready = False  # training changes the weights: recompute inverses when asked
        return self

    def init_state(self, batch: int = 1, device: torch.device | None = None) -> list[list[Tensor]]:
        return [c.net.init_cache(batch, device) for c in self.couplings]

    def inverse_step(self, z: Tensor, state: list[list[Tensor]]) -> tuple[Tensor, list[list[Tensor]]]:
        new_state: list[list[Tensor]] = [[] for _ in self.couplings]
        k = len(self.couplings)
        for i, (norm, inv, coupling) in enumerate(zip(reversed(self.actnorms), reversed(self.invconvs),
                                                      reversed(self.couplings), strict=True)):
            idx = k - 1 - i
            z, new_state[idx] = coupling.inverse_step(z, state[idx])
            z = inv.inverse(z)
            z = norm.inverse(z)
        return z, new_state

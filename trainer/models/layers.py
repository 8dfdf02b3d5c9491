"""Causal building blocks with explicit streaming state.

Every temporal convolution here is causal: output frame ``t`` sees input frames
``t - (kernel - 1) * dilation .. t``. A model that needs lookahead gets it by
delaying its output (see :class:`~.s2s_flow.ToSpeechFlow`), so each layer streams
with a cache of its last ``(kernel - 1) * dilation`` input frames and nothing
else. ``forward(x)`` runs a whole sequence (zeros before it); ``step(x, cache)``
runs a chunk and returns the new cache; concatenated steps equal ``forward``.
Layout is ``[batch, channels, frames]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CausalConv1d(nn.Module):
    """A causal 1-D convolution with an explicit cache for streaming."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)
        self.context = (kernel_size - 1) * dilation
        self.in_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(nn.functional.pad(x, (self.context, 0)))

    def init_cache(self, batch: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.zeros(batch, self.in_channels, self.context, device=device, dtype=dtype)

    def step(self, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        full = torch.cat([cache, x], dim=2)
        out = self.conv(full)
        new_cache = full[:, :, -self.context :] if self.context else cache   # a static slice in the ONNX graph
        return out, new_cache


class ChannelNorm(nn.Module):
    """Layer norm over channels, per frame (so it streams).

    Exported as one LayerNormalization op (not nine elementwise ones), with ``gamma`` and ``beta``
    as its scale and bias: ``(channels,)`` each. Checkpoints written before December 2026 hold them
    as ``(1, channels, 1)`` and load unchanged.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.channels = channels
        self.eps = eps

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in ("gamma", "beta"):
            value = state_dict.get(prefix + name)
            if value is not None and value.dim() == 3 and value.shape[0] == value.shape[2] == 1:
                state_dict[prefix + name] = value.reshape(-1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        y = nn.functional.layer_norm(x.transpose(1, 2), (self.channels,), self.gamma, self.beta, self.eps)
        return y.transpose(1, 2)


class ResidualBlock(nn.Module):
    """norm -> causal conv -> GELU -> 1x1 conv, added to the input."""

    def __init__(self, channels: int, kernel_size: int, dilation: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = ChannelNorm(channels)
        self.conv = CausalConv1d(channels, channels, kernel_size, dilation)
        self.proj = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop(self.proj(nn.functional.gelu(self.conv(self.norm(x)))))

    def step(self, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        y, cache = self.conv.step(self.norm(x), cache)
        return x + self.proj(nn.functional.gelu(y)), cache


class GatedWaveNet(nn.Module):
    """Dilated causal gated convolutions with skip connections (a coupling layer's network)."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, layers: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.inp = nn.Conv1d(in_channels, hidden, 1)
        self.convs = nn.ModuleList(CausalConv1d(hidden, 2 * hidden, kernel_size, dilation=2**i) for i in range(layers))
        self.res = nn.ModuleList(nn.Conv1d(hidden, hidden, 1) for _ in range(layers))
        self.out = nn.Conv1d(hidden, out_channels, 1)
        nn.init.zeros_(self.out.weight)  # a new coupling starts as the identity
        nn.init.zeros_(self.out.bias)

    def _gate(self, y: Tensor) -> Tensor:
        # split by constant sizes (chunk() exports as shape arithmetic: ops a streaming step pays per call)
        a, b = y.split([self.hidden, self.hidden], dim=1)
        return torch.tanh(a) * torch.sigmoid(b)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)
        skip: Tensor | None = None
        for conv, res in zip(self.convs, self.res, strict=True):
            g = self._gate(conv(h))
            h = h + res(g)
            skip = g if skip is None else skip + g
        return self.out(torch.zeros_like(h) if skip is None else skip)

    def init_cache(self, batch: int, device: torch.device | None = None) -> list[Tensor]:
        return [c.init_cache(batch, device) for c in self.convs]

    def step(self, x: Tensor, caches: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        h = self.inp(x)
        skip: Tensor | None = None
        new = []
        for conv, res, cache in zip(self.convs, self.res, caches, strict=True):
            y, c = conv.step(h, cache)
            new.append(c)
            g = self._gate(y)
            h = h + res(g)
            skip = g if skip is None else skip + g
        return self.out(torch.zeros_like(h) if skip is None else skip), new

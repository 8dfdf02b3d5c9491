"""The flow model's streaming step in PyTorch, batched over many streams, with CUDA graphs on a GPU.

This module imports only torch (and the standard library), so it runs on a GPU machine that
has PyTorch and nothing else of voxflip's dependencies (``scripts/gpu_check.sh``).

- :class:`FlowStepNet` is the step graph ``voxflip export`` writes (``trainer/export.py``'s
  ``_StepGraph``), stated again on plain tensors: ``(mel, noise, *state) -> (speech_mel, mu,
  logs, log_dur, *new_state)``, layout ``[B, C, frames]``. Its parameters have the trainer's
  names, so a ``ToSpeechFlow`` state dict loads into it (:meth:`FlowStepNet.load_trainer_state`);
  a test checks the two agree stream by stream.
- :class:`TorchBatchedServer` holds the state of ``streams`` independent streams (one row each)
  and steps all of them with one call per chunk. On CUDA it captures that call once in a CUDA
  graph (static input, output and state buffers; the state update is part of the graph) and
  replays it per chunk; elsewhere it calls the module (what the CPU tests run).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812


def _causal_step(conv: nn.Conv1d, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
    """A causal convolution on a chunk: its cache holds the last ``(kernel - 1) * dilation`` input frames."""
    full = torch.cat([cache, x], dim=2)
    return conv(full), full[:, :, full.shape[2] - cache.shape[2] :]


class _Causal(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation)
        self.context = (kernel - 1) * dilation
        self.c_in = c_in


class _Norm(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + 1e-5) * self.gamma + self.beta


class _Block(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.norm = _Norm(channels)
        self.conv = _Causal(channels, channels, kernel, dilation)
        self.proj = nn.Conv1d(channels, channels, 1)


class _Encoder(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.inp = nn.Conv1d(cfg["n_mels"], cfg["hidden"], 1)
        self.blocks = nn.ModuleList(_Block(cfg["hidden"], cfg["encoder_kernel"], 1 + (i % 3))
                                    for i in range(cfg["encoder_layers"]))


class _Duration(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.c1 = _Causal(cfg["hidden"], cfg["duration_hidden"], 3)
        self.c2 = _Causal(cfg["duration_hidden"], cfg["duration_hidden"], 3)
        self.out = nn.Conv1d(cfg["duration_hidden"], 1, 1)


class _WaveNet(nn.Module):
    def __init__(self, c_in: int, hidden: int, c_out: int, layers: int) -> None:
        super().__init__()
        self.inp = nn.Conv1d(c_in, hidden, 1)
        self.convs = nn.ModuleList(_Causal(hidden, 2 * hidden, 3, 2**i) for i in range(layers))
        self.res = nn.ModuleList(nn.Conv1d(hidden, hidden, 1) for _ in range(layers))
        self.out = nn.Conv1d(hidden, c_out, 1)


class _Coupling(nn.Module):
    def __init__(self, channels: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.half = channels // 2
        self.net = _WaveNet(self.half, hidden, 2 * (channels - self.half), layers)


class _ActNorm(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))


class _InvConv(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linalg.qr(torch.randn(channels, channels))[0])
        self.register_buffer("inv_weight", torch.linalg.inv(self.weight.detach()), persistent=False)


class _Flow(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        n, blocks = cfg["n_mels"], cfg["flow_blocks"]
        self.actnorms = nn.ModuleList(_ActNorm(n) for _ in range(blocks))
        self.invconvs = nn.ModuleList(_InvConv(n) for _ in range(blocks))
        self.couplings = nn.ModuleList(_Coupling(n, cfg["flow_hidden"], cfg["flow_layers"]) for _ in range(blocks))


class FlowStepNet(nn.Module):
    """The exported step graph in torch (see the module docstring).

    Args:
        cfg: the manifest's ``model_config`` (n_mels, hidden, encoder_layers, encoder_kernel,
            lookahead, flow_blocks, flow_hidden, flow_layers, duration_hidden, noise_scale, residual).
    """

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        self.residual = bool(cfg.get("residual", False))
        self.lookahead = int(cfg["lookahead"])
        self.noise_scale = float(cfg["noise_scale"])
        self.encoder = _Encoder(cfg)
        self.prior = nn.Conv1d(cfg["hidden"], 2 * cfg["n_mels"], 1)
        self.duration = _Duration(cfg)
        self.flow = _Flow(cfg)
        self.register_buffer("mel_mean", torch.zeros(1, cfg["n_mels"], 1))
        self.register_buffer("mel_std", torch.ones(1, cfg["n_mels"], 1))

    def state_shapes(self, batch: int = 1) -> list[tuple[int, ...]]:
        """The state tensors' shapes, in the exported graph's order (enc*, dur0, dur1, flow*_*, skip)."""
        shapes = [(batch, b.conv.c_in, b.conv.context) for b in self.encoder.blocks]
        shapes += [(batch, c.c_in, c.context) for c in (self.duration.c1, self.duration.c2)]
        for coupling in self.flow.couplings:
            shapes += [(batch, c.c_in, c.context) for c in coupling.net.convs]
        if self.residual and self.lookahead > 0:
            shapes.append((batch, self.cfg["n_mels"], self.lookahead))
        return shapes

    def refresh_inverse(self) -> None:
        """Recompute the 1x1 convolutions' inverses (after loading weights)."""
        with torch.no_grad():
            for inv in self.flow.invconvs:
                inv.inv_weight.copy_(torch.linalg.inv(inv.weight.double()).to(inv.inv_weight.dtype))

    def load_trainer_state(self, state: dict[str, Tensor]) -> None:
        """Load a ``ToSpeechFlow`` state dict (the parts the step uses; ``phone.*`` and flags are skipped)."""
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(f"the state dict lacks {len(missing)} tensors the step needs, e.g. {missing[0]!r}")
        # the trainer's channel-norm scales are (channels,) since 2026-12-06, (1, channels, 1) before
        self.load_state_dict({k: state[k].reshape(own[k].shape) for k in own})
        self.refresh_inverse()

    def forward(self, mel: Tensor, noise: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        n_enc = len(self.encoder.blocks)
        caches = list(state)
        new: list[Tensor] = []
        h = self.encoder.inp((mel - self.mel_mean) / self.mel_std)
        for block, cache in zip(self.encoder.blocks, caches[:n_enc], strict=True):
            y, c = _causal_step(block.conv.conv, block.norm(h), cache)
            h = h + block.proj(F.gelu(y))
            new.append(c)
        mu, logs = self.prior(h).chunk(2, dim=1)
        d = self.duration
        x, s1 = _causal_step(d.c1.conv, h, caches[n_enc])
        x, s2 = _causal_step(d.c2.conv, F.gelu(x), caches[n_enc + 1])
        log_dur = d.out(F.gelu(x))[:, 0]
        z = mu + torch.exp(logs) * noise * self.noise_scale
        k = n_enc + 2
        flow_caches: list[list[Tensor]] = []
        for coupling in self.flow.couplings:
            n = len(coupling.net.convs)
            flow_caches.append(caches[k : k + n])
            k += n
        flow_new: list[list[Tensor]] = [[] for _ in self.flow.couplings]
        for idx in reversed(range(len(self.flow.couplings))):
            coupling, inv, norm = self.flow.couplings[idx], self.flow.invconvs[idx], self.flow.actnorms[idx]
            za, zb = z[:, : coupling.half], z[:, coupling.half :]
            net = coupling.net
            hh = net.inp(za)
            skip = torch.zeros_like(hh)
            for conv, res, cache in zip(net.convs, net.res, flow_caches[idx], strict=True):
                y, c = _causal_step(conv.conv, hh, cache)
                flow_new[idx].append(c)
                a, b = y.chunk(2, dim=1)
                g = torch.tanh(a) * torch.sigmoid(b)
                hh = hh + res(g)
                skip = skip + g
            log_s, t = net.out(skip).chunk(2, dim=1)
            z = torch.cat([za, (zb - t) * torch.exp(-torch.tanh(log_s))], dim=1)
            z = torch.einsum("ij,bjt->bit", inv.inv_weight, z)
            z = (z - norm.bias) * torch.exp(-norm.log_scale)
        skip_state: list[Tensor] = []
        if self.residual:
            if self.lookahead > 0:
                full = torch.cat([caches[k], mel], dim=2)
                cut = full.shape[2] - self.lookahead
                delayed, skip_state = full[:, :, :cut], [full[:, :, cut:]]
            else:
                delayed = mel
            out = z * self.mel_std + delayed
        else:
            out = z * self.mel_std + self.mel_mean
        flat = [c for caches_ in flow_new for c in caches_]
        return (out, mu, logs, log_dur, *new, s1, s2, *flat, *skip_state)


def random_weights(net: FlowStepNet, seed: int = 0, scale: float = 0.05) -> FlowStepNet:
    """Seeded small random weights everywhere (for timing: the compute does not depend on the values)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".invconvs." in name:
                p.copy_(torch.linalg.qr(torch.randn(p.shape, generator=gen))[0])
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    net.refresh_inverse()
    return net


class TorchBatchedServer:
    """``streams`` independent streams of a :class:`FlowStepNet`, one call per chunk (see the module docstring).

    Args:
        net: the step module (on ``device``, eval mode).
        streams: rows of state, one per stream, >= 1.
        chunk_frames: frames per chunk (fixed: a CUDA graph has fixed shapes).
        cuda_graph: capture the call in a CUDA graph; default: when ``device`` is CUDA.
    """

    def __init__(self, net: FlowStepNet, streams: int, chunk_frames: int, *, device: str | torch.device = "cpu",
                 cuda_graph: bool | None = None, dtype: torch.dtype = torch.float32) -> None:
        if streams < 1 or chunk_frames < 1:
            raise ValueError(f"streams={streams!r} and chunk_frames={chunk_frames!r} must be >= 1")
        self.device = torch.device(device)
        self.net = net.to(self.device, dtype).eval()
        self.streams, self.chunk_frames, self.dtype = streams, chunk_frames, dtype
        n_mels = net.cfg["n_mels"]
        self.state = [torch.zeros(s, device=self.device, dtype=dtype) for s in net.state_shapes(streams)]
        self.mel = torch.zeros(streams, n_mels, chunk_frames, device=self.device, dtype=dtype)
        self.noise = torch.zeros_like(self.mel)
        self.outputs: tuple[Tensor, ...] = ()
        self.graph = None
        use_graph = self.device.type == "cuda" if cuda_graph is None else cuda_graph
        if use_graph:
            self._capture()

    def _run(self) -> tuple[Tensor, ...]:
        out = self.net(self.mel, self.noise, *self.state)
        for s, n in zip(self.state, out[4:], strict=True):
            s.copy_(n)
        return out[:4]

    def _capture(self) -> None:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(3):   # warm-up on a side stream (cuDNN picks its kernels), as capture requires
                self._run()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self.outputs = self._run()
        for s in self.state:
            s.zero_()

    def reset(self, stream: int) -> None:
        """Stream ``stream`` starts over (zero state)."""
        for s in self.state:
            s[stream].zero_()

    def step(self, mel: Tensor, noise: Tensor) -> tuple[Tensor, ...]:
        """One chunk for every stream: ``mel``, ``noise`` ``[streams, n_mels, chunk_frames]`` (any device).

        Returns:
            (speech_mel, mu, logs, log_dur) for all streams, on the server's device. With a CUDA
            graph these are its static buffers: read or copy them before the next step.
        """
        self.mel.copy_(mel, non_blocking=True)
        self.noise.copy_(noise, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
            return self.outputs
        with torch.no_grad():
            return self._run()


def parameter_count(net: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in net.parameters())

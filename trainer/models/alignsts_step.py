"""AlignSTS with carried state: the step graphs ``voxflip export-alignsts`` writes for streaming.

A model with absolute windows (:mod:`voxflip.engine.converters.alignsts_context`) sees a bounded
neighbourhood of its inputs, so a stream can slice them and recompute each slice's context (the
engine's :meth:`AlignSTSModel.frames`): correct, but at a 21 ms group the 2 x 152 frames of context
are recomputed for every 4 frames sung. These modules compute each frame of every layer once. Every
convolution keeps its last inputs (``kernel - 1`` frames times its dilation) as state; a
convolution centred on its output frame then answers ``half`` frames behind its newest input, so
each stage's output is a fixed number of frames behind the frames fed in, and what a later stage
adds to it (a residual, the pitch encoding at the fusion, the diffusion step's own input) comes
from a delay line of the same length. The output equals the whole utterance's (a test), frame for
frame, ``delay`` frames behind the input.

Three graphs, as their inputs arrive at three rates:

- :class:`ContentStep`: content rows (20 ms) -> the content encoder's rows ``x_c``, ``delay``
  rows behind. The stream keeps them: the attention's keys.
- :class:`TimbreGraph`: the reference mel -> the timbre vector, once per stream.
- :class:`TargetStep`: F0 classes and the diffusion decoder's noise (5.3 ms frames), the keys that this
  call's queries reach, the timbre -> the sung mel, :attr:`TargetStep.delay` frames behind.

Masks follow the frames' absolute indices: a frame is real when ``0 <= index < total`` (``total``
is an input: the song's frames, the content's rows; the engine's ``UNKNOWN_TOTAL`` while unknown), as the whole
utterance's zero padding makes them. Both decoders stream this way: the diffusion decoder's
denoiser passes one behind the other, each with its skip sums and its input on delay lines; the
``fs2`` decoder's blocks each keep their last ``2 x decoder_context`` inputs as the keys of their
windowed self-attention and answer ``decoder_context`` (plus their feed-forward's half) behind.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxflip.engine.converters.alignsts_context import AlignSTSContext
from voxflip.engine.converters.alignsts_step import key_span, step_layout
from voxflip.engine.errors import ConfigError

from .alignsts import AlignSTS, ConvStack, CrossAttentionLayer, sinusoid


def _conv_step(conv: nn.Conv1d, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A same-padded convolution fed ``x`` ``(B, Ch, C)`` after ``cache`` ``(B, Ch, R)``, its previous ``R =
    (kernel - 1) * dilation`` inputs: its output for ``C`` frames ``R / 2`` behind the newest input, the inputs
    joined (``(B, Ch, R + C)``: a residual reads its delayed frames there) and the next cache.

    Every slice here and below has bounds fixed at export (counted from either end), so the graph
    computes no shapes: at a 4-frame chunk the shape arithmetic of dynamic bounds cost more than the
    convolutions."""
    full = torch.cat([cache, x], dim=2)
    y = F.conv1d(full, conv.weight, conv.bias, dilation=conv.dilation)
    return y, full, full[:, :, -cache.shape[2]:]


def _delay(x: Tensor, line: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` ``(B, Ch, C)`` through a delay line ``(B, Ch, d)``, ``d >= 1``: the frames ``d`` behind, and the next line."""
    full = torch.cat([line, x], dim=2)
    d = line.shape[2]
    return full[:, :, :-d], full[:, :, -d:]


def _behind(x: Tensor, span: int, back: int) -> Tensor:
    """Of ``x`` ``(B, Ch, span + C)``, frames ``first - back ..`` (its last ``C`` are ``first ..``): ``(B, Ch, C)``."""
    return x[:, :, span - back : -back] if back else x[:, :, span:]


class _Real:
    """Which frames are real, once per call: ``0 <= index < total`` for the frames from ``first - span``."""

    def __init__(self, first: Tensor, count: int, span: int, total: Tensor) -> None:
        idx = first - span + torch.arange(span + count, dtype=torch.float32)[None, None, :]
        self.all = ((idx >= 0) & (idx < total)).to(torch.float32)          # (1, 1, span + C)
        self.span = span

    def at(self, back: int) -> Tensor:
        """``(1, 1, C)`` for the frames from ``first - back``."""
        return _behind(self.all, self.span, back)


class _States:
    """The state tensors of one call: read in order from the inputs, written in the same order."""

    def __init__(self, tensors: tuple[Tensor, ...]) -> None:
        self.inputs, self.outputs = list(tensors), []

    def take(self) -> Tensor:
        return self.inputs[len(self.outputs)]

    def give(self, tensor: Tensor) -> None:
        self.outputs.append(tensor)


def _conv_stack_step(stack: ConvStack, x: Tensor, back: int, real: _Real, st: _States) -> tuple[Tensor, int]:
    """:class:`ConvStack` on frames from ``first - back`` (``x`` ``(B, H, C)``): its output and how far back it is."""
    for conv, norm in zip(stack.convs, stack.norms, strict=True):
        y, _, cache = _conv_step(conv, x * real.at(back), st.take())
        st.give(cache)
        x = norm(torch.relu(y).transpose(1, 2)).transpose(1, 2)
        back += conv.kernel_size[0] // 2
    return x * real.at(back), back


def _cross_step(layer: CrossAttentionLayer, query: Tensor, keys: Tensor, window: Tensor, back: int, real: _Real,
                st: _States) -> tuple[Tensor, int]:
    """:class:`CrossAttentionLayer` for queries ``(B, C, H)`` on frames from ``first - back``: ``kernel // 2`` more."""
    a, _ = layer.attn(query, keys, window)
    x = layer.norm1(query + a).transpose(1, 2) * real.at(back)                  # (B, H, C)
    y, full, cache = _conv_step(layer.ffn_conv, x, st.take())
    st.give(cache)
    half = layer.ffn_conv.kernel_size[0] // 2
    residual = full[:, :, half:-half].transpose(1, 2)
    x = layer.norm2(residual + layer.ffn_out(torch.relu(y).transpose(1, 2)))
    return x * real.at(back + half).transpose(1, 2), back + half


def streams_by_step(model: AlignSTS) -> bool:
    """Whether a model has step graphs: AlignSTS (either decoder) with absolute windows (the engine's
    :func:`step_layout` says exactly which; the modules here check themselves against it)."""
    return step_layout(model.cfg.to_dict()) is not None


def _check_layout(what: str, got: dict, layout: dict) -> None:
    for key, value in got.items():
        if value != layout[key]:
            raise AssertionError(f"the {what} step graph's {key} {value} is not the engine's layout {layout[key]}")


class ContentStep(nn.Module):
    """Content rows ``(1, content_dim, C)`` from absolute row ``first`` -> the content encoder's rows ``(1, C, H)``,
    :attr:`delay` rows behind (rows before 0 are not real: the stream drops them)."""

    def __init__(self, model: AlignSTS) -> None:
        super().__init__()
        self.model = model
        self.delay = sum(conv.kernel_size[0] // 2 for conv in model.content_encoder.convs)
        layout = step_layout(model.cfg.to_dict())
        if layout is not None:
            _check_layout("content", {"content_delay": self.delay,
                                      "content_state": [list(s) for s in self.state_shapes()]}, layout)

    def state_shapes(self) -> list[tuple[int, ...]]:
        return [(1, conv.in_channels, conv.kernel_size[0] - 1) for conv in self.model.content_encoder.convs]

    def forward(self, content: Tensor, first: Tensor, total: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        m, st = self.model, _States(states)
        first, total = first.float().reshape(1, 1, 1), total.float().reshape(1, 1, 1)
        real = _Real(first, content.shape[2], self.delay, total)
        c = (content - m.content_mean[None, :, None]) / m.content_std[None, :, None]
        x, _ = _conv_stack_step(m.content_encoder, m.content_in(c * real.at(0)), 0, real, st)
        return (x.transpose(1, 2), *st.outputs)


class TimbreGraph(nn.Module):
    """The reference mel ``(1, n_mels, M)`` in log units -> the timbre vector ``(1, H)`` (the whole graph's)."""

    def __init__(self, model: AlignSTS) -> None:
        super().__init__()
        self.model = model

    def forward(self, timbre_mel: Tensor) -> Tensor:
        m = self.model
        mel = (timbre_mel - m.mel_mean[None, :, None]) / m.mel_std[None, :, None]
        return m.timbre(mel, torch.ones(1, mel.shape[2], dtype=torch.bool))


class TargetStep(nn.Module):
    """One call: ``C`` target frames in from absolute frame ``first``, ``C`` sung frames out from ``first - delay``.

    Inputs: ``f0_bins`` ``(1, C)``; ``noise`` ``(steps, 1, n_mels, C)``, draw ``k`` on the frames from
    ``first - noise_delays[k]`` (:attr:`noise_delays`); ``keys`` ``(1, K, H)``, the content encoder's rows from
    absolute row ``key_first``, covering every window this call's queries reach (:meth:`key_span`);
    ``total`` and ``n_total``, the song's frames and the content's rows; ``ratio``, content rows per frame;
    ``timbre`` ``(1, H)``; then the state (:meth:`state_shapes`). Outputs: the mel ``(1, n_mels, C)`` in log
    units, zero where not real, and the next state.
    """

    def __init__(self, model: AlignSTS) -> None:
        super().__init__()
        if not streams_by_step(model):
            cfg = model.cfg
            raise ConfigError(f"step graphs need AlignSTS with absolute windows, odd kernels of 3 or more and an "
                              f"aligner layer; this model is {cfg.architecture} with {cfg.window_mode} windows and the "
                              f"{cfg.decoder} decoder")
        self.model = model
        cfg = model.cfg
        half = lambda conv: (conv.kernel_size[0] // 2) * conv.dilation[0]  # noqa: E731
        self.pitch_delay = sum(half(c) for c in model.pitch_encoder.convs)
        self.rp_delay = half(model.rp_attention.ffn_conv) + sum(half(c) for c in model.rp_convs.convs)
        self.aligner_delay = sum(half(layer.ffn_conv) for layer in model.aligner)
        #: frames between the F0 fed in and the decoder's condition
        self.cond_delay = self.pitch_delay + self.rp_delay + self.aligner_delay
        self.diffusion = cfg.decoder == "diffusion"
        if self.diffusion:
            #: frames one diffusion step's denoiser answers behind its input
            self.step_delay = sum(half(c) for c in model.decoder.net.dilated)
            decoder_delay = cfg.diffusion_steps * self.step_delay
        else:
            # each FFT block: its self-attention window's future, then its feed-forward convolution's
            self.step_delay = 0
            decoder_delay = sum(model.decoder.context + half(b.layer.ffn_conv) for b in model.decoder.blocks)
        #: frames between the F0 fed in and the mel out
        self.delay = self.cond_delay + decoder_delay
        if self.delay != AlignSTSContext.of(cfg.to_dict()).target_frames:
            raise AssertionError("the step graph's delay and the model's context disagree")
        #: draw ``k`` of the noise is read on the frames from ``first - noise_delays[k]`` (no noise for fs2)
        steps = cfg.diffusion_steps if self.diffusion else 0
        self.noise_delays = [self.cond_delay + k * self.step_delay for k in range(steps)]
        if self.diffusion:
            net = model.decoder.net
            t = torch.arange(steps, 0, -1, dtype=torch.float32)[:, None]
            with torch.no_grad():
                emb = net.step_mlp(sinusoid(t * 100.0, net.channels))[:, 0]                   # (steps, channels)
            self.register_buffer("step_embedding", emb, persistent=False)
        _check_layout("target", {"delay": self.delay, "noise_delays": self.noise_delays,
                                 "query_span": list(self.query_span()),
                                 "state": [list(s) for s in self.state_shapes()]}, step_layout(cfg.to_dict()))

    # -- what the host needs ----------------------------------------------------------------------
    def query_span(self) -> tuple[int, int]:
        """The attention queries of a call fed frames ``[first, first + C)`` lie in ``[first - lo, first + C - hi)``."""
        last = self.model.aligner[-1].ffn_conv.kernel_size[0] // 2
        return self.cond_delay - last, self.pitch_delay

    def key_span(self, first: int, count: int, ratio: float, n_total: int) -> tuple[int, int]:
        """Content rows ``[a, b)`` that a call fed frames ``[first, first + count)`` reads (the engine's rule)."""
        return key_span(first, count, ratio, n_total, self.query_span(), self.model.cfg.window_frames)

    def state_shapes(self) -> list[tuple[int, ...]]:
        m, cfg = self.model, self.model.cfg
        h = cfg.hidden
        shapes: list[tuple[int, ...]] = [(1, h, c.kernel_size[0] - 1) for c in m.pitch_encoder.convs]
        shapes.append((1, h, m.rp_attention.ffn_conv.kernel_size[0] - 1))
        shapes += [(1, h, c.kernel_size[0] - 1) for c in m.rp_convs.convs]
        shapes += [(1, h, layer.ffn_conv.kernel_size[0] - 1) for layer in m.aligner]
        shapes.append((1, h, self.cond_delay - self.pitch_delay))         # x_p until the fusion
        shapes.append((1, h, self.aligner_delay))                         # x_r until the fusion
        if not self.diffusion:
            for block in m.decoder.blocks:                                # its keys, its feed-forward's inputs
                shapes += [(1, h, 2 * m.decoder.context), (1, h, block.layer.ffn_conv.kernel_size[0] - 1)]
            return shapes
        shapes.append((1, h, cfg.diffusion_steps * self.step_delay))      # the condition for every layer
        net = m.decoder.net
        for k in range(cfg.diffusion_steps):
            for conv in net.dilated:
                d = conv.dilation[0]
                shapes += [(1, net.channels, 2 * d), (1, net.channels, d)]     # its inputs, the skip sum
            if k + 1 < cfg.diffusion_steps:
                shapes.append((1, cfg.n_mels, self.step_delay))           # x_t until the posterior step
        return shapes

    # -- the graph --------------------------------------------------------------------------------
    def _attention(self, query: Tensor, first: Tensor, back: int, keys: Tensor, key_first: Tensor, n_total: Tensor,
                   ratio: Tensor) -> Tensor:
        """The window mask ``(1, C, K)`` of queries on frames from ``first - back``: key ``n`` within
        ``window_frames`` of ``min(t * ratio, n_total - 1)``, and real."""
        c, k = query.shape[1], keys.shape[1]
        t = first - back + torch.arange(c, dtype=torch.float32)[None, :, None]
        n = key_first + torch.arange(k, dtype=torch.float32)[None, None, :]
        centre = torch.minimum(t * ratio, (n_total - 1).clamp(min=0))
        inside = (n - centre).abs() <= float(self.model.cfg.window_frames)
        return inside & (n < n_total)

    def _positions(self, x: Tensor, first: Tensor, back: int, ratio: Tensor) -> Tensor:
        t = first - back + torch.arange(x.shape[1], dtype=torch.float32)[None, :]
        return x + sinusoid(t * ratio, self.model.cfg.hidden)

    def forward(self, f0_bins: Tensor, noise: Tensor, keys: Tensor, key_first: Tensor, first: Tensor, total: Tensor,
                n_total: Tensor, ratio: Tensor, timbre: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        m, st = self.model, _States(states)
        first, total, n_total, key_first, ratio = (v.float().reshape(1, 1) for v in (first, total, n_total,
                                                                                     key_first, ratio))
        real = _Real(first[:, :, None], f0_bins.shape[1], self.delay, total[:, :, None])
        k_pos = key_first + torch.arange(keys.shape[1], dtype=torch.float32)[None, :]
        keys = keys + sinusoid(k_pos, m.cfg.hidden)
        # E_P
        x_p, back = _conv_stack_step(m.pitch_encoder, m.pitch_embed(f0_bins).transpose(1, 2), 0, real, st)
        # the rhythm predictor -> codes -> their embeddings
        q = self._positions(x_p.transpose(1, 2), first, back, ratio)
        window = self._attention(q, first, back, keys, key_first, n_total, ratio)
        y, back = _cross_step(m.rp_attention, q, keys, window, back, real, st)
        y, back = _conv_stack_step(m.rp_convs, y.transpose(1, 2), back, real, st)
        codes = m.rp_out(y.transpose(1, 2)).argmax(-1)
        x_r = m.vq.embed(codes) * real.at(back).transpose(1, 2)                       # (1, C, H)
        # the aligner
        q = self._positions(x_r, first, back, ratio)
        for layer in m.aligner:
            q, back = _cross_step(layer, q, keys, self._attention(q, first, back, keys, key_first, n_total, ratio),
                                  back, real, st)
        x_p, line = _delay(x_p, st.take())
        st.give(line)
        x_r, line = _delay(x_r.transpose(1, 2), st.take())
        st.give(line)
        cond = (q.transpose(1, 2) + x_r + x_p + timbre[:, :, None]) * real.at(back)
        if not self.diffusion:
            return (self._fs2(cond, first, total, back, real, st), *st.outputs)
        return (self._decode(cond, noise, back, real, st), *st.outputs)

    def _fs2(self, cond: Tensor, first: Tensor, total: Tensor, back: int, real: _Real, st: _States) -> Tensor:
        """FastSpeech 2's decoder: each block's self-attention reads ``context`` frames either side, so it
        answers ``context`` frames behind its newest input, from its last ``2 x context`` inputs kept as keys."""
        m, dec = self.model, self.model.decoder
        ctx = dec.context
        x = cond                                                                    # (1, H, C) from first - back
        for block in dec.blocks:
            keys = torch.cat([st.take(), x], dim=2)                                 # from first - back - 2 ctx
            st.give(keys[:, :, -2 * ctx :])
            query = _behind(keys, 2 * ctx, ctx).transpose(1, 2)                     # from first - back - ctx
            c, k = query.shape[1], keys.shape[2]
            t = first[:, :, None] - (back + ctx) + torch.arange(c, dtype=torch.float32)[None, :, None]
            n = first[:, :, None] - (back + 2 * ctx) + torch.arange(k, dtype=torch.float32)[None, None, :]
            window = ((t - n).abs() <= ctx) & (n >= 0) & (n < total[:, :, None])
            y, back = _cross_step(block.layer, query, keys.transpose(1, 2), window, back + ctx, real, st)
            x = y.transpose(1, 2)
        norm = m.decoder.out(x.transpose(1, 2)).transpose(1, 2) * real.at(back)
        mel = norm * m.mel_std[None, :, None] + m.mel_mean[None, :, None]
        return mel * real.at(back)

    def _decode(self, cond: Tensor, noise: Tensor, back: int, real: _Real, st: _States) -> Tensor:
        """The diffusion decoder's walk ``t = steps .. 1``, each step's denoiser ``step_delay`` frames behind."""
        m, dec = self.model, self.model.decoder
        span = self.delay - back                            # the condition's frames every layer reads
        history = torch.cat([st.take(), cond], dim=2)      # (1, H, span + C): the condition, newest last
        st.give(history[:, :, -span:])
        x = noise[0] * real.at(back)
        for k, t in enumerate(range(dec.steps, 0, -1)):
            x0 = self._denoise(x, k, history, span, back, real, st)
            back += self.step_delay
            if t > 1:
                i = t - 1
                x_then, line = _delay(x, st.take())
                st.give(line)
                x = (dec.c0[i] * x0 + dec.ct[i] * x_then + dec.var[i].sqrt() * noise[k + 1]) * real.at(back)
            else:
                x = x0
        mel = x * m.mel_std[None, :, None] + m.mel_mean[None, :, None]
        return mel * real.at(back)

    def _denoise(self, x_t: Tensor, k: int, history: Tensor, span: int, back: int, real: _Real,
                 st: _States) -> Tensor:
        """:class:`Denoiser` step ``k`` on frames from ``first - back`` (``history`` holds the condition's frames
        from ``first - back - span + (back - cond_delay)``, i.e. ``span`` frames before the condition's newest)."""
        net = self.model.decoder.net
        h = torch.relu(net.inp(x_t)) * real.at(back)
        s = self.step_embedding[k : k + 1]                                              # (1, channels)
        skip = torch.zeros_like(h)
        for conv, cond_conv, step, out in zip(net.dilated, net.conds, net.steps, net.outs, strict=True):
            d = conv.dilation[0]
            shift = step(s)[:, :, None]
            y, full, cache = _conv_step(conv, (h + shift) * real.at(back), st.take())
            st.give(cache)
            back += d
            y = y + cond_conv(_behind(history, span, back - self.cond_delay))
            ch = net.channels             # halves cut at fixed channels (chunk() would compute them in the graph)
            y = out(torch.tanh(y[:, :ch]) * torch.sigmoid(y[:, ch:]))
            res, sk = y[:, :ch], y[:, ch:]
            # the input d frames back, less the step's shift (exact where the frame is real; the rest is masked)
            h = (full[:, :, d:-d] - shift + res) / math.sqrt(2.0)
            skip, line = _delay(skip, st.take())
            st.give(line)
            skip = skip + sk
        skip = torch.relu(net.skip_out(skip / math.sqrt(net.layers)))
        return net.final(skip) * real.at(back)


__all__ = ["ContentStep", "TargetStep", "TimbreGraph", "streams_by_step"]

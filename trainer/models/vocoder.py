"""Neural vocoders: HiFi-GAN (Kong et al. 2020) and Parallel WaveGAN (Yamamoto et al. 2020), causal.

Both generators turn log-mel frames into audio, one hop of samples per frame (the engine's two
mel setups: ``MelConfig.for_to_speech``, 80 bands at 16 kHz, hop 160, which the flow converters
vocode, and ``MelConfig.for_to_singing``, 80 bands at 24 kHz, hop 128, AlignSTS's), and stream: every layer is causal and keeps the
samples it still needs from the previous chunk in an explicit state tensor, so a chunked run
equals a whole run of the same model (a test). ``step(mel, f0, noise, states)`` is the streaming
form; ``forward`` is one step from zero state.

Alignment: the output block ``j`` (samples ``j*hop .. (j+1)*hop``) is made when frame
``j + lookahead_frames`` arrives. The networks themselves are causal; the lookahead is taught by
training them against the audio delayed by ``lookahead_frames`` hops. With the default one frame
this is the DSP mel vocoder's own alignment (it synthesises one frame behind), so a converter's
latency does not change with the vocoder.

F0 conditioning (``source_harmonics > 0``) follows NSF-HiFiGAN: a sum of harmonics of the frame's
F0 (zero where unvoiced), merged to one channel, is brought to each upsampling stage's rate by a
causal strided convolution and added there. The harmonics' phase is carried in the state (in
cycles, wrapped to [0, 1)), so it is continuous across chunks.

Deviations from the papers (for streaming and for CPUs):
- every convolution is causal (left padding held as state) instead of centred; transposed
  convolutions keep the previous input frame as state;
- Parallel WaveGAN's upsampling network is nearest-neighbour repetition (its 2-D smoothing
  convolutions look ahead); its noise comes in as an input, so a seeded stream is reproducible;
- discriminators have a channel divisor (``disc_channels_div``) so that they train on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from voxflip.engine.errors import ConfigError
from voxflip.engine.features.mel import MelConfig

from . import check_known_keys

LRELU_SLOPE = 0.1
KINDS = ("hifigan", "pwg", "hn")
#: the engine's mel setups a vocoder can be trained on: the flow converters' and the speech -> singing models'
MEL_PRESETS = {"to_speech": MelConfig.for_to_speech, "to_singing": MelConfig.for_to_singing}


@dataclass(frozen=True)
class VocoderConfig:
    """A generator's shape. ``kind`` picks the family; the other fields of the other family are ignored.

    Attributes:
        kind: ``hifigan``, ``pwg`` or ``hn`` (neural harmonic-plus-noise, :class:`HarmonicNoiseGenerator`).
        variant: a name recorded with the weights (``v1``, ``v2``, ``v3``, ``small``, ``tiny``, ...).
        n_mels, sample_rate, hop_samples: the mel setup the generator reads.
        mel_window: its analysis window in samples; 0 is the setup's own (640 at 16 kHz, 512 at
            24 kHz). A flow model's frames need its ``mel_window`` (the shipped one's: 400).
        lookahead_frames: frames the output lags its input (see the module docstring).
        source_harmonics: harmonics of the F0 source (0: no F0 input).
        upsample: HiFi-GAN's ``transposed`` convolutions (the paper's), or ``repeat`` (repetition, then
            a causal convolution: no comb at the frame rate).
        upsample_rates, upsample_initial_channel, resblock, resblock_kernels, resblock_dilations:
            HiFi-GAN's (product of rates = hop_samples; ``resblock`` 1 or 2 as in the paper).
        layers, stacks, residual_channels, gate_channels, skip_channels, kernel_size:
            Parallel WaveGAN's WaveNet (``layers`` dilated layers in ``stacks`` cycles of 1, 2, 4, ...).
        hn_channels, hn_dilations, hn_harmonics, hn_noise_bands, hn_noise_taps, hn_jump_ratio: the
            harmonic-plus-noise generator's frame network (width, one causal layer per dilation), the
            most harmonics it sums, its noise filter bank (bands, FIR taps), and the F0 ratio between
            two frames above which the harmonics cross-fade to the new F0 instead of gliding.
        hn_smoothing_hz: 0, or the half-width of the Hann kernel that smooths the mel's envelope
            across frequency before the harmonics sample it and the frame network reads it (the DSP
            mel vocoder's 200 Hz): a model's mel may carry the harmonics of another pitch than the F0
            it is voiced at (the residual flow model's: the singing's), which narrow low bands resolve.
        hn_noise_pulse: 0, or the concentration of a pulse at each period's start (a von Mises bump of
            the fundamental's phase, its mean power 1) that the network may mix into the noise of voiced
            frames, per frame, as a voice's breath noise comes in bursts with each glottal closure.
        hn_noise_comb: 0, or the lowest F0 (Hz) of a comb that the network may put, band by band and frame
            by frame, on the noise of voiced frames: ``(n[t] + 2 n[t - P] + n[t - 2P]) / sqrt(6)`` with ``P``
            the period, a response of ``cos^2`` that peaks at the harmonics and is zero between them, so
            the noise of a voiced band can sit at the harmonics instead of filling the gaps between them.
    """

    kind: str = "hifigan"
    variant: str = "v3"
    n_mels: int = 80
    sample_rate: int = 16_000
    hop_samples: int = 160
    mel_window: int = 0
    lookahead_frames: int = 1
    source_harmonics: int = 8
    upsample: str = "transposed"
    upsample_rates: tuple[int, ...] = (5, 4, 4, 2)
    upsample_initial_channel: int = 256
    resblock: int = 2
    resblock_kernels: tuple[int, ...] = (3, 5, 7)
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 2), (2, 6), (3, 12))
    layers: int = 30
    stacks: int = 3
    residual_channels: int = 64
    gate_channels: int = 128
    skip_channels: int = 64
    kernel_size: int = 3
    hn_channels: int = 192
    hn_dilations: tuple[int, ...] = (1, 2, 4, 1)
    hn_harmonics: int = 128
    hn_noise_bands: int = 32
    hn_noise_taps: int = 63
    hn_jump_ratio: float = 1.25
    hn_smoothing_hz: float = 0.0
    hn_noise_pulse: float = 0.0
    hn_noise_comb: float = 0.0

    def __post_init__(self) -> None:
        base = MEL_PRESETS[self.mel_preset()]()
        if self.mel_window and not base.hop_samples <= self.mel_window <= base.n_fft:
            raise ConfigError(f"model.mel_window={self.mel_window} must be 0 (the setup's own) or a whole number of "
                              f"samples in {base.hop_samples}..{base.n_fft}")
        if self.kind not in KINDS:
            raise ConfigError(f"model.kind={self.kind!r} must be one of {', '.join(KINDS)}")
        if not 0 <= self.lookahead_frames <= 8:
            raise ConfigError(f"model.lookahead_frames={self.lookahead_frames} must be in 0..8")
        if not 0 <= self.source_harmonics <= 64:
            raise ConfigError(f"model.source_harmonics={self.source_harmonics} must be in 0..64")
        if self.kind == "hifigan":
            if math.prod(self.upsample_rates) != self.hop_samples:
                raise ConfigError(f"model.upsample_rates={list(self.upsample_rates)} multiply to "
                                  f"{math.prod(self.upsample_rates)}; they must multiply to hop_samples={self.hop_samples}")
            if self.upsample_initial_channel >> len(self.upsample_rates) < 1:
                raise ConfigError(f"model.upsample_initial_channel={self.upsample_initial_channel} must be at least "
                                  f"2**{len(self.upsample_rates)} (it halves at every upsampling)")
            if self.upsample not in ("transposed", "repeat"):
                raise ConfigError(f"model.upsample={self.upsample!r} must be 'transposed' or 'repeat'")
            if self.resblock not in (1, 2) or len(self.resblock_kernels) != len(self.resblock_dilations):
                raise ConfigError("model.resblock must be 1 or 2, with one dilation list per resblock kernel")
        elif self.kind == "hn":
            if self.lookahead_frames != 1:
                raise ConfigError(f"model.lookahead_frames={self.lookahead_frames}: the hn generator interpolates "
                                  "each block between two frames, so its lookahead is 1")
            if not 1 <= self.hn_harmonics <= 512 or not 2 <= self.hn_noise_bands <= 128:
                raise ConfigError(f"model.hn_harmonics={self.hn_harmonics} must be in 1..512 and "
                                  f"model.hn_noise_bands={self.hn_noise_bands} in 2..128")
            if self.hn_jump_ratio <= 1.0:
                raise ConfigError(f"model.hn_jump_ratio={self.hn_jump_ratio} must be above 1 (a large value: always glide)")
            if not 0.0 <= self.hn_smoothing_hz <= 1000.0:
                raise ConfigError(f"model.hn_smoothing_hz={self.hn_smoothing_hz} must be in 0..1000 (0: no smoothing)")
            if not 0.0 <= self.hn_noise_pulse <= 20.0:
                raise ConfigError(f"model.hn_noise_pulse={self.hn_noise_pulse} must be in 0..20 (0: steady noise)")
            if self.hn_noise_comb != 0.0 and not 20.0 <= self.hn_noise_comb <= 500.0:
                raise ConfigError(f"model.hn_noise_comb={self.hn_noise_comb} must be 0 (no comb) or an F0 floor "
                                  "in 20..500 Hz")
            if self.hn_noise_taps < 3 or self.hn_noise_taps % 2 == 0 or not self.hn_dilations:
                raise ConfigError(f"model.hn_noise_taps={self.hn_noise_taps} must be odd and >= 3, and "
                                  "model.hn_dilations not empty")
        elif self.layers % self.stacks:
            raise ConfigError(f"model.layers={self.layers} must be a multiple of model.stacks={self.stacks}")

    def mel_preset(self) -> str:
        """The name of the engine's mel setup this generator reads (``to_speech`` or ``to_singing``)."""
        for name, make in MEL_PRESETS.items():
            mel = make()
            if (mel.sample_rate, mel.hop_samples, mel.n_mels) == (self.sample_rate, self.hop_samples, self.n_mels):
                return name
        raise ConfigError(f"model: {self.sample_rate} Hz, hop {self.hop_samples}, {self.n_mels} mels is none of the "
                          "engine's mel setups (16000 Hz / hop 160 / 80 for speech, 24000 Hz / hop 128 / 80 for singing)")

    def mel(self) -> MelConfig:
        base = MEL_PRESETS[self.mel_preset()]()
        return replace(base, win_samples=self.mel_window) if self.mel_window else base

    def to_dict(self) -> dict:
        return {k: list(map(list, v)) if k == "resblock_dilations" else (list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: dict, where: str = "model") -> VocoderConfig:
        check_known_keys(cls, raw, where)
        values = dict(raw)
        for key in ("upsample_rates", "resblock_kernels", "hn_dilations"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        if "resblock_dilations" in values:
            values["resblock_dilations"] = tuple(tuple(int(v) for v in row) for row in values["resblock_dilations"])
        return cls(**values)


#: the papers' generator sizes at voxflip's 16 kHz / hop 160 mel (HiFi-GAN V1/V2/V3, PWG), plus CPU-sized ones
VARIANTS: dict[str, VocoderConfig] = {
    "hifigan-v1": VocoderConfig(variant="v1", upsample_initial_channel=512, resblock=1,
                                resblock_kernels=(3, 7, 11), resblock_dilations=((1, 3, 5),) * 3),
    "hifigan-v2": VocoderConfig(variant="v2", upsample_initial_channel=128, resblock=1,
                                resblock_kernels=(3, 7, 11), resblock_dilations=((1, 3, 5),) * 3),
    "hifigan-v3": VocoderConfig(variant="v3"),
    "hifigan-small": VocoderConfig(variant="small", upsample_initial_channel=128),
    "hifigan-v3-repeat": VocoderConfig(variant="v3-repeat", upsample="repeat"),
    "hifigan-tiny": VocoderConfig(variant="tiny", upsample_initial_channel=32, resblock_kernels=(3,),
                                  resblock_dilations=((1, 2),)),
    # at the speech -> singing models' 24 kHz, hop 128 (AlignSTS's mel)
    "hifigan-v1-24k": VocoderConfig(variant="v1", sample_rate=24_000, hop_samples=128, upsample_rates=(4, 4, 4, 2),
                                    upsample_initial_channel=512, resblock=1, resblock_kernels=(3, 7, 11),
                                    resblock_dilations=((1, 3, 5),) * 3),
    "hifigan-v2-24k": VocoderConfig(variant="v2", sample_rate=24_000, hop_samples=128, upsample_rates=(4, 4, 4, 2),
                                    upsample_initial_channel=128, resblock=1, resblock_kernels=(3, 7, 11),
                                    resblock_dilations=((1, 3, 5),) * 3),
    "hifigan-v3-24k": VocoderConfig(variant="v3", sample_rate=24_000, hop_samples=128, upsample_rates=(4, 4, 4, 2)),
    "pwg": VocoderConfig(kind="pwg", variant="paper"),
    # hn_smoothing_hz: the DSP mel vocoder's 200 Hz, so that a model's mel voiced at another pitch than
    # its harmonics' does not sound at theirs (docs/results.md, "hn" behind the flow model)
    "hn": VocoderConfig(kind="hn", variant="hn", source_harmonics=0, hn_smoothing_hz=200.0),
    "hn-24k": VocoderConfig(kind="hn", variant="hn", sample_rate=24_000, hop_samples=128, source_harmonics=0,
                            hn_harmonics=192, hn_smoothing_hz=200.0),
    "hn-tiny": VocoderConfig(kind="hn", variant="tiny", source_harmonics=0, hn_channels=16, hn_dilations=(1,),
                             hn_harmonics=24, hn_noise_bands=8, hn_noise_taps=15, hn_smoothing_hz=200.0),
    "pwg-small": VocoderConfig(kind="pwg", variant="small", layers=10, stacks=2, residual_channels=32,
                               gate_channels=64, skip_channels=32),
    "pwg-tiny": VocoderConfig(kind="pwg", variant="tiny", layers=4, stacks=2, residual_channels=8,
                              gate_channels=16, skip_channels=8),
    "hifigan-tiny-24k": VocoderConfig(variant="tiny", sample_rate=24_000, hop_samples=128, upsample_rates=(4, 4, 4, 2),
                                      upsample_initial_channel=32, resblock_kernels=(3,), resblock_dilations=((1, 2),)),
    "pwg-small-24k": VocoderConfig(kind="pwg", variant="small", sample_rate=24_000, hop_samples=128, layers=10, stacks=2,
                                   residual_channels=32, gate_channels=64, skip_channels=32),
}


# -- streaming layers ------------------------------------------------------------------------------
class CausalConv1d(nn.Module):
    """A causal (optionally strided) 1-D convolution whose left context is a state tensor.

    Output ``m`` reads input samples ``(m+1)*stride - context - stride .. (m+1)*stride - 1``:
    the ``context = (kernel - 1) * dilation + 1 - stride`` samples before the chunk come from the
    state, so any split of the input into chunks of whole strides gives the same output.
    """

    def __init__(self, cin: int, cout: int, kernel: int, *, dilation: int = 1, stride: int = 1,
                 norm: bool = True) -> None:
        super().__init__()
        conv = nn.Conv1d(cin, cout, kernel, stride=stride, dilation=dilation)
        self.conv = weight_norm(conv) if norm else conv
        self.cin, self.stride = cin, stride
        self.context = (kernel - 1) * dilation + 1 - stride
        if self.context < 0:
            raise ConfigError(f"a causal convolution needs kernel >= stride (kernel {kernel}, stride {stride})")

    def state_shapes(self) -> list[tuple[int, int]]:
        return [(self.cin, self.context)] if self.context else []

    def step(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        if not self.context:
            return self.conv(x), []
        full = torch.cat([states[0], x], dim=2)
        return self.conv(full), [full[:, :, full.shape[2] - self.context :]]


class CausalUpsample(nn.Module):
    """HiFi-GAN's transposed convolution (kernel ``2 * rate``), causal: block ``j`` of the output
    reads input frames ``j - 1`` and ``j``; the state is the last input frame."""

    def __init__(self, cin: int, cout: int, rate: int) -> None:
        super().__init__()
        self.conv = weight_norm(nn.ConvTranspose1d(cin, cout, 2 * rate, stride=rate))
        self.cin, self.rate = cin, rate

    def state_shapes(self) -> list[tuple[int, int]]:
        return [(self.cin, 1)]

    def step(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        full = torch.cat([states[0], x], dim=2)
        y = self.conv(full)                      # (n + 2) * rate samples
        n = x.shape[2]
        return y[:, :, self.rate : (n + 1) * self.rate], [full[:, :, n:]]


class RepeatUpsample(nn.Module):
    """Upsampling by repetition, then a causal convolution (kernel ``2 * rate + 1``): no per-position
    weights inside a block, so a steady input cannot leave a comb at the frame rate, which a
    transposed convolution does until training removes it (Odena et al. 2016, "Deconvolution and
    checkerboard artifacts")."""

    def __init__(self, cin: int, cout: int, rate: int) -> None:
        super().__init__()
        self.rate = rate
        self.conv = CausalConv1d(cin, cout, 2 * rate + 1)

    def state_shapes(self) -> list[tuple[int, int]]:
        return self.conv.state_shapes()

    def step(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        return self.conv.step(torch.repeat_interleave(x, self.rate, dim=2), states)


class _Stateful(nn.Module):
    """A module made of streaming parts: the flat state list is theirs, in order."""

    parts: list[nn.Module]

    def state_shapes(self) -> list[tuple[int, int]]:
        return [shape for part in self.parts for shape in part.state_shapes()]

    def _run(self, part: nn.Module, x: Tensor, states: list[Tensor], cursor: list[int],
             out: list[Tensor]) -> Tensor:
        n = len(part.state_shapes())
        y, new = part.step(x, states[cursor[0] : cursor[0] + n])
        cursor[0] += n
        out.extend(new)
        return y


class ResBlock(_Stateful):
    """HiFi-GAN's residual block: type 1 (dilated conv, then conv) or type 2 (dilated conv only)."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...], kind: int) -> None:
        super().__init__()
        self.dilated = nn.ModuleList(CausalConv1d(channels, channels, kernel, dilation=d) for d in dilations)
        self.plain = nn.ModuleList(CausalConv1d(channels, channels, kernel) for _ in dilations) if kind == 1 else None
        self.parts = [m for i in range(len(dilations))
                      for m in ((self.dilated[i], self.plain[i]) if self.plain is not None else (self.dilated[i],))]

    def step(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        cursor, out = [0], []
        for i, conv in enumerate(self.dilated):
            h = self._run(conv, F.leaky_relu(x, LRELU_SLOPE), states, cursor, out)
            if self.plain is not None:
                h = self._run(self.plain[i], F.leaky_relu(h, LRELU_SLOPE), states, cursor, out)
            x = x + h
        return x, out


class HarmonicSource(nn.Module):
    """NSF's sine source: ``harmonics`` sines of the frame's F0 at amplitude 0.1, merged to one
    channel by a linear layer and tanh; the running phase (cycles in [0, 1)) is the state."""

    def __init__(self, harmonics: int, sample_rate: int, hop: int) -> None:
        super().__init__()
        self.harmonics, self.sample_rate, self.hop = harmonics, sample_rate, hop
        self.merge = nn.Linear(harmonics, 1)
        self.register_buffer("orders", torch.arange(1, harmonics + 1, dtype=torch.float32).view(1, 1, -1),
                             persistent=False)
        self.register_buffer("ramp", torch.arange(1, hop + 1, dtype=torch.float32).view(1, 1, hop), persistent=False)

    def state_shapes(self) -> list[tuple[int, int]]:
        return [(1, 1)]

    def step(self, f0: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """``f0 (B, n)`` in Hz (0 unvoiced) -> ``(B, 1, n * hop)`` source, new phase."""
        cycles = (f0 / self.sample_rate).unsqueeze(2)                       # (B, n, 1) cycles per sample
        per_frame = cycles[:, :, 0] * self.hop
        # phase at the start of each frame, in float64 so a long chunk does not drift, wrapped to [0, 1)
        starts = torch.cumsum(per_frame.double(), dim=1) - per_frame.double() + states[0][:, 0, :].double()
        starts = torch.remainder(starts, 1.0).float().unsqueeze(2)          # (B, n, 1)
        phase = starts + cycles * self.ramp - cycles                       # (B, n, hop), sample 0 at the start
        end = torch.remainder(starts[:, -1:, 0] + per_frame[:, -1:], 1.0)
        sines = torch.sin(2 * math.pi * phase.unsqueeze(3) * self.orders.unsqueeze(0))   # (B, n, hop, K)
        voiced = (f0 > 0).float().view(f0.shape[0], f0.shape[1], 1, 1)
        merged = torch.tanh(self.merge(0.1 * sines * voiced))              # (B, n, hop, 1)
        return merged.reshape(f0.shape[0], 1, -1), [end.view(-1, 1, 1)]


# -- generators -----------------------------------------------------------------------------------
class Generator(_Stateful):
    """Base of the generators: ``step(mel, f0, noise, states)``; :meth:`forward` from zero state."""

    cfg: VocoderConfig

    @property
    def uses_f0(self) -> bool:
        """Whether the F0 input changes the output (an exported graph takes it only then)."""
        return self.cfg.kind == "hn" or self.cfg.source_harmonics > 0

    @property
    def uses_noise(self) -> bool:
        """Whether the generator reads its noise input."""
        return self.cfg.kind in ("pwg", "hn")

    def init_states(self, batch: int = 1) -> list[Tensor]:
        return [torch.zeros(batch, c, t) for c, t in self.state_shapes()]

    def forward(self, mel: Tensor, f0: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            noise = torch.zeros(mel.shape[0], 1, mel.shape[2] * self.cfg.hop_samples)
        return self.step(mel, f0, noise, self.init_states(mel.shape[0]))[0]

    def remove_weight_norm(self) -> None:
        """Fold the weight-norm parametrisations into plain weights (before export)."""
        for module in self.modules():
            if hasattr(module, "parametrizations") and "weight" in module.parametrizations:
                torch.nn.utils.parametrize.remove_parametrizations(module, "weight")


class HifiGanGenerator(Generator):
    """HiFi-GAN: mel -> conv -> [upsample -> multi-receptive-field fusion] x stages -> conv -> tanh."""

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.upsample_initial_channel
        self.pre = CausalConv1d(cfg.n_mels, ch, 7)
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        self.source = HarmonicSource(cfg.source_harmonics, cfg.sample_rate, cfg.hop_samples) if cfg.source_harmonics else None
        self.source_down = nn.ModuleList()
        for i, rate in enumerate(cfg.upsample_rates):
            cin, cout = ch >> i, ch >> (i + 1)
            self.ups.append(CausalUpsample(cin, cout, rate) if cfg.upsample == "transposed"
                            else RepeatUpsample(cin, cout, rate))
            self.blocks.append(nn.ModuleList(ResBlock(cout, k, d, cfg.resblock)
                                             for k, d in zip(cfg.resblock_kernels, cfg.resblock_dilations, strict=True)))
            if self.source is not None:
                stride = math.prod(cfg.upsample_rates[i + 1 :])
                self.source_down.append(CausalConv1d(1, cout, 2 * stride if stride > 1 else 1, stride=stride))
        self.post = CausalConv1d(ch >> len(cfg.upsample_rates), 1, 7)
        self.parts = [self.pre, *([self.source] if self.source is not None else []), *self.source_down]
        for i in range(len(self.ups)):
            self.parts += [self.ups[i], *self.blocks[i]]
        self.parts.append(self.post)

    def step(self, mel: Tensor, f0: Tensor, noise: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        cursor, out = [0], []
        x = self._run(self.pre, mel, states, cursor, out)
        sources = []
        if self.source is not None:
            src = self._run(self.source, f0, states, cursor, out)
            sources = [self._run(down, src, states, cursor, out) for down in self.source_down]
        for i, up in enumerate(self.ups):
            x = self._run(up, F.leaky_relu(x, LRELU_SLOPE), states, cursor, out)
            if sources:
                x = x + sources[i]
            total = None
            for block in self.blocks[i]:
                y = self._run(block, x, states, cursor, out)
                total = y if total is None else total + y
            x = total / len(self.blocks[i])
        x = self._run(self.post, F.leaky_relu(x), states, cursor, out)
        return torch.tanh(x), out


class _GatedLayer(_Stateful):
    """One WaveNet layer of Parallel WaveGAN: dilated causal conv + mel conditioning, gated, to residual and skip."""

    def __init__(self, cfg: VocoderConfig, dilation: int) -> None:
        super().__init__()
        self.conv = CausalConv1d(cfg.residual_channels, cfg.gate_channels, cfg.kernel_size, dilation=dilation)
        self.cond = nn.Conv1d(cfg.n_mels, cfg.gate_channels, 1, bias=False)
        self.res = nn.Conv1d(cfg.gate_channels // 2, cfg.residual_channels, 1)
        self.skip = nn.Conv1d(cfg.gate_channels // 2, cfg.skip_channels, 1)
        self.parts = [self.conv]

    def step(self, x: Tensor, cond: Tensor, states: list[Tensor]) -> tuple[Tensor, Tensor, list[Tensor]]:
        h, new = self.conv.step(x, states)
        a, b = (h + self.cond(cond)).chunk(2, dim=1)
        g = torch.tanh(a) * torch.sigmoid(b)
        return (x + self.res(g)) * math.sqrt(0.5), self.skip(g), new


class PwgGenerator(Generator):
    """Parallel WaveGAN: noise (and the F0 source) through a non-autoregressive causal WaveNet
    conditioned on the mel repeated to the sample rate."""

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.source = HarmonicSource(cfg.source_harmonics, cfg.sample_rate, cfg.hop_samples) if cfg.source_harmonics else None
        self.first = nn.Conv1d(2 if self.source is not None else 1, cfg.residual_channels, 1)
        per_stack = cfg.layers // cfg.stacks
        self.layers = nn.ModuleList(_GatedLayer(cfg, 2 ** (i % per_stack)) for i in range(cfg.layers))
        self.last = nn.Sequential(nn.ReLU(), nn.Conv1d(cfg.skip_channels, cfg.skip_channels, 1), nn.ReLU(),
                                  nn.Conv1d(cfg.skip_channels, 1, 1))
        self.parts = [*([self.source] if self.source is not None else []), *self.layers]

    def step(self, mel: Tensor, f0: Tensor, noise: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        cursor, out = [0], []
        x = noise
        if self.source is not None:
            x = torch.cat([x, self._run(self.source, f0, states, cursor, out)], dim=1)
        cond = torch.repeat_interleave(mel, self.cfg.hop_samples, dim=2)
        x = self.first(x)
        skips = None
        for layer in self.layers:
            n = len(layer.state_shapes())
            x, s, new = layer.step(x, cond, states[cursor[0] : cursor[0] + n])
            cursor[0] += n
            out.extend(new)
            skips = s if skips is None else skips + s
        return self.last(skips * math.sqrt(1.0 / len(self.layers))), out


def minimum_phase_matrix(n_fft: int) -> np.ndarray:
    """``(bins, bins)`` matrix ``M``: ``M @ log|H|`` is the phase (radians) of the minimum-phase filter
    with that log magnitude on the ``n_fft // 2 + 1`` bins of an ``n_fft``-point DFT.

    The minimum-phase log spectrum is the DFT of the real cepstrum folded onto positive quefrencies
    (Oppenheim and Schafer, "Discrete-Time Signal Processing", the complex cepstrum of a
    minimum-phase sequence); every step is linear in ``log|H|``, so it is one matrix.
    """
    bins = n_fft // 2 + 1
    cepstra = np.fft.irfft(np.eye(bins), n=n_fft, axis=1)        # row j: the cepstrum of log|H| = e_j
    fold = np.zeros(n_fft)
    fold[0] = fold[n_fft // 2] = 1.0
    fold[1 : n_fft // 2] = 2.0
    return np.fft.rfft(cepstra * fold, axis=1).imag.T


def noise_filter_bank(bands: int, taps: int, sample_rate: int) -> np.ndarray:
    """``(bands, taps)`` linear-phase band-pass FIRs whose edges are equally spaced in mel from 0 Hz to
    Nyquist; they sum to a delay of ``taps // 2`` samples, so equal gains pass white noise unchanged."""
    from voxflip.engine.features.mel import hz_to_mel, mel_to_hz

    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(sample_rate / 2), bands + 1)) / sample_rate   # cycles per sample
    n = np.arange(taps) - taps // 2
    window = np.hanning(taps + 2)[1:-1]

    def lowpass(cutoff: float) -> np.ndarray:                    # windowed sinc, unit gain at DC
        if cutoff >= 0.5:
            return (n == 0).astype(np.float64)
        return 2 * cutoff * np.sinc(2 * cutoff * n) * window

    lows = [lowpass(float(f)) for f in edges]
    return np.stack([lows[b + 1] - lows[b] for b in range(bands)])


class HarmonicNoiseGenerator(Generator):
    """Neural harmonic-plus-noise: a causal frame network shapes a sum of F0 harmonics and band noise.

    After the differentiable harmonic-plus-noise synthesisers of DDSP (Engel et al. 2020) and the
    neural homomorphic vocoder (Liu et al. 2020), in a form that streams and exports without FFTs:

    - a causal convolution stack over frames reads the log-mel and log-F0 and predicts, per frame,
      a correction to a log spectral envelope (the mel's non-negative pseudo-inverse, as the DSP mel
      vocoder's, its power smoothed across bins over ``hn_smoothing_hz`` as that vocoder's is; the
      network then reads the mel of the smoothed envelope) on the mel FFT's bins, and a log gain for
      each noise band;
    - the harmonics ``k * F0`` (``k <= hn_harmonics``, below Nyquist, voiced frames only) take the
      envelope's amplitude and its minimum phase (:func:`minimum_phase_matrix`), so a period is
      shaped as a vocal tract shapes a glottal pulse;
    - the noise input is split by a fixed mel-spaced FIR bank (:func:`noise_filter_bank`) and each
      band scaled by its gain.

    Block ``j`` of the output runs from frame ``j - 1`` to frame ``j`` (hence a lookahead of exactly
    one frame, the DSP mel vocoder's): harmonic coefficients (complex, so a phase that wraps between
    frames does not glitch), F0 and noise gains interpolate linearly over the block, and the phase of
    the fundamental accumulates sample by sample; where F0 jumps (by more than ``hn_jump_ratio``) the
    old series fades out at its F0 while the new one fades in. The state: the frame network's left
    context, the previous frame's parameters, the phase, and the noise FIRs' last ``taps - 1`` input
    samples.
    """

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        from voxflip.engine.features.mel import mel_filterbank
        from voxflip.engine.vocoder.mel_vocoder import smoothing_matrix

        self.cfg = cfg
        mel = cfg.mel()
        self.bins = mel.n_fft // 2 + 1
        self.bin_hz = mel.sample_rate / mel.n_fft
        fb = mel_filterbank(mel)                                                     # (n_mels, bins)
        pinv = np.maximum(np.linalg.pinv(fb, rcond=1e-3), 0.0)                       # (bins, n_mels)
        self.register_buffer("pinv", torch.from_numpy(pinv).float(), persistent=False)
        if cfg.hn_smoothing_hz > 0:
            smoother = smoothing_matrix(mel, cfg.hn_smoothing_hz)
            self.register_buffer("smoother", torch.from_numpy(smoother).float(), persistent=False)
            self.register_buffer("fb", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("minphase", torch.from_numpy(minimum_phase_matrix(mel.n_fft)).float(), persistent=False)
        bank = noise_filter_bank(cfg.hn_noise_bands, cfg.hn_noise_taps, cfg.sample_rate)
        self.register_buffer("bank", torch.from_numpy(bank[:, ::-1].copy()).float().unsqueeze(1), persistent=False)
        centres = np.array([np.argmax(np.abs(np.fft.rfft(h, mel.n_fft))) for h in bank])
        self.register_buffer("band_bins", torch.from_numpy(centres).long(), persistent=False)
        self.register_buffer("orders", torch.arange(1, cfg.hn_harmonics + 1, dtype=torch.float32).view(1, -1, 1),
                             persistent=False)
        self.register_buffer("ramp", torch.arange(cfg.hop_samples, dtype=torch.float32) / cfg.hop_samples,
                             persistent=False)
        ch = cfg.hn_channels
        self.pre = CausalConv1d(cfg.n_mels + 2, ch, 3)
        self.convs = nn.ModuleList(CausalConv1d(ch, ch, 3, dilation=d) for d in cfg.hn_dilations)
        self.pulsed = cfg.hn_noise_pulse > 0
        self.combed = cfg.hn_noise_comb > 0
        #: the comb's longest delay (two periods of its F0 floor) and the raw noise history it needs
        self.comb_span = 2 * math.ceil(cfg.sample_rate / cfg.hn_noise_comb) if self.combed else 0
        self.noise_history = max(cfg.hn_noise_taps - 1, self.comb_span + 1)
        self.head = nn.Conv1d(ch, self.bins + cfg.hn_noise_bands * (1 + int(self.combed)) + int(self.pulsed), 1)
        if self.pulsed:     # exp(k (cos - 1)) has mean power exp(-2k) I0(2k) over a period
            k = cfg.hn_noise_pulse
            self.pulse_norm = math.sqrt(math.exp(-2.0 * k) * float(np.i0(2.0 * k)))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if self.combed:     # the comb's share starts near 0: the generator starts as the plain one
            bands = cfg.hn_noise_bands
            nn.init.constant_(self.head.bias[self.bins + bands : self.bins + 2 * bands], -4.0)
        # A sinusoid of amplitude a peaks at a * W / 4 in a W-sample Hann-windowed DFT; white noise of
        # unit variance reads sqrt(3 W / 8) there. The noise starts 10 dB under the envelope.
        w = mel.win_samples
        self.harmonic_gain = nn.Parameter(torch.tensor(math.log(4.0 / w)))
        self.noise_gain = nn.Parameter(torch.tensor(math.log(1.0 / math.sqrt(3.0 * w / 8.0)) - math.log(10 ** 0.5)))
        self.parts = [self.pre, *self.convs]

    def state_shapes(self) -> list[tuple[int, int]]:
        frame = 2 * self.cfg.hn_harmonics + 1 + self.cfg.hn_noise_bands * (1 + int(self.combed)) + int(self.pulsed)
        noise = [(1, self.noise_history)] + ([(1, self.cfg.hn_noise_taps - 1)] if self.combed else [])
        return [*super().state_shapes(), (frame, 1), (1, 1), *noise]

    def frame_parameters(self, mel: Tensor, f0: Tensor, states: list[Tensor], cursor: list[int],
                         out: list[Tensor]) -> Tensor:
        """``(B, 2K + 1 + bands [+ bands] [+ 1], n)``: harmonic coefficients (real, imaginary), F0, noise band
        gains, with ``hn_noise_comb`` each band's share of combed noise, and with ``hn_noise_pulse`` the
        share of the noise that comes in pulses."""
        voiced = (f0 > 0).float()
        lf0 = torch.where(f0 > 0, torch.log(f0.clamp(min=1.0) / 200.0), torch.zeros_like(f0))
        amplitude = torch.matmul(self.pinv, torch.exp(mel))                               # (B, bins, n)
        if self.cfg.hn_smoothing_hz > 0:      # power smoothed across bins; the network reads its mel
            amplitude = torch.sqrt(torch.clamp(torch.matmul(self.smoother, amplitude * amplitude), min=1e-12))
            mel = torch.log(torch.clamp(torch.matmul(self.fb, amplitude), min=1e-5))
        x = torch.cat([(mel + 5.0) / 2.5, lf0.unsqueeze(1), voiced.unsqueeze(1)], dim=1)
        h = F.leaky_relu(self._run(self.pre, x, states, cursor, out), LRELU_SLOPE)
        for conv in self.convs:
            h = h + F.leaky_relu(self._run(conv, h, states, cursor, out), LRELU_SLOPE)
        y = self.head(h)
        base = torch.log(torch.clamp(amplitude, min=1e-5))
        log_env = base + y[:, : self.bins]
        phase_env = torch.matmul(self.minphase, log_env)
        freqs = f0.unsqueeze(1) * self.orders                                             # (B, K, n) Hz
        pos = torch.clamp(freqs / self.bin_hz, 0.0, self.bins - 1.001)
        index = torch.floor(pos)
        frac = pos - index
        index = index.long()

        def at_harmonics(env: Tensor) -> Tensor:
            return env.gather(1, index) * (1 - frac) + env.gather(1, index + 1) * frac

        nyquist = self.cfg.sample_rate / 2
        below = torch.clamp((nyquist - freqs) / (0.05 * nyquist), 0.0, 1.0)
        amp = torch.exp(at_harmonics(log_env) + self.harmonic_gain) * below * voiced.unsqueeze(1)
        theta = at_harmonics(phase_env)
        bands = self.cfg.hn_noise_bands
        noise_log = log_env.index_select(1, self.band_bins) + y[:, self.bins : self.bins + bands] + self.noise_gain
        parts = [amp * torch.cos(theta), amp * torch.sin(theta), f0.unsqueeze(1), torch.exp(noise_log)]
        if self.combed:     # how much of each band of a voiced frame's noise is combed
            parts.append(torch.sigmoid(y[:, self.bins + bands : self.bins + 2 * bands]) * voiced.unsqueeze(1))
        if self.pulsed:     # how much of a voiced frame's noise comes in pulses
            parts.append(torch.sigmoid(y[:, -1:]) * voiced.unsqueeze(1))
        return torch.cat(parts, 1)

    def step(self, mel: Tensor, f0: Tensor, noise: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        cursor, out = [0], []
        params = self.frame_parameters(mel, f0, states, cursor, out)
        prev_params, prev_phase, prev_noise = states[cursor[0] : cursor[0] + 3]
        prev_comb = states[cursor[0] + 3] if self.combed else None
        k, hop, b, n = self.cfg.hn_harmonics, self.cfg.hop_samples, mel.shape[0], mel.shape[2]
        full = torch.cat([prev_params, params], dim=2)
        start, end = full[:, :, :-1], full[:, :, 1:]                                       # (B, C, n)
        w = self.ramp                                                                      # s / hop

        def per_sample(a: Tensor, z: Tensor) -> Tensor:          # (B, C, n) at the block's two ends -> (B, C, T)
            return (a.unsqueeze(3) * (1 - w) + z.unsqueeze(3) * w).reshape(a.shape[0], a.shape[1], n * hop)

        # F0 across a block: a glide between two voiced frames (held from the voiced one next to an
        # unvoiced one), unless it jumps by more than hn_jump_ratio: then the old series fades out at the
        # old F0 while the new one fades in at the new F0, as no voice glides an octave in 10 ms (an F0
        # tracker's octave error would otherwise sweep every harmonic across the spectrum: a click).
        fa, fb = start[:, 2 * k], end[:, 2 * k]                                            # (B, n)
        fa, fb = torch.where(fa > 0, fa, fb), torch.where(fb > 0, fb, fa)
        ratio = torch.maximum(fa, fb) / torch.clamp(torch.minimum(fa, fb), min=1.0)
        jump = (ratio > self.cfg.hn_jump_ratio).float()                                    # (B, n)
        glide_to = fa + (fb - fa) * (1 - jump)
        rate = float(self.cfg.sample_rate)
        block = (hop * fa + (glide_to - fa) * (hop - 1) / 2) * (1 - jump) / rate + hop * fb * jump / rate
        starts = torch.cumsum(block.double(), dim=1) - block.double() + prev_phase[:, 0, :].double()
        starts = torch.remainder(starts, 1.0).float().unsqueeze(2)                         # (B, n, 1)
        s = w * hop                                                                        # 0 .. hop - 1
        old_phase = starts + (s * fa.unsqueeze(2) + (glide_to - fa).unsqueeze(2) * s * (s - 1) / (2 * hop)) / rate
        new_phase = starts + s * fb.unsqueeze(2) / rate
        end_phase = torch.remainder(starts[:, -1:, 0] + block[:, -1:], 1.0)
        coef_a, coef_b = start[:, : 2 * k], end[:, : 2 * k]
        keep = (1 - jump).unsqueeze(1)
        old = per_sample(coef_a, coef_b * keep)                                            # glides, or fades out
        new = per_sample(torch.zeros_like(coef_b), coef_b * (1 - keep))                   # fades in at a jump

        def series(coef: Tensor, phase: Tensor) -> Tensor:
            cycles = torch.remainder(phase.reshape(b, 1, n * hop) * self.orders, 1.0) * (2 * math.pi)   # (B, K, T)
            return (coef[:, :k] * torch.cos(cycles) - coef[:, k:] * torch.sin(cycles)).sum(1, keepdim=True)

        harmonic = series(old, old_phase) + series(new, new_phase)
        taps = self.cfg.hn_noise_taps
        history = torch.cat([prev_noise, noise], dim=2)                                  # (B, 1, H + T)
        padded = history[:, :, self.noise_history - (taps - 1) :]
        bands = F.conv1d(padded, self.bank)                                                # (B, bands, T)
        nb = self.cfg.hn_noise_bands
        gains = per_sample(start[:, 2 * k + 1 : 2 * k + 1 + nb], end[:, 2 * k + 1 : 2 * k + 1 + nb])
        out_comb: list[Tensor] = []
        if self.combed:
            mix = per_sample(start[:, 2 * k + 1 + nb : 2 * k + 1 + 2 * nb], end[:, 2 * k + 1 + nb : 2 * k + 1 + 2 * nb])
            combed = self._comb(history, fa, fb, b, n)
            padded_comb = torch.cat([prev_comb, combed], dim=2)
            comb_bands = F.conv1d(padded_comb, self.bank)
            bands = bands * (1 - mix) + comb_bands * mix
            out_comb = [padded_comb[:, :, padded_comb.shape[2] - (taps - 1) :]]
        noisy = (bands * gains).sum(1, keepdim=True)
        if self.pulsed:
            mix = per_sample(start[:, -1:], end[:, -1:])                                   # (B, 1, T)
            cycle = torch.cos(old_phase.reshape(b, 1, n * hop) * (2 * math.pi))
            pulse = torch.exp(self.cfg.hn_noise_pulse * (cycle - 1.0)) / self.pulse_norm
            noisy = noisy * (1.0 - mix + mix * pulse)
        out += [full[:, :, -1:], end_phase.view(b, 1, 1), history[:, :, history.shape[2] - self.noise_history :],
                *out_comb]
        return harmonic + noisy, out

    def _comb(self, history: Tensor, fa: Tensor, fb: Tensor, b: int, n: int) -> Tensor:
        """The block's noise through ``(1 + z^-P)^2 / sqrt(6)``, ``P`` the period of the F0 gliding from ``fa`` to
        ``fb`` over each block (frame ends, unvoiced ones filled from their neighbour; capped at the floor's
        period), delays fractional (linear interpolation). ``history``: ``(B, 1, H + T)``, the last ``H`` raw
        noise samples then the block's ``T``."""
        hop, rate = self.cfg.hop_samples, float(self.cfg.sample_rate)
        w = self.ramp
        f = (fa.unsqueeze(2) * (1 - w) + fb.unsqueeze(2) * w).reshape(b, 1, n * hop)
        period = rate / torch.clamp(f, min=2.0 * rate / self.comb_span)                    # samples, <= span / 2
        now = self.noise_history + torch.arange(n * hop, dtype=torch.float32).view(1, 1, -1)

        def delayed(by: Tensor) -> Tensor:
            at = now - by
            lo = torch.floor(at)
            frac = at - lo
            lo = lo.long().expand(b, 1, -1)
            return history.gather(2, lo) * (1 - frac) + history.gather(2, lo + 1) * frac

        current = history[:, :, self.noise_history :]
        return (current + 2.0 * delayed(period) + delayed(2.0 * period)) / math.sqrt(6.0)


def build_generator(cfg: VocoderConfig) -> Generator:
    return {"hifigan": HifiGanGenerator, "pwg": PwgGenerator, "hn": HarmonicNoiseGenerator}[cfg.kind](cfg)


# -- discriminators -------------------------------------------------------------------------------
def _features(convs: nn.ModuleList, post: nn.Module, x: Tensor, slope: float) -> tuple[Tensor, list[Tensor]]:
    """A discriminator's score (flattened) and every layer's activations (for feature matching)."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), slope)
        feats.append(x)
    x = post(x)
    feats.append(x)
    return x.flatten(1), feats


class PeriodDiscriminator(nn.Module):
    """One period of HiFi-GAN's multi-period discriminator: the waveform folded to ``(T / p, p)``."""

    def __init__(self, period: int, div: int) -> None:
        super().__init__()
        self.period = period
        chans = [1, *(max(4, c // div) for c in (32, 128, 512, 1024, 1024))]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(chans[i], chans[i + 1], (5, 1), (3 if i < 4 else 1, 1), padding=(2, 0)))
            for i in range(5))
        self.post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, c, t = x.shape
        if t % self.period:
            pad = self.period - t % self.period
            x = F.pad(x, (0, pad), "reflect")
            t += pad
        return _features(self.convs, self.post, x.view(b, c, t // self.period, self.period), LRELU_SLOPE)


class ScaleDiscriminator(nn.Module):
    """One scale of HiFi-GAN's (MelGAN's) multi-scale discriminator."""

    def __init__(self, div: int) -> None:
        super().__init__()
        c = [max(4, v // div) for v in (128, 128, 256, 512, 1024, 1024, 1024)]
        specs = [(1, c[0], 15, 1, 1), (c[0], c[1], 41, 2, 4), (c[1], c[2], 41, 2, 16), (c[2], c[3], 41, 4, 16),
                 (c[3], c[4], 41, 4, 16), (c[4], c[5], 41, 1, 16), (c[5], c[6], 5, 1, 1)]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv1d(i, o, k, s, groups=math.gcd(g, i, o), padding=k // 2)) for i, o, k, s, g in specs)
        self.post = weight_norm(nn.Conv1d(c[6], 1, 3, 1, padding=1))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        return _features(self.convs, self.post, x, LRELU_SLOPE)


class HifiGanDiscriminator(nn.Module):
    """Multi-period (2, 3, 5, 7, 11) and multi-scale (x1, x2, x4 average-pooled) discriminators."""

    def __init__(self, div: int = 1) -> None:
        super().__init__()
        self.periods = nn.ModuleList(PeriodDiscriminator(p, div) for p in (2, 3, 5, 7, 11))
        self.scales = nn.ModuleList(ScaleDiscriminator(div) for _ in range(3))

    def forward(self, x: Tensor) -> list[tuple[Tensor, list[Tensor]]]:
        out = [d(x) for d in self.periods]
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool1d(x, 4, 2, padding=2)    # each scale halves the rate of the one before
            out.append(d(x))
        return out


class PwgDiscriminator(nn.Module):
    """Parallel WaveGAN's discriminator: 10 dilated non-causal convolutions, 64 channels, LeakyReLU 0.2."""

    def __init__(self, div: int = 1, layers: int = 10) -> None:
        super().__init__()
        ch = max(4, 64 // div)
        mods = []
        for i in range(layers - 1):
            d = 1 if i == 0 else i
            mods.append(weight_norm(nn.Conv1d(1 if i == 0 else ch, ch, 3, padding=d, dilation=d)))
        self.convs = nn.ModuleList(mods)
        self.post = weight_norm(nn.Conv1d(ch, 1, 3, padding=1))

    def forward(self, x: Tensor) -> list[tuple[Tensor, list[Tensor]]]:
        return [_features(self.convs, self.post, x, 0.2)]


def build_discriminator(kind: str, div: int) -> nn.Module:
    return PwgDiscriminator(div) if kind == "pwg" else HifiGanDiscriminator(div)

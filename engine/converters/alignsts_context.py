"""How much of its inputs an AlignSTS output frame depends on: what streaming it exactly takes.

With absolute attention windows (``window_mode = "absolute"``) every part of the model sees a
bounded neighbourhood: target frame ``t`` depends on the target-axis inputs (F0 classes, the
diffusion noise) within ``target_frames`` of it, and on the content frames within
``content_frames`` of its window centre ``t * ratio`` (``ratio``: content frames per target
frame, an input of the model). A streamed chunk of output
frames ``[a, b)`` is then computed exactly by running the whole-utterance graph on the slice
``[a - target_frames, b + target_frames)`` of the target axis and the content frames that slice
reaches, with the slice's absolute offsets, and keeping ``[a, b)``. The timbre is the one input
that sees a whole recording: a stream gives it a fixed reference.

Torch-free: the engine's runner and the trainer's tests share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError
from ..features.mel import MelConfig
from .base import ChunkGrid

#: the AlignSTS paper's baselines a model configuration's ``architecture`` may name
#: (:mod:`voxflip.trainer.models.sts_baselines`); anything else is AlignSTS itself
BASELINES = ("parekh", "speechsplit2")
#: the aligner's feed-forward kernel (:class:`voxflip.trainer.models.alignsts.CrossAttentionLayer`'s default)
ALIGNER_FFN_KERNEL = 9


@dataclass(frozen=True)
class AlignSTSContext:
    target_frames: int          # each side, on the target axis
    content_frames: int         # each side of a window centre, on the content axis

    @classmethod
    def of(cls, cfg: dict) -> AlignSTSContext:
        """From a model configuration (``AlignSTSConfig.to_dict()``, or a manifest's ``model_config``)."""
        if cfg.get("window_mode") != "absolute":
            raise ConfigError(f"an AlignSTS model with window_mode={cfg.get('window_mode')!r} needs whole utterances "
                              "(its windows follow both lengths); streaming needs window_mode = \"absolute\"")
        half = lambda kernel: int(kernel) // 2  # noqa: E731
        if cfg.get("architecture") in BASELINES:
            return cls._of_baseline(cfg, half)
        target = (cfg["pitch_layers"] * half(cfg["pitch_kernel"]) + half(cfg["rp_ffn_kernel"])
                  + cfg["rp_conv_layers"] * half(cfg["rp_conv_kernel"])
                  + cfg["aligner_layers"] * half(ALIGNER_FFN_KERNEL))
        if cfg["decoder"] == "diffusion":
            layers, cycle = 5 * cfg["decoder_layers"], cfg["diffusion_dilation_cycle"]
            target += cfg["diffusion_steps"] * sum(2 ** (i % cycle) for i in range(layers))
        else:
            target += cfg["decoder_layers"] * (cfg["decoder_context"] + half(cfg["decoder_kernel"]))
        content = cfg["window_frames"] + cfg["content_layers"] * half(cfg["content_kernel"]) + 1
        return cls(int(target), int(content))

    @classmethod
    def _of_baseline(cls, cfg: dict, half) -> AlignSTSContext:
        """A baseline of :mod:`voxflip.trainer.models.sts_baselines`: convolutions on the target axis after a
        linear stretch (which reads the content frames either side of ``t * ratio``)."""
        encoder = cfg["baseline_layers"] * half(cfg["baseline_kernel"])
        pitch = cfg["pitch_layers"] * half(cfg["pitch_kernel"])
        smooth = half(cfg["ss_smooth"]) if cfg["architecture"] == "speechsplit2" else 0
        target = max(encoder, pitch) + smooth + cfg["decoder_layers"] * half(cfg["baseline_kernel"])
        return cls(int(target), 2)

    def content_span(self, t_start: int, t_end: int, ratio: float) -> tuple[int, int]:
        """Content frames ``[n_start, n_end)`` that target frames ``[t_start, t_end)`` can reach (unclipped)."""
        return (math.floor(t_start * ratio) - self.content_frames, math.ceil(t_end * ratio) + self.content_frames + 1)

    def slices(self, a: int, b: int, t_total: int, n_total: int, ratio: float) -> tuple[int, int, int, int]:
        """The input slices ``(ta, tb, na, nb)`` that give output frames ``[a, b)`` exactly."""
        ta, tb = max(0, a - self.target_frames), min(t_total, b + self.target_frames)
        na, nb = self.content_span(ta, tb, ratio)
        return ta, tb, max(0, na), min(n_total, nb)

    def lookahead_s(self, target_frame_s: float, content_frame_s: float) -> float:
        """How far past an output frame its inputs reach, in seconds: the target-axis margin, then
        the content window beyond that frame's centre."""
        return self.target_frames * target_frame_s + self.content_frames * content_frame_s


def alignsts_chunk_grid() -> ChunkGrid:
    """The ``alignsts`` converter's chunks, on the model's 24 kHz, 128-sample hop: 1 s offline, 10.7 ms
    live (it listens until the input ends, so the chunk changes only how often it is called)."""
    mel = MelConfig.for_to_singing()
    return ChunkGrid(mel.hop_samples, mel.sample_rate, default_frames=187, live_frames=2)


def alignsts_stream_grid() -> ChunkGrid:
    """``alignsts-stream``'s chunks, on the model's 24 kHz, 128-sample hop; a chunk is also the group of
    output frames sung at once (each call of the model adds its context both sides): 1 s offline, 171 ms live."""
    mel = MelConfig.for_to_singing()
    return ChunkGrid(mel.hop_samples, mel.sample_rate, default_frames=187, live_frames=32)

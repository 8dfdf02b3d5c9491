"""AlignSTS with torch, for the trainer and its tests: a reference singing's F0 on the model's grid
(:func:`reference_f0`, the paper's condition, which ``voxflip eval``'s ``ref:*`` systems give the
converter) and chunk-by-chunk inference of a torch model (:func:`infer_streamed`). Conversion itself
is the ``alignsts`` converter's (:mod:`voxflip.engine.converters.alignsts_to_singing`).
"""

from __future__ import annotations

import numpy as np

from .data.features import FeatureConfig, side_features
from .models.alignsts import AlignSTS


def reference_f0(audio: np.ndarray, rate: int) -> np.ndarray:
    """The F0 of a reference singing on the model's frame grid (the engine's YIN, as in training)."""
    return side_features(np.asarray(audio, np.float32), rate, FeatureConfig.preset("to_singing"))["f0_hz"]


def infer_streamed(model: AlignSTS, content, f0_bins, timbre_mel, noise=None, *, chunk_frames: int = 64):
    """:meth:`AlignSTS.infer` chunk by chunk (``chunk_frames`` target frames at a time), each chunk from
    the input slices :class:`~voxflip.engine.converters.alignsts_context.AlignSTSContext` names, with
    the whole utterance's ratio ``N / T``; equals the whole-utterance output (a test). Batch of one;
    returns the ``(1, n_mels, T)`` mel."""
    import torch

    from voxflip.engine.converters.alignsts_context import AlignSTSContext

    ctx = AlignSTSContext.of(model.cfg.to_dict())
    t_total, n_total = f0_bins.shape[1], content.shape[2]
    ratio = n_total / t_total
    pieces = []
    for a in range(0, t_total, chunk_frames):
        b = min(t_total, a + chunk_frames)
        ta, tb, na, nb = ctx.slices(a, b, t_total, n_total, ratio)
        out = model.infer(content[:, :, na:nb], torch.tensor([nb - na]), f0_bins[:, ta:tb], torch.tensor([tb - ta]),
                          timbre_mel, torch.tensor([timbre_mel.shape[2]]),
                          noise=None if noise is None else noise[..., ta:tb],
                          t_offset=torch.tensor([float(ta)]), n_offset=torch.tensor([float(na)]),
                          ratio=torch.tensor([ratio]))
        pieces.append(out["mel"][:, :, a - ta : b - ta])
    return torch.cat(pieces, dim=2)

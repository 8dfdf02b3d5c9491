"""AlignSTS with torch, for the trainer and its tests: a reference singing's F0 on the model's grid
(:func:`reference_features`: its F0 is the paper's condition, which ``voxflip eval``'s ``ref:*`` systems give the
converter) and chunk-by-chunk inference of a torch model (:func:`infer_streamed`). Conversion itself
is the ``alignsts`` converter's (:mod:`voxflip.engine.converters.alignsts_to_singing`).
"""

from __future__ import annotations

import numpy as np

from .data.features import FeatureConfig, side_features
from .models.alignsts import AlignSTS


def reference_features(audio: np.ndarray, rate: int) -> dict[str, np.ndarray]:
    """A reference singing's features on the model's frame grid, as in training: ``f0_hz`` (the engine's YIN)
    and ``mel`` ``(T, n_mels)``, the same length."""
    return side_features(np.asarray(audio, np.float32), rate, FeatureConfig.preset("to_singing"))


def infer_streamed(model: AlignSTS, content, f0_bins, timbre_mel, noise=None, *, chunk_frames: int = 64,
                   target_mel=None):
    """:meth:`AlignSTS.infer` chunk by chunk (``chunk_frames`` target frames at a time), each chunk from
    the input slices :class:`~voxflip.engine.converters.alignsts_context.AlignSTSContext` names, with
    the whole utterance's ratio ``N / T``; equals the whole-utterance output (a test). Batch of one;
    returns the ``(1, n_mels, T)`` mel. ``target_mel`` ``(1, n_mels, T)``: for a baseline that reads it."""
    import torch

    from voxflip.engine.converters.alignsts_context import AlignSTSContext

    ctx = AlignSTSContext.of(model.cfg.to_dict())
    t_total, n_total = f0_bins.shape[1], content.shape[2]
    ratio = n_total / t_total
    pieces = []
    for a in range(0, t_total, chunk_frames):
        b = min(t_total, a + chunk_frames)
        ta, tb, na, nb = ctx.slices(a, b, t_total, n_total, ratio)
        extra = {} if target_mel is None else {"target_mel": target_mel[:, :, ta:tb]}
        out = model.infer(content[:, :, na:nb], torch.tensor([nb - na]), f0_bins[:, ta:tb], torch.tensor([tb - ta]),
                          timbre_mel, torch.tensor([timbre_mel.shape[2]]),
                          noise=None if noise is None else noise[..., ta:tb],
                          t_offset=torch.tensor([float(ta)]), n_offset=torch.tensor([float(na)]),
                          ratio=torch.tensor([ratio]), **extra)
        pieces.append(out["mel"][:, :, a - ta : b - ta])
    return torch.cat(pieces, dim=2)

"""Offline AlignSTS conversion with a trained checkpoint (torch): speech + a target F0 contour -> singing.

The target F0 is the paper's condition. It comes from notes (:func:`notes_f0`: each note's
pitch with the WORLD converters' portamento and vibrato, rests unvoiced; what ``world`` sings
from the same notes) or from a reference singing's own F0 (:func:`reference_f0`, the paper's
setting: its F0 holds the singer's rhythm, consonant gaps included). The content is the
speech's Whisper encoder states, the timbre its mel; the mel the model predicts is vocoded by
the DSP mel vocoder at 24 kHz (:class:`~voxflip.engine.vocoder.mel_vocoder.MelVocoder`), with
the target F0 as its excitation.
"""

from __future__ import annotations

import numpy as np

from voxflip.engine.converters.alignsts_model import MAX_TARGET_FRAMES, f0_classes, notes_f0, target_mel
from voxflip.engine.errors import ConfigError

from .data.content import whisper_states
from .data.features import FeatureConfig, side_features
from .models.alignsts import AlignSTS

__all__ = ["convert", "infer_streamed", "notes_f0", "reference_f0", "target_mel"]

def reference_f0(audio: np.ndarray, rate: int) -> np.ndarray:
    """The F0 of a reference singing on the model's frame grid (the engine's YIN, as in training)."""
    return side_features(np.asarray(audio, np.float32), rate, FeatureConfig.preset("to_singing"))["f0_hz"]


def convert(model: AlignSTS, speech: np.ndarray, rate: int, f0_hz: np.ndarray, *, seed: int = 0,
            content: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Sing ``speech`` on the F0 contour ``f0_hz`` (frames of the model's grid).

    Returns ``mel`` ``(T, 80)``, the predicted rhythm ``codes`` ``(T,)``, the aligner's last
    attention ``(T, N)``, and ``audio`` at 24 kHz (the DSP mel vocoder). ``content``: the
    speech's Whisper states when already computed.
    """
    import torch

    from voxflip.engine.vocoder.mel_vocoder import MelVocoder, MelVocoderConfig

    f0 = np.asarray(f0_hz, np.float32)
    if f0.ndim != 1 or not 1 <= f0.shape[0] <= MAX_TARGET_FRAMES:
        raise ConfigError(f"the target F0 must be 1..{MAX_TARGET_FRAMES} frames (60 s), got shape {f0.shape}")
    cfg = model.cfg
    states = whisper_states(speech, rate) if content is None else content
    timbre = side_features(np.asarray(speech, np.float32), rate, FeatureConfig.preset("to_singing"))["mel"]
    bins = f0_classes(f0, cfg.pitch_bins, cfg.f0_min_hz, cfg.f0_max_hz)
    gen = torch.Generator().manual_seed(seed)
    t = f0.shape[0]
    noise = torch.randn(cfg.diffusion_steps, 1, cfg.n_mels, t, generator=gen) if cfg.decoder == "diffusion" else None
    out = model.infer(torch.from_numpy(states.T.copy())[None].float(), torch.tensor([states.shape[0]]),
                      torch.from_numpy(bins.astype(np.int64))[None], torch.tensor([t]),
                      torch.from_numpy(np.ascontiguousarray(timbre.T))[None].float(), torch.tensor([timbre.shape[0]]),
                      noise=noise)
    mel = out["mel"][0].T.numpy().astype(np.float32)
    vocoder = MelVocoder(MelVocoderConfig(mel=target_mel()))
    audio = vocoder(mel, f0)
    return {"mel": mel, "codes": out["codes"][0].numpy(), "attention": out["attention"][0].numpy(),
            "audio": audio.astype(np.float32)}


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

"""Optimisation profiles (min / opt / max input shapes) for the graphs of an exported flow model.

TensorRT builds an engine for ranges of input shapes, one range per dynamic dimension. A flow
model's graphs have two: the streams of one call (``batch``, axis 0 of every input) and the mel
frames of one chunk (axis 2 of ``mel``, ``noise``, ``z``, ``skip``). Their ranges come from the
manifest's chunking, as the engine's flow converter streams it:

- ``step`` and ``encoder`` get ``chunk_frames`` frames per call, and the first call of a stream
  ``chunk_frames + lookahead_frames + 1`` (the analysis runs the model's lookahead and one
  vocoder frame ahead): ``min = 1`` (a short last chunk), ``opt = chunk_frames``,
  ``max = chunk_frames + lookahead_frames + 1``;
- ``decoder`` gets the frames the predicted durations expand one chunk to, at most
  ``max_expansion`` speech frames per singing frame: ``max = max_expansion * (chunk_frames + 1)``;
- state inputs have fixed frames (their manifest shapes), only the batch varies.

Every input's batch range is ``1 .. max_streams`` with ``opt_streams`` as the tuned point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import BuildConfigError

#: the inputs whose axis 2 counts mel frames, per graph role (the rest are state: fixed frames)
FRAME_INPUTS: dict[str, tuple[str, ...]] = {
    "step": ("mel", "noise"),
    "encoder": ("mel",),
    "decoder": ("z", "skip"),
}
#: the most streams one engine call may carry (a profile's max batch)
MAX_STREAMS = 4096


@dataclass(frozen=True)
class ShapeRange:
    """One input's shapes for a TensorRT optimisation profile (``IOptimizationProfile.set_shape``)."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __post_init__(self) -> None:
        if not len(self.min) == len(self.opt) == len(self.max):
            raise BuildConfigError(f"profile shapes {self.min}, {self.opt}, {self.max} must have the same rank")
        for lo, mid, hi in zip(self.min, self.opt, self.max, strict=True):
            if not 1 <= lo <= mid <= hi:
                raise BuildConfigError(f"profile shapes {self.min} <= {self.opt} <= {self.max} must hold per "
                                       "dimension, each >= 1")

    def to_json(self) -> list[list[int]]:
        return [list(self.min), list(self.opt), list(self.max)]

    @classmethod
    def from_json(cls, value: Any) -> ShapeRange:
        if not isinstance(value, list) or len(value) != 3:
            raise BuildConfigError(f"a profile entry is [min, opt, max] shapes, got {str(value)[:60]}")
        return cls(*(tuple(int(d) for d in shape) for shape in value))


@dataclass(frozen=True)
class ProfileConfig:
    """What the profiles are sized for.

    Attributes:
        max_streams: streams one call may carry (the profile's max batch), 1..MAX_STREAMS.
        opt_streams: the batch TensorRT tunes its kernels for, 1..max_streams.
        max_expansion: speech frames one singing frame may expand to in ``dur`` (the engine's
            ``MAX_FRAMES_PER_FRAME``), for the decoder's frame range.
    """

    max_streams: int = 1
    opt_streams: int = 1
    max_expansion: int = 16

    def __post_init__(self) -> None:
        if not isinstance(self.max_streams, int) or not 1 <= self.max_streams <= MAX_STREAMS:
            raise BuildConfigError(f"max_streams={self.max_streams!r} must be a whole number in 1..{MAX_STREAMS}")
        if not isinstance(self.opt_streams, int) or not 1 <= self.opt_streams <= self.max_streams:
            raise BuildConfigError(f"opt_streams={self.opt_streams!r} must be a whole number in "
                                   f"1..max_streams ({self.max_streams})")
        if not isinstance(self.max_expansion, int) or not 1 <= self.max_expansion <= 64:
            raise BuildConfigError(f"max_expansion={self.max_expansion!r} must be a whole number of frames in 1..64")


def frame_range(role: str, chunk_frames: int, lookahead_frames: int, max_expansion: int) -> tuple[int, int, int]:
    """(min, opt, max) mel frames per call of the graph ``role`` (see the module docstring)."""
    if role not in FRAME_INPUTS:
        raise BuildConfigError(f"graph role {role!r} has no profile; roles: {', '.join(FRAME_INPUTS)}")
    if chunk_frames < 1 or lookahead_frames < 0:
        raise BuildConfigError(f"chunk_frames={chunk_frames!r} must be >= 1 and lookahead_frames="
                               f"{lookahead_frames!r} >= 0")
    if role == "decoder":
        return 1, chunk_frames, max_expansion * (chunk_frames + 1)
    return 1, chunk_frames, chunk_frames + lookahead_frames + 1


def graph_profile(role: str, manifest: Mapping[str, Any], config: ProfileConfig) -> dict[str, ShapeRange]:
    """The profile of one graph: input name -> :class:`ShapeRange`, from the manifest's fields.

    Args:
        role: ``step``, ``encoder`` or ``decoder`` (a key of the manifest's ``files``).
        manifest: a checked flow-model manifest (``mel.n_mels``, ``chunk_frames``,
            ``lookahead_frames``, ``state``, ``residual``).
        config: streams and expansion limits.

    Returns:
        One entry per input the graph takes, batch first: ``[B, n_mels, frames]`` for frame
        inputs, ``[B, *shape[1:]]`` for state inputs.
    """
    n_mels = int(manifest["mel"]["n_mels"])
    lo, mid, hi = frame_range(role, int(manifest["chunk_frames"]), int(manifest["lookahead_frames"]),
                              config.max_expansion)
    b_lo, b_mid, b_hi = 1, config.opt_streams, config.max_streams
    inputs = list(FRAME_INPUTS[role])
    if role == "decoder" and not manifest.get("residual", False):
        inputs.remove("skip")
    profile = {name: ShapeRange((b_lo, n_mels, lo), (b_mid, n_mels, mid), (b_hi, n_mels, hi)) for name in inputs}
    for entry in manifest["state"]:
        name = entry["name"]
        if role == "decoder" and not name.startswith("flow"):
            continue
        if role == "encoder" and name.startswith("flow"):
            continue
        rest = tuple(entry["shape"][1:])
        profile[f"state_in.{name}"] = ShapeRange((b_lo, *rest), (b_mid, *rest), (b_hi, *rest))
    return profile


def profile_values(profile: Mapping[str, ShapeRange]) -> int:
    """Values of every input at the profile's max shapes (for a memory estimate: 4 bytes each in fp32)."""
    return sum(math.prod(r.max) for r in profile.values())


def profile_to_json(profile: Mapping[str, ShapeRange]) -> dict[str, list[list[int]]]:
    return {name: r.to_json() for name, r in sorted(profile.items())}


def profile_from_json(value: Any) -> dict[str, ShapeRange]:
    if not isinstance(value, dict):
        raise BuildConfigError(f"a profile is an object of input: [min, opt, max], got {str(value)[:60]}")
    return {str(name): ShapeRange.from_json(r) for name, r in value.items()}

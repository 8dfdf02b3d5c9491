"""Frame grids shared by every feature: where frames sit and which samples they see.

A frame grid is centred: frame ``j`` is centred on sample ``j * hop_samples`` of
the signal, and its analysis window covers ``[j*hop - win//2, j*hop - win//2 + win)``.
Samples before 0 are zeros. Because each frame depends only on the samples in
its own window, features computed frame by frame on a stream equal the features
of the whole signal: that is what lets streaming and offline output agree.
"""

from __future__ import annotations

import numpy as np


def frame_count(num_samples: int, hop_samples: int) -> int:
    """Number of centred frames whose centre lies inside a signal of ``num_samples``."""
    if num_samples <= 0:
        return 0
    return (num_samples - 1) // hop_samples + 1


def frame_matrix(
    segment: np.ndarray, segment_start: int, first_frame: int, num_frames: int, hop_samples: int, win_samples: int
) -> np.ndarray:
    """Gather analysis windows of consecutive frames from a segment of a longer signal.

    Args:
        segment: 1-D samples of the signal starting at absolute sample ``segment_start``.
        segment_start: absolute index of ``segment[0]``; may be negative when the
            caller has prepended zeros for the start of the stream.
        first_frame: index of the first frame to gather.
        num_frames: how many consecutive frames.
        hop_samples, win_samples: the frame grid.

    Returns:
        ``(num_frames, win_samples)`` array (a copy). Samples the segment does not
        cover are an error: the caller must pass enough context.

    Raises:
        ValueError: the segment does not cover every requested window.
    """
    first_sample = first_frame * hop_samples - win_samples // 2 - segment_start
    last_sample = first_sample + (num_frames - 1) * hop_samples + win_samples
    if num_frames <= 0:
        return np.zeros((0, win_samples), dtype=segment.dtype)
    if first_sample < 0 or last_sample > segment.shape[0]:
        raise ValueError(
            f"segment covers samples [{segment_start}, {segment_start + segment.shape[0]}) but frames "
            f"{first_frame}..{first_frame + num_frames - 1} need [{first_sample + segment_start}, "
            f"{last_sample + segment_start})"
        )
    covered = segment[first_sample:last_sample]
    if num_frames == 1:     # a live chunk of one frame: no strided view to build
        return covered[None].copy()
    step = covered.strides[0]
    view = np.lib.stride_tricks.as_strided(covered, (num_frames, win_samples), (hop_samples * step, step),
                                           writeable=False)
    return np.ascontiguousarray(view)


def pad_for_frames(audio: np.ndarray, hop_samples: int, win_samples: int) -> tuple[np.ndarray, int, int]:
    """Zero-pad a whole signal so that every centred frame's window is covered.

    Returns:
        ``(padded, segment_start, num_frames)`` to pass on to :func:`frame_matrix`.
    """
    n = frame_count(audio.shape[0], hop_samples)
    left = win_samples // 2
    right = max(0, (n - 1) * hop_samples - left + win_samples - audio.shape[0]) if n else 0
    padded = np.concatenate([np.zeros(left, audio.dtype), audio, np.zeros(right, audio.dtype)])
    return padded, -left, n

"""Does it sound spoken? Pitch and timing measures beside intelligibility.

A converter can keep every word and still sound sung, or sound spoken and lose the words, so
``voxflip eval`` reports these next to the CER:

- **held pitch** (:func:`voxflip.trainer.eval.metrics.held_pitch_fraction`): the share of voiced
  frames inside a held-pitch stretch (100 ms within 0.3 semitone). Read speech scores about
  0.16 on the development recordings, their sung versions about 0.5.
- **duration ratio**: the output's length over the paired real speech's, both with leading and
  trailing silence trimmed (:func:`trimmed_duration_s`). 1 is the speaker's own reading pace.
- **F0 offset**: the median pitch of the output minus that of the singer's real speech, in
  semitones. Singing sits higher than speech; 0 is the speaker's own speaking pitch.

The F0 tracker is Praat's autocorrelation method (praat-parselmouth, ``to_pitch_ac``, 10 ms
step, 60-1100 Hz: :func:`voxflip.trainer.eval.to_singing_metrics.praat_f0`, the tracker of RCA
too): independent of the converters' own YIN, so a converter is not judged by the tracker it
was built on.
"""

from __future__ import annotations

import numpy as np

from .metrics import check_audio, check_sample_rate, held_pitch_fraction
from .to_singing_metrics import PRAAT_TIME_STEP_S as F0_STEP_S
from .to_singing_metrics import praat_f0 as _praat_f0

#: a frame is silence when its level is this far below the loudest 20 ms frame of the clip
SILENCE_BELOW_PEAK_DB = 40.0


def praat_f0(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """F0 every 10 ms (0 where unvoiced) by Praat, as RCA measures it; empty for clips under 50 ms."""
    if check_audio(audio).shape[0] < int(0.05 * check_sample_rate(sample_rate)):
        return np.zeros(0)
    return _praat_f0(audio, sample_rate)[1]


def trimmed_duration_s(audio: np.ndarray, sample_rate: int) -> float:
    """Seconds from the first to the last frame within :data:`SILENCE_BELOW_PEAK_DB` of the loudest."""
    samples = check_audio(audio)
    rate = check_sample_rate(sample_rate)
    frame = max(1, int(0.02 * rate))
    n = samples.shape[0] // frame
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1))
    level = 20.0 * np.log10(rms + 1e-12)
    loud = np.flatnonzero(level > level.max() - SILENCE_BELOW_PEAK_DB)
    return (loud[-1] - loud[0] + 1) * frame / rate


def median_semitones(f0_hz: np.ndarray) -> float:
    voiced = f0_hz[f0_hz > 0]
    return float(np.median(12.0 * np.log2(voiced / 440.0))) if voiced.size else float("nan")


def speech_likeness(audio: np.ndarray, sample_rate: int, speech: np.ndarray | None = None,
                    speech_rate: int | None = None) -> dict[str, float]:
    """Held pitch of ``audio``; with the paired real speech, also the duration ratio and the F0 offset.

    Returns:
        ``{"held_pitch", "duration_ratio", "f0_offset_st"}``, the last two only with ``speech``;
        a value that cannot be measured (no voiced frame) is NaN.
    """
    f0 = praat_f0(audio, sample_rate)
    out = {"held_pitch": held_pitch_fraction(f0, F0_STEP_S) if np.any(f0 > 0) else float("nan")}
    if speech is not None and speech_rate is not None:
        reference = trimmed_duration_s(speech, speech_rate)
        out["duration_ratio"] = trimmed_duration_s(audio, sample_rate) / reference if reference > 0 else float("nan")
        out["f0_offset_st"] = median_semitones(f0) - median_semitones(praat_f0(speech, speech_rate))
    return out

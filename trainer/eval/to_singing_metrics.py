"""Speech-to-singing metrics of AlignSTS (section 4.1.3): LSD, RCA, RRD, plus F0 RMSE in cents.

- LSD: log-spectral distance in dB between the estimate's and the ground-truth singing's log
  power spectrograms (lower is better).
- RCA: mir_eval raw chroma accuracy of the estimate's F0 against the target melody, 50 cents
  tolerance, over the melody's voiced frames (higher is better, 1 is perfect).
- RRD: rhythm representation distance, the RMS difference of the AlignSTS rhythm contours
  (equation 3) of ground truth and estimate, on voxflip's own features (lower is better).
- F0 RMSE: root mean square of the estimate's pitch error in cents over frames voiced in both.

The estimate's F0 comes from Praat's autocorrelation pitch tracker (Boersma 1993) through
praat-parselmouth, independent of voxflip's own YIN (:mod:`voxflip.engine.features.pitch`)
so that a converter is not judged by the tracker it was built with.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np

from voxflip.engine.features.frames import frame_matrix, pad_for_frames
from voxflip.engine.features.mel import MelAnalyzer, MelConfig
from voxflip.engine.features.rhythm import rhythm, rhythm_distance
from voxflip.engine.notes import Melody

from .metrics import check_audio, check_sample_rate, missing_dependency, resample

PRAAT_TIME_STEP_S = 0.01
F0_MIN_HZ = 60.0
F0_MAX_HZ = 1100.0
LSD_POWER_FLOOR = 1e-10  # -100 dB: digital silence in both signals counts as equal
LengthPolicy = Literal["stretch", "truncate"]


@lru_cache(maxsize=8)
def _stft_analyzer(sample_rate: int) -> MelAnalyzer:
    """voxflip's STS analysis frame (512-sample Hann window, hop 128) at ``sample_rate``."""
    sts = MelConfig.for_to_singing()
    return MelAnalyzer(MelConfig(sample_rate=sample_rate, n_fft=sts.n_fft, win_samples=sts.win_samples,
                                 hop_samples=sts.hop_samples, fmin_hz=0.0, fmax_hz=sample_rate / 2))


def log_power_spectrogram(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """``(frames, 257)`` power spectrogram in dB, ``10 log10(max(|STFT|**2, 1e-10))``.

    Frames are voxflip's centred frames (frame ``j`` centred on sample ``j * 128``), Hann
    window of 512 samples, FFT size 512, at the audio's own sample rate.
    """
    analyzer = _stft_analyzer(check_sample_rate(sample_rate))
    cfg = analyzer.config
    padded, start, n = pad_for_frames(check_audio(audio), cfg.hop_samples, cfg.win_samples)
    magnitude = analyzer.magnitude(frame_matrix(padded, start, 0, n, cfg.hop_samples, cfg.win_samples))
    return 10.0 * np.log10(np.maximum(magnitude * magnitude, LSD_POWER_FLOOR))


def _stretch_frames(frames: np.ndarray, count: int) -> np.ndarray:
    """Linearly interpolate ``(n, bins)`` frames onto ``count`` frames spanning the same time."""
    n = frames.shape[0]
    if n == count:
        return frames
    if n == 1:
        return np.repeat(frames, count, axis=0)
    position = np.linspace(0.0, n - 1, count)
    lower = np.minimum(np.floor(position).astype(int), n - 2)
    weight = (position - lower)[:, None]
    return (1.0 - weight) * frames[lower] + weight * frames[lower + 1]


def lsd(ref_audio: np.ndarray, est_audio: np.ndarray, sample_rate: int, *,
        length: LengthPolicy = "stretch") -> float:
    """Log-spectral distance between ground truth and estimate, in dB.

    ``LSD = mean over frames t of sqrt(mean over bins f of (L_ref[t, f] - L_est[t, f])**2)``
    with ``L`` from :func:`log_power_spectrogram`. Level matters: a gain of g dB on the
    estimate adds about |g| dB.

    Args:
        ref_audio: ``(samples,)`` the ground-truth singing, float mono in [-1, 1].
        est_audio: ``(samples,)`` the converted singing, same sample rate.
        sample_rate: in Hz.
        length: how frame counts that differ are aligned. ``"stretch"`` (default) maps the
            estimate's frames linearly onto the reference's frame grid (frame ``j`` of the
            reference meets position ``j * (M - 1) / (N - 1)`` of the estimate's M frames,
            log spectra interpolated linearly), as :func:`rrd` does; ``"truncate"`` drops the
            longer one's extra frames at the end.

    Returns:
        LSD in dB; 0 for identical audio.
    """
    reference = log_power_spectrogram(ref_audio, sample_rate)
    estimate = log_power_spectrogram(est_audio, sample_rate)
    if length == "stretch":
        estimate = _stretch_frames(estimate, reference.shape[0])
    elif length == "truncate":
        count = min(reference.shape[0], estimate.shape[0])
        reference, estimate = reference[:count], estimate[:count]
    else:
        raise ValueError(f"length must be 'stretch' or 'truncate', got {length!r}")
    return float(np.mean(np.sqrt(np.mean((reference - estimate) ** 2, axis=1))))


def rrd(ref_audio: np.ndarray, est_audio: np.ndarray, sample_rate: int) -> float:
    """AlignSTS rhythm representation distance between ground truth and estimate.

    Both signals are resampled to 24 kHz; their energy contours come from
    ``MelAnalyzer(MelConfig.for_to_singing()).energy`` (5.33 ms frames), their rhythm contours from
    :func:`voxflip.engine.features.rhythm.rhythm` (beta 400, Gaussian sigma 1 frame), and the
    distance from :func:`voxflip.engine.features.rhythm.rhythm_distance` (RMS per frame; a
    contour of another length is linearly stretched onto the longer one's frame count).

    Returns:
        RRD in [0, 1] (dimensionless); 0 for identical audio.
    """
    rate = check_sample_rate(sample_rate)
    config = MelConfig.for_to_singing()
    analyzer = _energy_analyzer()
    contours = [rhythm(analyzer.energy(resample(check_audio(x, name), rate, config.sample_rate)))
                for x, name in ((ref_audio, "ref_audio"), (est_audio, "est_audio"))]
    return rhythm_distance(contours[0], contours[1])


@lru_cache(maxsize=1)
def _energy_analyzer() -> MelAnalyzer:
    return MelAnalyzer(MelConfig.for_to_singing())


def praat_f0(audio: np.ndarray, sample_rate: int, *, time_step_s: float = PRAAT_TIME_STEP_S,
             f0_min_hz: float = F0_MIN_HZ, f0_max_hz: float = F0_MAX_HZ) -> tuple[np.ndarray, np.ndarray]:
    """F0 track by Praat's "To Pitch (ac)" with its standard settings, through parselmouth.

    Args:
        audio: ``(samples,)`` float mono, at its own sample rate (Praat needs no resampling).
        sample_rate: in Hz.
        time_step_s: frame hop (10 ms).
        f0_min_hz, f0_max_hz: pitch floor and ceiling (60-1100 Hz, voxflip's singing range;
            the floor sets Praat's window to three periods, 50 ms).

    Returns:
        ``(times_s, f0_hz)``: frame centres and F0, 0 for unvoiced frames.

    Raises:
        ImportError: praat-parselmouth is missing.
    """
    samples = check_audio(audio)
    rate = check_sample_rate(sample_rate)
    try:
        import parselmouth
    except ImportError as exc:
        raise missing_dependency("F0 tracking (RCA, F0 RMSE)", "praat-parselmouth", exc) from exc
    pitch = parselmouth.Sound(samples, sampling_frequency=float(rate)).to_pitch_ac(
        time_step=time_step_s, pitch_floor=f0_min_hz, pitch_ceiling=f0_max_hz)
    return np.asarray(pitch.xs(), dtype=np.float64), np.asarray(pitch.selected_array["frequency"], dtype=np.float64)


def melody_contour(melody: Melody, hop_s: float = PRAAT_TIME_STEP_S) -> tuple[np.ndarray, np.ndarray]:
    """Sample a :class:`voxflip.engine.notes.Melody` on a frame grid for :func:`rca`.

    Returns:
        ``(times_s, f0_hz)`` from 0 to the end of the last note, every ``hop_s``; 0 in rests.
    """
    if hop_s <= 0:
        raise ValueError(f"hop_s must be > 0 s, got {hop_s!r}")
    times = np.arange(0.0, melody.span_s, hop_s)
    f0 = np.array([note.f0_hz if (note := melody.note_at(t)) is not None else 0.0 for t in times])
    return times, f0


def _check_melody(melody_f0_hz: np.ndarray, melody_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f0 = np.asarray(melody_f0_hz, dtype=np.float64)
    times = np.asarray(melody_times, dtype=np.float64)
    if f0.ndim != 1 or f0.shape != times.shape:
        raise ValueError(f"melody_f0_hz and melody_times must be 1-D of one length, got shapes {f0.shape} "
                         f"and {times.shape}")
    if not (np.all(np.isfinite(f0)) and np.all(np.isfinite(times))) or np.any(f0 < 0):
        raise ValueError("melody_f0_hz must be finite and >= 0 Hz (0 = unvoiced), melody_times finite")
    if np.any(np.diff(times) <= 0):
        raise ValueError("melody_times must be strictly increasing seconds")
    if not np.any(f0 > 0):
        raise ValueError("the melody has no voiced frame (every melody_f0_hz is 0); RCA and F0 RMSE need one")
    return f0, times


def rca(est_audio: np.ndarray, sample_rate: int, melody_f0_hz: np.ndarray, melody_times: np.ndarray, *,
        cent_tolerance: float = 50.0) -> float:
    """Raw chroma accuracy (mir_eval) of the estimate's Praat F0 against the target melody.

    mir_eval's ``to_cent_voicing`` resamples the estimate's track onto ``melody_times``
    (linear); ``raw_chroma_accuracy`` then counts, over the melody's voiced frames, those whose
    estimate is within ``cent_tolerance`` cents of the melody modulo octaves. A frame that
    Praat finds unvoiced counts as wrong.

    Args:
        est_audio: ``(samples,)`` the converted singing.
        sample_rate: in Hz.
        melody_f0_hz: ``(frames,)`` target F0 in Hz, 0 where unvoiced (see :func:`melody_contour`).
        melody_times: ``(frames,)`` strictly increasing frame times in seconds.
        cent_tolerance: AlignSTS uses 50 cents.

    Returns:
        RCA in [0, 1].

    Raises:
        ImportError: mir_eval or praat-parselmouth is missing.
        ValueError: malformed melody arrays, or no voiced melody frame.
    """
    ref_f0, ref_times = _check_melody(melody_f0_hz, melody_times)
    try:
        import mir_eval
    except ImportError as exc:
        raise missing_dependency("RCA", "mir_eval", exc) from exc
    est_times, est_f0 = praat_f0(est_audio, sample_rate)
    ref_voicing, ref_cent, est_voicing, est_cent = mir_eval.melody.to_cent_voicing(
        ref_times, ref_f0, est_times, est_f0)
    return float(mir_eval.melody.raw_chroma_accuracy(ref_voicing, ref_cent, est_voicing, est_cent,
                                                     cent_tolerance=cent_tolerance))


def f0_rmse_cents(est_audio: np.ndarray, sample_rate: int, melody_f0_hz: np.ndarray,
                  melody_times: np.ndarray) -> float:
    """RMS pitch error in cents of the estimate against the melody, over frames voiced in both.

    Each melody frame takes the Praat frame nearest in time (no interpolation across voicing
    changes); frames beyond the Praat track count as unvoiced. No octave folding: singing an
    octave off scores 1200 cents.

    Returns:
        The RMSE in cents, or ``nan`` when no frame is voiced in both (then report RCA, which
        is 0 for such an estimate).
    """
    ref_f0, ref_times = _check_melody(melody_f0_hz, melody_times)
    est_times, est_f0 = praat_f0(est_audio, sample_rate)
    if est_times.size == 0:
        return float("nan")
    step = est_times[1] - est_times[0] if est_times.size > 1 else PRAAT_TIME_STEP_S
    index = np.clip(np.round((ref_times - est_times[0]) / step).astype(int), 0, est_times.size - 1)
    inside = np.abs(est_times[index] - ref_times) <= step / 2 + 1e-9
    matched = np.where(inside, est_f0[index], 0.0)
    both = (ref_f0 > 0) & (matched > 0)
    if not np.any(both):
        return float("nan")
    cents = 1200.0 * np.log2(matched[both] / ref_f0[both])
    return float(np.sqrt(np.mean(cents * cents)))

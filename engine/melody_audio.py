"""Melody transcription from audio: the notes a score of a sung recording would give.

Two uses: evaluation (speech -> singing converters get the notes of the real singing of a pair,
while the metrics keep its F0 contour) and ``--melody reference.wav`` (sing it like this).

The steps, and the constants that steer them. They were chosen on the real singing in
../shared/dev-data (25 clips, 5 languages, bass to soprano; vibrato of up to +-100 cents at 5-6 Hz,
glides of up to 0.4 s, singers 0-50 cents off A4 = 440 Hz, some drifting by a quarter tone):

1. :func:`f0_contour`: the engine's own YIN (:func:`.features.pitch.estimate_f0`) on a ``HOP_S``
   grid, then three repairs:

   - a frame is unvoiced where the level of its own hop-long window is below
     ``PitchConfig.silence_db``: YIN's window is two periods of the lowest F0 (33 ms at 60 Hz),
     so without this gate a 40 ms pause between two notes would show as one unvoiced frame or none;
   - harmonic errors: a frame lying within ``HARMONIC_TOLERANCE_SEMITONES`` of an octave, a
     twelfth or two octaves (``HARMONIC_JUMPS_SEMITONES``) above or below the median of the voiced
     frames within ``HARMONIC_REFERENCE_S`` around it is moved back by that interval. On the dev
     data YIN locks onto the third harmonic of a pharyngeal tenor for up to 0.3 s, and onto half
     or double the pitch for up to 0.2 s elsewhere; one second of context outvotes such runs
     (frames more than 3 semitones from pyworld's Harvest: 233 before, 55 after, of 16,400 voiced,
     with the tracker of before 2026-12-07, whose harmonic check has since halved its octave errors).
     A real octave leap to a note shorter than about half a second would be folded too;
   - a ``SPIKE_MEDIAN_S`` running median over the voiced frames removes the one- and two-frame
     errors that are left.

2. the singer's tuning: the circular mean, modulo one semitone, of every voiced frame's pitch
   averaged over ``TUNING_AVERAGE_S`` (one 5 Hz vibrato cycle) within its voiced run, in cents from
   A4 = 440 Hz equal temperament. Averaging first matters: the circular mean of a vibrato of
   amplitude ``a`` semitones is scaled by J0(2 pi a), negative for 38-88 cents, so raw vibrato frames
   vote for the opposite tuning. On the dev data the estimate is within 6 cents of the same mean over
   the notes' medians for 24 clips of 25 (10 cents for the last).

3. segmentation, per region: a region is a run of voiced frames, joined across unvoiced gaps
   shorter than ``MERGE_GAP_S`` (counted in whole frames: up to two at 10 ms; a consonant inside
   a legato line), while 40 ms of silence between two syllables on one pitch stays a gap. Within
   a region a Viterbi path over whole semitones fits the contour minus the tuning, with an L1 cost
   per frame (capped at ``COST_CAP_SEMITONES``, so that a stray frame cannot pull a note) and a
   price for every change of note equal to the cost of ``MIN_DWELL_S / 2`` of contour one
   semitone away. So a departure by one semitone and back must last longer than ``MIN_DWELL_S``
   (80 ms) to become a note, one by two semitones 40 ms: vibrato (at +-100 cents and 5.5 Hz, the
   widest on the dev data, each excursion past the half semitone saves less than half that price)
   and glides (which pass each semitone in a few frames) stay inside their notes, and a glide's
   change of note falls where it crosses the midpoint. On the dev data 60 ms gave 29 more notes
   (471 against 442), most of them under 100 ms: halves of wide vibrato, scoops, steps of slow
   glides. A change inside a bridged gap moves to the gap's end (the vowel).

4. notes: each segment's pitch is the median of its frames' pitch minus the tuning, rounded to
   the semitone; a segment shorter than ``MIN_NOTE_S`` inside a region joins its neighbour nearer
   in pitch (a scoop into a note is part of the note), neighbours with equal pitch join, and a
   region whose single note is still shorter than ``MIN_NOTE_S`` is dropped (a blip, a breath).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass

import numpy as np

from .audio_io import read_audio
from .errors import MelodyError
from .features.frames import frame_matrix, pad_for_frames
from .features.pitch import PitchConfig, estimate_f0
from .notes import Melody, Note, SungPitch

HOP_S = 0.01                           # contour frame hop (the metrics' 10 ms grid)
HARMONIC_REFERENCE_S = 1.0             # context of the median that exposes harmonic errors
HARMONIC_JUMPS_SEMITONES = (12.0, 19.0, 24.0, -12.0, -24.0)   # x2, x3, x4, /2, /4 of the F0
HARMONIC_TOLERANCE_SEMITONES = 1.0     # how near such an interval a frame must be to be folded back
TUNING_AVERAGE_S = 0.2                 # one vibrato cycle (5 Hz), averaged out before the tuning is measured
SPIKE_MEDIAN_S = 0.05                  # running median over voiced frames: 5 frames at 10 ms
MERGE_GAP_S = 0.03                     # unvoiced gaps shorter than this stay inside one region
MIN_DWELL_S = 0.08                     # a one-semitone departure and return must last longer to count
MIN_NOTE_S = 0.06                      # shorter segments join a neighbour; shorter lone notes are dropped
COST_CAP_SEMITONES = 2.0               # the most one frame can cost a candidate note


@dataclass(frozen=True, eq=False)
class MelodyTranscription:
    """The notes of a sung recording with the contour they came from.

    Attributes:
        melody: the notes; ``midi_note`` is a whole semitone (a float such as ``62.0``) in A4 = 440 Hz
            equal temperament, after removing ``tuning_cents``.
        times_s: ``(frames,)`` float64 frame centres in seconds, every ``HOP_S`` (10 ms; rounded to whole samples).
        f0_hz: ``(frames,)`` float64 F0 of each frame after the repairs of :func:`f0_contour`; 0 = unvoiced.
        tuning_cents: the singer's offset from A4 = 440 Hz equal temperament, in cents in [-50, 50):
            the notes sound at ``midi_note + tuning_cents / 100``.
    """

    melody: Melody
    times_s: np.ndarray
    f0_hz: np.ndarray
    tuning_cents: float

    def sung_pitch(self) -> SungPitch:
        """The contour as the pitch to sing (``--melody-pitch sung``): the singer's own tuning, vibrato
        and glides, on the notes' spans only.

        Inside a note, a frame YIN found unvoiced (a consonant, a crack) takes the pitch interpolated
        between the note's voiced frames around it (held at the note's ends); a note with no voiced
        frame sounds at ``midi_note + tuning_cents / 100``. Outside the notes the pitch is NaN."""
        voiced = self.f0_hz > 0
        raw = np.full(self.f0_hz.shape, np.nan)
        raw[voiced] = 69.0 + 12.0 * np.log2(self.f0_hz[voiced] / 440.0)
        midi = np.full(self.f0_hz.shape, np.nan)
        for note in self.melody.notes:
            inside = np.flatnonzero((self.times_s >= note.start_s) & (self.times_s < note.end_s))
            if not len(inside):
                continue
            known = inside[voiced[inside]]
            if len(known):
                midi[inside] = np.interp(inside, known, raw[known])
            else:
                midi[inside] = note.midi_note + self.tuning_cents / 100.0
        hop = float(self.times_s[1] - self.times_s[0]) if len(self.times_s) > 1 else HOP_S
        return SungPitch(float(self.times_s[0]) if len(self.times_s) else 0.0, hop, midi)


def _check_audio(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate < 4000:
        raise ValueError(f"sample_rate={sample_rate!r} must be a whole number of Hz >= 4000")
    array = np.asarray(audio)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"audio must be float32 or float64 samples in [-1, 1], got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(
            f"audio must be mono, a 1-D array of samples, got shape {array.shape}; average the channels first"
        )
    if not np.isfinite(array).all():
        raise ValueError("audio contains NaN or Inf samples; samples must be finite")
    return array.astype(np.float64, copy=False)


def _hop_samples(hop_s: float, sample_rate: int) -> int:
    if isinstance(hop_s, bool) or not isinstance(hop_s, numbers.Real) or not math.isfinite(hop_s) or hop_s <= 0:
        raise ValueError(f"hop_s={hop_s!r} must be a number of seconds > 0, e.g. 0.01")
    hop_samples = round(hop_s * sample_rate)
    if hop_samples < 1:
        raise ValueError(f"hop_s={hop_s!r} is shorter than one sample at {sample_rate} Hz; use hop_s >= {1 / sample_rate:g}")
    return hop_samples


def _level_db(audio: np.ndarray, hop_samples: int) -> np.ndarray:
    """Level in dB full scale of each frame's own hop-long window (centred like the F0 frames)."""
    padded, start, count = pad_for_frames(audio, hop_samples, hop_samples)
    frames = frame_matrix(padded, start, 0, count, hop_samples, hop_samples)
    return 20.0 * np.log10(np.sqrt(np.mean(frames * frames, axis=1)) + 1e-12)


def _running_nanmedian(values: np.ndarray, half_width: int) -> np.ndarray:
    """Median of the non-NaN values within ``half_width`` frames of each frame (NaN where there are none)."""
    if values.shape[0] == 0:
        return values.copy()
    padded = np.concatenate([np.full(half_width, np.nan), values, np.full(half_width, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half_width + 1)
    out = np.full(values.shape, np.nan)
    rows = ~np.isnan(values)        # only voiced frames need it, and each of those has itself
    if rows.any():
        out[rows] = np.nanmedian(windows[rows], axis=1)
    return out


def _repair(midi: np.ndarray, hop_s: float) -> np.ndarray:
    """Fold harmonic errors back against a long median, then remove spikes with a short one (NaN = unvoiced)."""
    reference = _running_nanmedian(midi, max(1, round(HARMONIC_REFERENCE_S / 2 / hop_s)))
    fixed = midi.copy()
    for jump in HARMONIC_JUMPS_SEMITONES:
        wrong = np.abs(midi - reference - jump) < HARMONIC_TOLERANCE_SEMITONES
        fixed[wrong] = midi[wrong] - jump
    return _running_nanmedian(fixed, max(0, round(SPIKE_MEDIAN_S / 2 / hop_s)))


def f0_contour(
    audio: np.ndarray, sample_rate: int, hop_s: float = HOP_S, *, config: PitchConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Frame-wise F0 of a monophonic voice, repaired for transcription (see the module docstring, step 1).

    The tracker is the engine's own YIN (de Cheveigné and Kawahara 2002, as
    :func:`.features.pitch.estimate_f0` runs it: frame-local, centred frames, ``PitchConfig``'s
    60-1100 Hz search); the repairs add a level gate, a harmonic-error fold and a 50 ms median.

    Args:
        audio: mono float samples ``(samples,)`` in [-1, 1].
        sample_rate: in Hz (>= 4000).
        hop_s: frame hop in seconds; rounded to whole samples.
        config: YIN settings; defaults to :class:`.features.pitch.PitchConfig`.

    Returns:
        ``(times_s, f0_hz)``: ``(frames,)`` float64 frame centres in seconds (frame ``j`` at
        ``j * hop``) and F0 in Hz, 0 where unvoiced.

    Raises:
        TypeError: ``audio`` is not floating point.
        ValueError: ``audio`` is not 1-D or not finite, ``sample_rate`` < 4000, ``hop_s`` <= 0.
    """
    samples = _check_audio(audio, sample_rate)
    hop_samples = _hop_samples(hop_s, sample_rate)
    config = config or PitchConfig()
    f0_hz = estimate_f0(samples, sample_rate, hop_samples, config)
    f0_hz[_level_db(samples, hop_samples) < config.silence_db] = 0.0
    times_s = np.arange(f0_hz.shape[0]) * (hop_samples / sample_rate)
    midi = np.full(f0_hz.shape, np.nan)
    voiced = f0_hz > 0
    midi[voiced] = 69.0 + 12.0 * np.log2(f0_hz[voiced] / 440.0)
    midi = _repair(midi, hop_samples / sample_rate)
    return times_s, np.where(np.isnan(midi), 0.0, 440.0 * 2.0 ** ((midi - 69.0) / 12.0))


def _run_means(midi: np.ndarray, half_width: int) -> np.ndarray:
    """Moving average over ``2 * half_width + 1`` frames within each voiced run (NaN = unvoiced; shorter at run ends)."""
    voiced = ~np.isnan(midi)
    out = np.full(midi.shape, np.nan)
    kernel = np.ones(2 * half_width + 1)
    for first, stop in _regions(voiced, 0):
        run = midi[first:stop]
        sums = np.convolve(run, kernel)[half_width : half_width + run.shape[0]]
        counts = np.convolve(np.ones_like(run), kernel)[half_width : half_width + run.shape[0]]
        out[first:stop] = sums / counts
    return out


def _tuning_cents(midi: np.ndarray, hop_s: float) -> float:
    """Circular mean of the vibrato-averaged pitches modulo one semitone, in cents in [-50, 50)."""
    smooth = _run_means(midi, round(TUNING_AVERAGE_S / 2 / hop_s))
    angle = np.angle(np.mean(np.exp(2j * np.pi * smooth[~np.isnan(smooth)])))
    cents = float(100.0 * angle / (2 * np.pi))
    return -50.0 if cents >= 50.0 else cents


def _regions(voiced: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """``[first, stop)`` frame ranges of voiced runs, joined across unvoiced gaps of at most ``max_gap`` frames."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    runs = list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
    joined: list[tuple[int, int]] = []
    for first, stop in runs:
        if joined and first - joined[-1][1] <= max_gap:
            joined[-1] = (joined[-1][0], stop)
        else:
            joined.append((first, stop))
    return joined


def _viterbi_labels(pitch: np.ndarray, switch_cost: float) -> np.ndarray:
    """Whole-semitone label per frame minimising capped L1 cost plus ``switch_cost`` per change (NaN frames cost 0)."""
    voiced = ~np.isnan(pitch)
    low = int(np.floor(np.nanmin(pitch))) - 1
    states = np.arange(low, int(np.ceil(np.nanmax(pitch))) + 2, dtype=np.float64)
    cost = np.where(voiced[:, None], np.minimum(np.abs(pitch[:, None] - states[None, :]), COST_CAP_SEMITONES), 0.0)
    count = pitch.shape[0]
    switched = np.zeros((count, states.shape[0]), dtype=bool)
    came_from = np.zeros(count, dtype=np.int64)
    total = cost[0].copy()
    for j in range(1, count):
        best = int(np.argmin(total))
        came_from[j] = best
        jump = total[best] + switch_cost
        switched[j] = jump < total
        total = np.minimum(total, jump) + cost[j]
    labels = np.empty(count, dtype=np.int64)
    state = int(np.argmin(total))
    for j in range(count - 1, -1, -1):
        labels[j] = state
        if j > 0 and switched[j, state]:
            state = int(came_from[j])
    return states[labels]


def _segments(pitch: np.ndarray, hop_s: float) -> list[tuple[int, int, float]]:
    """``(first, stop, midi)`` segments of one region (frame indices relative to it), short ones absorbed."""
    voiced = ~np.isnan(pitch)
    labels = _viterbi_labels(pitch, switch_cost=MIN_DWELL_S / 2 / hop_s)
    starts = [0]
    for k in np.flatnonzero(np.diff(labels)).tolist():
        start = k + 1
        while not voiced[start]:      # a change inside a bridged gap goes to the gap's end (the vowel)
            start += 1
        if start > starts[-1]:
            starts.append(start)
    bounds = [*starts, pitch.shape[0]]
    segments = [[bounds[i], bounds[i + 1], 0.0] for i in range(len(starts))]

    def note_of(first: int, stop: int) -> float:
        return float(np.round(np.nanmedian(pitch[first:stop])))

    for segment in segments:
        segment[2] = note_of(segment[0], segment[1])
    min_frames = round(MIN_NOTE_S / hop_s)
    while True:
        for i in range(len(segments) - 1, 0, -1):     # neighbours of equal pitch join
            if segments[i][2] == segments[i - 1][2]:
                segments[i - 1][1] = segments.pop(i)[1]
                segments[i - 1][2] = note_of(segments[i - 1][0], segments[i - 1][1])
        lengths = [stop - first for first, stop, _ in segments]
        shortest = int(np.argmin(lengths))
        if len(segments) == 1 or lengths[shortest] >= min_frames:
            break
        # the shortest segment under MIN_NOTE_S joins its neighbour nearer in pitch (the longer on a tie)
        short = segments[shortest]
        neighbours = [i for i in (shortest - 1, shortest + 1) if 0 <= i < len(segments)]
        into = segments[min(neighbours, key=lambda i: (abs(segments[i][2] - short[2]), -lengths[i]))]
        into[0], into[1] = min(into[0], short[0]), max(into[1], short[1])
        segments.pop(shortest)
        into[2] = note_of(into[0], into[1])
    return [(first, stop, midi) for first, stop, midi in segments]


def transcribe_melody(audio: np.ndarray, sample_rate: int, *, source: str = "") -> MelodyTranscription:
    """Transcribe the notes of a monophonic sung recording (see the module docstring for the method).

    Args:
        audio: mono float samples ``(samples,)`` in [-1, 1].
        sample_rate: in Hz (>= 4000).
        source: names the recording in the melody and in messages (a file name); "audio" when empty.

    Returns:
        :class:`MelodyTranscription`: the notes (times in seconds from the start of ``audio``,
        whole MIDI semitones), the 10 ms contour they came from and the singer's tuning in cents.

    Raises:
        MelodyError: the audio has no voiced frames, or no voiced stretch lasts ``MIN_NOTE_S``.
        TypeError, ValueError: as :func:`f0_contour`.
    """
    name = source or "audio"
    times_s, f0_hz = f0_contour(audio, sample_rate)
    hop_s = _hop_samples(HOP_S, sample_rate) / sample_rate
    voiced = f0_hz > 0
    if not voiced.any():
        raise MelodyError(
            f"{name}: no voiced frames in {len(audio) / sample_rate:.3f} s of audio (silence or noise); "
            "pass a recording of singing"
        )
    midi = np.full(f0_hz.shape, np.nan)
    midi[voiced] = 69.0 + 12.0 * np.log2(f0_hz[voiced] / 440.0)
    tuning_cents = _tuning_cents(midi, hop_s)
    detuned = midi - tuning_cents / 100.0
    duration_s = len(audio) / sample_rate

    def edge_s(frame: int) -> float:
        """Where frame ``frame`` begins (and ``frame - 1`` ends): half a hop before its centre."""
        return min(duration_s, max(0.0, (frame - 0.5) * hop_s))

    max_gap = round(MERGE_GAP_S / hop_s) - 1       # in whole frames, so that a hop rounded to samples cannot move it
    notes: list[Note] = []
    for first, stop in _regions(voiced, max_gap):
        segments = _segments(detuned[first:stop], hop_s)
        if len(segments) == 1 and stop - first < round(MIN_NOTE_S / hop_s):
            continue
        for seg_first, seg_stop, note in segments:
            notes.append(Note(edge_s(first + seg_first), edge_s(first + seg_stop), note))
    if not notes:
        raise MelodyError(
            f"{name}: no voiced stretch lasts {MIN_NOTE_S * 1000:g} ms or longer; pass a recording of sung notes"
        )
    for array in (times_s, f0_hz):
        array.setflags(write=False)
    return MelodyTranscription(Melody(tuple(notes), name), times_s, f0_hz, tuning_cents)


def transcribe_melody_file(path: str | os.PathLike[str]) -> MelodyTranscription:
    """Read an audio file (any channel count, mixed to mono) and transcribe its melody.

    Raises:
        AudioInputError: as :func:`.audio_io.read_audio`.
        MelodyError: as :func:`transcribe_melody`.
    """
    audio, sample_rate = read_audio(path)
    return transcribe_melody(audio, sample_rate, source=os.fspath(path))

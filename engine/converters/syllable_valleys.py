"""Syllables of a whole utterance, cut where the level of the first two formants' band dips.

The causal syllable tracker (:mod:`voxflip.engine.features.syllables`) cuts at unvoiced gaps and
at dips of the broadband level. Both rules miss on real speech, in opposite directions:

* a voiced consonant between two vowels (/m/, /n/, /l/, /r/, /v/) keeps its low harmonics, so the
  broadband level hardly dips there: "quoi me ré" became one unit, and ``psola`` stretched its /m/
  and /r/ with the vowels, 4.6 times their spoken length;
* a creaky or breathy vowel loses its voicing for a few frames, each gap a new "syllable": a slow,
  pharyngeal "lass o welt o lass mich sein" gave 18 units for 7 syllables.

In the band of the first two formants (:data:`BAND_HZ`) a vowel is loud and every consonant,
voiced or not, is quiet, while a voicing dropout inside a vowel is not. So, knowing the whole
speech, :func:`resegment` joins the nuclei that at most :data:`JOIN_GAP_S` of unvoiced sound parts
(a dropout, not a consonant) and cuts what it joined again at the valleys of that band's level that
lie :data:`DIP_DB` or more under the lower of the peaks on either side, and at no other place. The
consonant around a valley (the frames less than half its depth, and at most :data:`CONSONANT_DB`,
above it) becomes the next syllable's onset: it is sung at its spoken length, not stretched with a
vowel. :func:`nucleus_map` sings the unvoiced stretches left inside a nucleus at their spoken speed.

``psola`` does this only when asked (``PsolaToSingingConverter(..., valleys=True)``). The units come
nearer the syllables: against the count of syllables in what Whisper reads in dev-data's 25
readings, the mean absolute log ratio fell from 0.225 to 0.129 (``de_tenor_1_pharyngeal``: 18 units
-> 11 for 7 syllables; ``fr_tenor_1_vibrato``: 4 -> 5 for 5). But the songs did not read better:
over 100 songs (each reading on four dev-data melodies, ``scripts/ab_sts_melodies.py``) CER
-0.009 +- 0.050, RCA -0.005 +- 0.007, and DNSMOS -0.100 +- 0.051, most of it from singing the
unvoiced stretches at their spoken speed (without :func:`nucleus_map`, on the same songs: DNSMOS
-0.024, CER +0.008). The parameters here are the ones measured (docs/results.md).
"""

from __future__ import annotations

import numpy as np

from ..features.frames import frame_matrix
from .syllable_units import Unit

#: the band whose level cuts syllables (Hz): the first two formants of most vowels
BAND_HZ = (500.0, 2000.0)
#: nuclei parted by at most this much unvoiced sound (seconds) are joined before they are cut again
JOIN_GAP_S = 0.08
#: a valley cuts only this many dB or more under the lower of the peaks on either side
DIP_DB = 6.0
#: the window of the band level (seconds), and its smoothing (frames, a moving average)
WINDOW_S = 0.03
SMOOTH_FRAMES = 5
#: the consonant around a valley: the frames less than half its depth above it, and at most this many dB
CONSONANT_DB = 6.0
#: unvoiced runs this short (seconds) inside a nucleus are the pitch tracker's dropouts, and stretched as voice
DROPOUT_S = 0.015
#: no syllable's nucleus is shorter than this (seconds), and none has fewer voiced frames than this
MIN_SYLLABLE_S = 0.07
MIN_VOICED_S = 0.03


def band_level_db(samples: np.ndarray, first_sample: int, num_frames: int, hop_samples: int,
                  sample_rate: int, band: tuple[float, float] = BAND_HZ) -> np.ndarray:
    """The level (dB) in ``band`` of frames ``0..num_frames-1`` of a signal.

    Args:
        samples: the signal from absolute sample ``first_sample`` on (what it does not cover is silence).
        first_sample: absolute index of ``samples[0]`` (may be negative).
        num_frames: frames on the centred grid of ``hop_samples`` (frame ``j`` centred on ``j * hop_samples``).
        hop_samples, sample_rate: the grid and the rate.
        band: ``(low, high)`` in Hz.

    Returns:
        ``(num_frames,)`` float64, floored at -200 dB; a Hann window of :data:`WINDOW_S`.
    """
    win = max(4, round(WINDOW_S * sample_rate))
    if num_frames <= 0:
        return np.zeros(0)
    lo = -(win // 2)
    hi = (num_frames - 1) * hop_samples - win // 2 + win
    x = np.zeros(hi - lo)
    a, b = max(lo, first_sample), min(hi, first_sample + len(samples))
    if b > a:
        x[a - lo:b - lo] = samples[a - first_sample:b - first_sample]
    freqs = np.fft.rfftfreq(win, 1.0 / sample_rate)
    keep = (freqs >= band[0]) & (freqs < band[1])
    window = np.hanning(win)
    out = np.empty(num_frames)
    step = 2048   # frames per FFT batch: bounded memory for long inputs
    for start in range(0, num_frames, step):
        count = min(step, num_frames - start)
        frames = frame_matrix(x, lo, start, count, hop_samples, win) * window
        power = np.abs(np.fft.rfft(frames, axis=1)[:, keep]) ** 2
        out[start:start + count] = 10.0 * np.log10(np.maximum(power.sum(axis=1), 1e-20))
    return out


def resegment(units: list[Unit], band_db: np.ndarray, voiced: np.ndarray, frame_s: float,
              *, dip_db: float = DIP_DB) -> list[Unit]:
    """The syllables of ``units`` cut again at the valleys of the band level (module docstring).

    Units whose nuclei at most :data:`JOIN_GAP_S` part (the end of one nucleus to the start of the next)
    make a run; a run keeps its first onset and its last coda and end, and is cut at every valley of
    ``band_db`` (smoothed) between its first nucleus and its last coda at least ``dip_db`` deep and
    :data:`MIN_SYLLABLE_S` from the run's ends and from a deeper valley. A piece whose nucleus has
    fewer than :data:`MIN_VOICED_S` of voiced frames is a consonant: it joins the next syllable as
    its onset (the previous one's coda at the run's end).

    Args:
        units: the units, in order, not overlapping (source frame indices).
        band_db: ``(frames,)`` :func:`band_level_db` of the source, covering every unit.
        voiced: ``(frames,)`` bool, the frames with an F0.
        frame_s: seconds per frame.
        dip_db: the least depth of a valley that cuts.

    Returns:
        New units, in order, each with ``onset <= nucleus < coda <= end``.
    """
    if not units:
        return []
    smooth = np.convolve(band_db, np.ones(SMOOTH_FRAMES) / SMOOTH_FRAMES, mode="same")
    shortest = max(1, round(MIN_SYLLABLE_S / frame_s))
    least_voiced = max(1, round(MIN_VOICED_S / frame_s))
    join = round(JOIN_GAP_S / frame_s)
    out: list[Unit] = []
    run = [units[0]]
    ahead: list[Unit | None] = [*units[1:], None]
    for unit in ahead:
        if unit is not None and unit.nucleus - run[-1].coda <= join:
            run.append(unit)
            continue
        out.extend(_cut_run(run, smooth, voiced, dip_db, shortest, least_voiced))
        run = [unit] if unit is not None else []
    return out


def _cut_run(run: list[Unit], level: np.ndarray, voiced: np.ndarray, dip_db: float,
             shortest: int, least_voiced: int) -> list[Unit]:
    first, last = run[0], run[-1]
    a, z = first.nucleus, last.coda
    segment = level[a:z]
    cuts: list[tuple[int, float]] = []   # (valley, its depth: the prominence)
    if len(segment) >= 3:
        # imported here: scipy.signal adds about 50 MB to every start-up, and psola without valleys never needs it
        from scipy.signal import find_peaks

        valleys, props = find_peaks(-segment, prominence=dip_db)
        for depth, m in sorted(zip(props["prominences"], valleys, strict=True), reverse=True):
            if shortest <= m <= len(segment) - shortest and all(abs(m - c) >= shortest for c, _ in cuts):
                cuts.append((int(m), float(depth)))
    # (onset, nucleus) of each syllable; the consonant around a valley opens the next syllable
    starts = [(first.onset, a)]
    for m, depth in sorted(cuts):
        quiet = segment < segment[m] + min(depth / 2, CONSONANT_DB)
        lo = m
        while lo > 0 and quiet[lo - 1]:
            lo -= 1
        hi = m + 1
        while hi < len(segment) and quiet[hi]:
            hi += 1
        onset, nucleus = a + lo, a + hi
        if onset <= starts[-1][1] or nucleus >= z:   # no room for the nucleus before it, or after it
            continue
        starts.append((onset, nucleus))
    syllables: list[list[int]] = []
    carry: int | None = None
    for k, (onset, nucleus) in enumerate(starts):
        coda = starts[k + 1][0] if k + 1 < len(starts) else z
        if carry is not None:
            onset, carry = carry, None
        if int(np.count_nonzero(voiced[nucleus:coda])) < least_voiced:
            if k + 1 < len(starts):
                carry = onset
                continue
            if syllables:
                syllables[-1][2] = coda
                continue
        syllables.append([onset, nucleus, coda])
    return [Unit(onset, nucleus, coda, last.end if k == len(syllables) - 1 else coda)
            for k, (onset, nucleus, coda) in enumerate(syllables)]


def nucleus_map(voiced: np.ndarray, out_len: int, dropout: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``out_len`` output frames of a nucleus reads it, and whether it is sung voiced.

    A nucleus cut at the formant band's valleys may hold unvoiced frames: a consonant with no dip of
    its own, a creaky stretch the pitch tracker lost. Stretched with the vowel and sung on the note,
    they came out off pitch (Praat read 5.7% of all note frames more than 50 cents off against 3.4%).
    So when the nucleus is lengthened, its unvoiced runs longer than ``dropout`` frames pass at their
    spoken speed, unvoiced, and its voiced runs share the rest of the length in proportion to theirs.
    A nucleus that is shortened, or has too little voice to fill the length, is read evenly, each frame
    voiced as its source is (a dropout counts as voiced).

    Args:
        voiced: ``(frames,)`` bool, the nucleus's frames with an F0.
        out_len: output frames.
        dropout: unvoiced runs up to this many frames count as voiced.

    Returns:
        ``(sources, voiced)``: ``(out_len,)`` float source offsets into the nucleus (ascending, in
        ``[0, frames - 1]``) and bool.
    """
    n = len(voiced)
    if out_len <= 0 or n == 0:
        return np.zeros(max(0, out_len)), np.zeros(max(0, out_len), bool)
    voice = np.asarray(voiced, bool).copy()
    edges = np.flatnonzero(np.diff(np.concatenate(([1], voice.astype(np.int8), [1]))))
    for lo, hi in zip(edges[::2], edges[1::2], strict=True):   # unvoiced runs [lo, hi)
        if hi - lo <= dropout:
            voice[lo:hi] = True
    spoken = int(np.count_nonzero(~voice))
    if out_len <= n or spoken == 0 or out_len - spoken < np.count_nonzero(voice):
        sources = np.arange(out_len) * ((n - 1) / max(1, out_len - 1))
        return sources, voice[np.round(sources).astype(int)]
    # run lengths on the output: unvoiced runs as spoken, voiced runs stretched (rounded cumulatively)
    bounds = np.flatnonzero(np.diff(voice.astype(np.int8))) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [n]))
    scale = (out_len - spoken) / (n - spoken)
    length_out = np.where(voice[starts], (ends - starts) * scale, ends - starts)
    cut = np.round(np.cumsum(length_out)).astype(int)
    cut[-1] = out_len
    sources = np.empty(out_len)
    sung = np.empty(out_len, bool)
    first = 0
    for a, b, last in zip(starts, ends, cut, strict=True):
        count = last - first
        if count > 0:
            if voice[a]:
                sources[first:last] = a + np.arange(count) * ((b - a - 1) / max(1, count - 1))
            else:
                sources[first:last] = np.minimum(a + np.arange(count), b - 1)
            sung[first:last] = voice[a]
        first = last
    return sources, sung

"""Tests for voxflip.engine.melody_audio: the notes of a sung recording, from its F0 contour.

Synthetic singing is a harmonic tone rendered from a known score (vibrato, a glide, a repeated
note after a 40 ms pause, a rest); the dev-data test transcribes the real singing of
../shared/dev-data and checks the notes against each clip's own contour.
"""

from __future__ import annotations

import numpy as np
import pytest

from voxflip.engine.audio_io import read_audio
from voxflip.engine.errors import MelodyError
from voxflip.engine.melody_audio import MelodyTranscription, f0_contour, transcribe_melody

SAMPLE_RATE = 24_000
TOLERANCE_S = 0.03

# (start_s, end_s, midi_note, vibrato_cents): 60 -> 64 legato through a 60 ms glide centred on
# 0.60 s, a 200 ms rest, 67 twice with a 40 ms pause between, then straight down to 65.
SCORE = [
    (0.10, 0.60, 60, 40.0),
    (0.60, 1.00, 64, 0.0),
    (1.20, 1.50, 67, 0.0),
    (1.54, 1.85, 67, 0.0),
    (1.85, 2.30, 65, 40.0),
]
GLIDE_S = 0.06
FADE_S = 0.005        # onsets and releases (inside the notes, so a 40 ms pause is 40 ms of silence)
VIBRATO_HZ = 5.5


def sing(score: list[tuple[float, float, int, float]], *, detune_cents: float = 0.0,
         total_s: float = 2.45, seed: int = 0) -> np.ndarray:
    """A harmonic voice (6 harmonics, 1/k amplitudes) singing ``score``; notes that touch glide into each other."""
    t = np.arange(round(total_s * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = np.full(t.shape, float(score[0][2]))
    gain = np.zeros(t.shape)
    for index, (start_s, end_s, midi, vibrato_cents) in enumerate(score):
        inside = (t >= start_s) & (t < end_s)
        pitch[inside] = midi + vibrato_cents / 100 * np.sin(2 * np.pi * VIBRATO_HZ * (t[inside] - start_s))
        legato_in = index > 0 and score[index - 1][1] == start_s
        legato_out = index + 1 < len(score) and score[index + 1][0] == end_s
        fade_in = 1.0 if legato_in else (t[inside] - start_s) / FADE_S
        fade_out = 1.0 if legato_out else (end_s - t[inside]) / FADE_S
        gain[inside] = np.minimum(1.0, np.minimum(fade_in, fade_out))
        if legato_in:                             # a linear glide centred on the boundary
            before = score[index - 1][2]
            glide = np.abs(t - start_s) < GLIDE_S / 2
            pitch[glide] = before + (midi - before) * (t[glide] - start_s + GLIDE_S / 2) / GLIDE_S
    f0_hz = 440.0 * 2.0 ** ((pitch + detune_cents / 100 - 69) / 12)
    phase = 2 * np.pi * np.cumsum(f0_hz) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 7))
    noise = np.random.default_rng(seed).standard_normal(t.shape) * 1e-4    # a -80 dB floor
    return (0.2 * gain * voice + noise).astype(np.float32)


def assert_matches_score(result: MelodyTranscription, score: list[tuple[float, float, int, float]]) -> None:
    got = [(round(n.start_s, 3), round(n.end_s, 3), n.midi_note) for n in result.melody.notes]
    assert len(got) == len(score), got
    for (start_s, end_s, midi), (want_start, want_end, want_midi, _) in zip(got, score, strict=True):
        assert midi == want_midi, got
        assert abs(start_s - want_start) <= TOLERANCE_S, got
        assert abs(end_s - want_end) <= TOLERANCE_S, got


def test_transcribes_vibrato_glide_repeated_note_and_rest():
    result = transcribe_melody(sing(SCORE), SAMPLE_RATE, source="synthetic")
    assert_matches_score(result, SCORE)
    assert all(float(n.midi_note).is_integer() for n in result.melody.notes)
    assert abs(result.tuning_cents) < 5.0
    assert result.melody.source == "synthetic"


def test_detuned_singing_keeps_whole_semitones_and_reports_the_tuning():
    result = transcribe_melody(sing(SCORE, detune_cents=30.0), SAMPLE_RATE)
    assert_matches_score(result, SCORE)
    assert result.tuning_cents == pytest.approx(30.0, abs=5.0)


def test_a_consonant_gap_inside_a_note_does_not_split_it():
    score = [(0.10, 0.50, 62, 0.0), (0.52, 0.90, 62, 0.0)]    # 20 ms of silence, same pitch
    result = transcribe_melody(sing(score, total_s=1.0), SAMPLE_RATE)
    assert_matches_score(result, [(0.10, 0.90, 62, 0.0)])


def test_wide_vibrato_stays_one_note():
    score = [(0.10, 1.10, 57, 100.0)]      # +-100 cents, the widest vibrato of the dev data
    result = transcribe_melody(sing(score, total_s=1.3), SAMPLE_RATE)
    assert [n.midi_note for n in result.melody.notes] == [57.0]


def test_contour_is_a_10_ms_grid_with_zero_where_unvoiced():
    audio = sing([(0.2, 0.8, 57, 0.0)], total_s=1.0)
    times_s, f0_hz = f0_contour(audio, SAMPLE_RATE)
    assert times_s.shape == f0_hz.shape == (100,)
    assert times_s[1] - times_s[0] == pytest.approx(0.01)
    steady = (times_s > 0.25) & (times_s < 0.75)
    cents = 1200 * np.log2(f0_hz[steady] / 220.0)
    assert np.abs(cents).max() < 5.0
    assert (f0_hz[(times_s < 0.17) | (times_s > 0.83)] == 0).all()


def test_silence_raises_melody_error():
    with pytest.raises(MelodyError, match=r"^take\.wav: no voiced frames in 1\.000 s"):
        transcribe_melody(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE, source="take.wav")


@pytest.mark.parametrize("audio, exc, match", [
    (np.zeros((2, 4800), np.float32), ValueError, "mono"),
    (np.zeros(4800, np.int16), TypeError, "float32"),
    (np.full(4800, np.nan, np.float32), ValueError, "NaN"),
])
def test_rejects_bad_audio(audio, exc, match):
    with pytest.raises(exc, match=match):
        transcribe_melody(audio, SAMPLE_RATE)


# ---------------------------------------------------------------- real singing

# On the 25 clips (tuned RCA) the lowest clips are sts_sts_spanish 0.72, sts_sts_german 0.74 and
# it_bass_2_glissando 0.75 (wide vibrato, long glides and drifting intonation keep many frames beyond
# 50 cents of any note), the mean is 0.86; the lowest coverage is 0.98 (es_bass_1_vibrato).
MIN_COVERAGE = 0.95
MIN_CLIP_RCA = 0.70
MIN_MEAN_RCA = 0.83


def _coverage_and_rca(result: MelodyTranscription) -> tuple[float, float, float]:
    """Share of voiced frames inside notes; raw chroma accuracy of the notes (with and without the tuning)."""
    voiced = result.f0_hz > 0
    note_midi = np.full(result.f0_hz.shape, np.nan)
    for note in result.melody.notes:
        note_midi[(result.times_s >= note.start_s) & (result.times_s < note.end_s)] = note.midi_note
    inside = voiced & ~np.isnan(note_midi)
    contour = 69.0 + 12.0 * np.log2(result.f0_hz[inside] / 440.0)

    def rca(offset_semitones: float) -> float:
        error = contour - note_midi[inside] - offset_semitones
        folded = (error + 6.0) % 12.0 - 6.0
        return float(np.mean(np.abs(folded) < 0.5))

    return float(inside.sum() / voiced.sum()), rca(result.tuning_cents / 100), rca(0.0)


@pytest.mark.devdata
def test_real_singing_notes_cover_the_voice_and_follow_its_contour(dev_pairs):
    scores = {}
    print(f"\n{'clip':40s} notes coverage   RCA  RCA@440 tuning")
    for row in dev_pairs:
        audio, sample_rate = read_audio(row["singing"])
        result = transcribe_melody(audio, sample_rate, source=row["id"])
        coverage, rca, rca_440 = _coverage_and_rca(result)
        scores[row["id"]] = (coverage, rca)
        print(f"{row['id']:40s} {len(result.melody.notes):5d} {coverage:8.3f} {rca:5.3f} {rca_440:8.3f} "
              f"{result.tuning_cents:+6.1f}")
    mean_rca = float(np.mean([rca for _, rca in scores.values()]))
    print(f"mean RCA {mean_rca:.3f}")
    assert {clip: c for clip, (c, _) in scores.items() if c < MIN_COVERAGE} == {}
    assert {clip: r for clip, (_, r) in scores.items() if r < MIN_CLIP_RCA} == {}
    assert mean_rca >= MIN_MEAN_RCA

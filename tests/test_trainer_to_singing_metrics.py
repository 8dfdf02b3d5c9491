"""trainer/eval/to_singing_metrics.py: LSD, RCA, RRD and F0 RMSE on signals whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from voxflip.engine.melody import load_melody
from voxflip.trainer.eval.to_singing_metrics import f0_rmse_cents, lsd, melody_contour, praat_f0, rca, rrd

SAMPLE_RATE = 24_000


def noisy(audio: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(audio.size)
    noise *= np.sqrt(np.mean(audio.astype(np.float64) ** 2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (audio + noise).astype(np.float32)


def tone_following(times: np.ndarray, f0_hz: np.ndarray, semitones: float = 0.0) -> np.ndarray:
    """A phase-continuous sine that holds each frame's F0 (shifted), silent where the melody rests."""
    hop_s = times[1] - times[0]
    t = np.arange(int((times[-1] + hop_s) * SAMPLE_RATE)) / SAMPLE_RATE
    frame = np.clip(np.floor(t / hop_s + 1e-9).astype(int), 0, f0_hz.size - 1)
    f = f0_hz[frame] * 2.0 ** (semitones / 12.0)
    return (0.5 * np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) * (f > 0)).astype(np.float32)


@pytest.fixture(scope="module")
def example_melody():
    from importlib.resources import files

    return melody_contour(load_melody(str(files("voxflip") / "data" / "tune.mid")))


def test_lsd_is_zero_on_identical_audio_and_grows_with_noise(example_speech):
    audio, rate = example_speech
    assert lsd(audio, audio, rate) == 0.0
    distances = [lsd(audio, noisy(audio, snr_db), rate) for snr_db in (30, 20, 10, 0)]
    assert all(a < b for a, b in zip(distances, distances[1:], strict=False)), distances


def test_lsd_counts_level_in_db(example_speech):
    audio, rate = example_speech
    assert lsd(audio, 0.5 * audio, rate) == pytest.approx(20 * np.log10(2), abs=0.02)


def test_lsd_aligns_lengths_by_stretching_or_truncating(example_speech):
    audio, rate = example_speech
    shorter = audio[:-3000]
    assert lsd(audio, shorter, rate, length="truncate") < 0.1  # the same frames, minus the end
    assert lsd(audio, shorter, rate, length="stretch") > 1.0  # 5% time-stretched: frames move
    slowed = np.repeat(audio, 2)  # twice as long: stretched back, frames meet their originals
    assert lsd(np.repeat(audio, 2), slowed, rate) == 0.0
    with pytest.raises(ValueError, match="'stretch' or 'truncate'"):
        lsd(audio, audio, rate, length="dtw")  # type: ignore[arg-type]


def test_rrd_is_zero_on_identical_audio_and_positive_otherwise(example_speech):
    audio, rate = example_speech
    assert rrd(audio, audio, rate) == 0.0
    assert 0.0 < rrd(audio, noisy(audio, 10.0), rate) < rrd(audio, noisy(audio, 0.0), rate)
    assert rrd(audio, audio[::-1].copy(), rate) > 0.2  # the rhythm reversed


def test_melody_contour_samples_notes_and_rests(example_melody):
    times, f0 = example_melody
    assert times[0] == 0.0 and np.allclose(np.diff(times), 0.01)
    assert np.any(f0 == 0.0) and np.all((f0 == 0.0) | ((f0 > 60.0) & (f0 < 1100.0)))


def test_rca_is_one_for_a_tone_on_the_melody_and_low_a_tritone_off(example_melody):
    pytest.importorskip("mir_eval", reason="mir_eval is in the eval extra")
    pytest.importorskip("parselmouth", reason="praat-parselmouth is in the eval extra")
    times, f0 = example_melody
    on_tune = rca(tone_following(times, f0), SAMPLE_RATE, f0, times)
    tritone = rca(tone_following(times, f0, semitones=6.0), SAMPLE_RATE, f0, times)
    octave = rca(tone_following(times, f0, semitones=12.0), SAMPLE_RATE, f0, times)
    # Measured: 0.999 on the melody (a frame at a note change), 0.000 a tritone off.
    assert on_tune >= 0.98
    assert tritone <= 0.05
    assert octave >= 0.98  # chroma: octave errors are forgiven


def test_f0_rmse_is_near_zero_on_tune_and_600_cents_a_tritone_off(example_melody):
    pytest.importorskip("parselmouth", reason="praat-parselmouth is in the eval extra")
    times, f0 = example_melody
    assert f0_rmse_cents(tone_following(times, f0), SAMPLE_RATE, f0, times) < 10.0
    assert f0_rmse_cents(tone_following(times, f0, 6.0), SAMPLE_RATE, f0, times) == pytest.approx(600.0, abs=10.0)
    assert np.isnan(f0_rmse_cents(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE, f0, times))


def test_praat_tracks_a_steady_tone():
    pytest.importorskip("parselmouth", reason="praat-parselmouth is in the eval extra")
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    times, f0 = praat_f0((0.5 * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32), SAMPLE_RATE)
    assert np.allclose(np.diff(times), 0.01)
    assert np.median(f0[f0 > 0]) == pytest.approx(330.0, rel=1e-3) and np.mean(f0 > 0) > 0.9


@pytest.mark.parametrize("f0, times, match", [
    (np.zeros(5), np.arange(5) * 0.01, "no voiced frame"),
    (np.full(5, 220.0), np.arange(4) * 0.01, "one length"),
    (np.full(3, 220.0), np.array([0.0, 0.02, 0.01]), "strictly increasing"),
    (np.array([220.0, -1.0, 220.0]), np.arange(3) * 0.01, ">= 0 Hz"),
])
def test_rca_rejects_bad_melodies(f0, times, match):
    with pytest.raises(ValueError, match=match):
        rca(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE, f0, times)

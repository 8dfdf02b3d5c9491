"""trainer/eval/quality.py: DNSMOS prefers clean speech; resemblyzer tells one voice from another."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from voxflip.trainer.eval.metrics import resample
from voxflip.trainer.eval.quality import dnsmos, speaker_similarity

ARCTIC_TEXT = "And you always want to see it in the superlative degree."


def add_white_noise(audio: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(audio.size)
    noise *= np.sqrt(np.mean(audio.astype(np.float64) ** 2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    mixed = audio + noise
    return (mixed / max(1.0, float(np.max(np.abs(mixed))))).astype(np.float32)


@pytest.fixture(scope="module")
def festival_arctic(tmp_path_factory):
    """The ARCTIC sentence spoken by Festival's default voice (another speaker), made here."""
    if shutil.which("text2wave") is None:
        pytest.skip("text2wave (Debian package festival) is not installed")
    import soundfile as sf

    folder = tmp_path_factory.mktemp("festival")
    (folder / "sentence.txt").write_text(ARCTIC_TEXT + "\n")
    subprocess.run(["text2wave", str(folder / "sentence.txt"), "-o", str(folder / "sentence.wav")],
                   check=True, capture_output=True, timeout=60)
    audio, rate = sf.read(str(folder / "sentence.wav"), dtype="float32")
    return audio, rate


@pytest.fixture(scope="module")
def clean_dnsmos(example_speech):
    """DNSMOS of the ARCTIC sentence, computed once (a 4 s clip costs 7 model windows, seconds on CPU)."""
    pytest.importorskip("speechmos", reason="speechmos is in the eval extra")
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the eval extra")
    audio, rate = example_speech
    return dnsmos(audio, rate)


def test_dnsmos_scores_clean_speech_above_speech_in_white_noise(example_speech, clean_dnsmos):
    audio, rate = example_speech
    clean = clean_dnsmos
    noisy = dnsmos(add_white_noise(audio, snr_db=0.0), rate)
    assert set(clean) == {"sig", "bak", "ovrl", "p808"}
    assert all(1.0 <= value <= 5.0 for value in [*clean.values(), *noisy.values()])
    # Measured: clean OVRL 3.10 (SIG 3.46, BAK 3.90); 0 dB white noise OVRL 1.59 (BAK 1.37).
    assert clean["ovrl"] > noisy["ovrl"] + 1.0, (clean, noisy)
    assert clean["bak"] > noisy["bak"] + 1.0, (clean, noisy)


def test_dnsmos_resamples_other_rates_and_takes_full_scale_audio(example_speech, clean_dnsmos):
    audio, rate = example_speech
    at_24k = resample(audio, rate, 24_000)
    at_24k = (at_24k / np.max(np.abs(at_24k))).astype(np.float32)  # peak 1.0: resampling overshoots
    assert dnsmos(at_24k, 24_000)["ovrl"] == pytest.approx(clean_dnsmos["ovrl"], abs=0.1)


def test_dnsmos_refuses_audio_beyond_full_scale(example_speech):
    audio, rate = example_speech
    with pytest.raises(ValueError, match="outside \\[-1, 1\\]; scale it down"):
        dnsmos(audio * 2.0, rate)


def test_speaker_similarity_is_one_for_the_same_recording_and_lower_for_another_voice(
        example_speech, festival_arctic):
    pytest.importorskip("resemblyzer", reason="resemblyzer (with torch==2.13.0) is in the eval extra")
    audio, rate = example_speech
    festival, festival_rate = festival_arctic
    same = speaker_similarity(audio, rate, audio, rate)
    other = speaker_similarity(audio, rate, festival, festival_rate)
    half = audio.size // 2
    halves = speaker_similarity(audio[:half], rate, audio[half:], rate)
    half_vs_other = speaker_similarity(audio[:half], rate, festival, festival_rate)
    # Measured: same 1.000, ARCTIC vs Festival 0.67, first vs second half 0.69, a half vs Festival 0.61.
    assert same == pytest.approx(1.0, abs=1e-5)
    assert other < 0.9
    assert halves > half_vs_other, (halves, half_vs_other)


def test_speaker_similarity_accepts_different_sample_rates(example_speech):
    pytest.importorskip("resemblyzer", reason="resemblyzer (with torch==2.13.0) is in the eval extra")
    audio, rate = example_speech
    at_24k = resample(audio, rate, 24_000).astype(np.float32)
    assert speaker_similarity(audio, rate, at_24k, 24_000) > 0.98

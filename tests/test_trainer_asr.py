"""trainer/eval/asr.py: text normalisation, WER/CER rules, jiwer and the built-in edit distance, pocketsphinx."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from voxflip.trainer.eval import asr
from voxflip.trainer.eval.asr import asr_scores, cer, edit_distance, normalize_text, transcribe, wer
from voxflip.trainer.eval.metrics import resample

ARCTIC_TEXT = "And you always want to see it in the superlative degree."


@pytest.mark.parametrize("text, expected", [
    (ARCTIC_TEXT, "and you always want to see it in the superlative degree"),
    ("  Don\u2019t   STOP -- well-known, 'quoted'!  ", "don't stop well known quoted"),
    ("It costs 3.50 dollars, 1,000 times at 10:30.", "it costs 3.50 dollars 1,000 times at 10:30"),
    ("Twenty 20, the 3rd in 2020.", "twenty 20 the 3rd in 2020"),
    ("\u00c9t\u00e9 caf\u00e9", "\u00e9t\u00e9 caf\u00e9"),
    ("?! ...", ""),
])
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


@pytest.mark.parametrize("reference, hypothesis, expected", [
    ("a b c".split(), "a b c".split(), 0),
    ("a b c".split(), "a x c".split(), 1),
    ("a b c".split(), "a c".split(), 1),
    ("a b c".split(), "a b c d".split(), 1),
    (list("kitten"), list("sitting"), 3),
    (list("flaw"), list("lawn"), 2),
    ([], list("abc"), 3),
    (list("abc"), [], 3),
])
def test_edit_distance(reference, hypothesis, expected):
    assert edit_distance(reference, hypothesis) == expected
    assert edit_distance(hypothesis, reference) == expected


@pytest.mark.parametrize("backend", ["builtin", "jiwer"])
def test_wer_and_cer_edge_cases(backend):
    if backend == "jiwer":
        pytest.importorskip("jiwer", reason="jiwer is in the eval extra")
    assert wer("", "", backend=backend) == 0.0
    assert cer("?!", "", backend=backend) == 0.0  # both empty after normalisation
    assert wer("one two three", "", backend=backend) == 1.0
    assert cer("ab", "", backend=backend) == 1.0
    assert wer("a b", "a b c d e f", backend=backend) == 2.0  # insertions: not capped at 1
    assert wer("Hello, World!", "hello world", backend=backend) == 0.0
    assert cer("ab cd", "abcd", backend=backend) == pytest.approx(1 / 5)  # the space is a character
    with pytest.raises(ValueError, match="rate per reference word is undefined"):
        wer("", "something", backend=backend)
    with pytest.raises(ValueError, match="rate per reference char is undefined"):
        cer("...", "x", backend=backend)


def test_corpus_wer_is_total_edits_over_total_reference_words():
    assert wer(["a b c d", "e"], ["a b x d", "e f g"]) == pytest.approx(3 / 5)
    assert wer(["", "a b"], ["", "a"]) == pytest.approx(1 / 2)  # an empty row is fine in a corpus
    with pytest.raises(ValueError, match="2 reference"):
        wer(["a", "b"], ["a"])


def test_jiwer_and_the_builtin_edit_distance_agree():
    pytest.importorskip("jiwer", reason="jiwer is in the eval extra")
    rng = np.random.default_rng(7)
    vocabulary = ["the", "a", "sing", "song", "see", "it", "in", "degree", "3", "don't"]

    def sentence() -> str:
        return " ".join(rng.choice(vocabulary, size=rng.integers(0, 12)))

    pairs = [(sentence(), sentence()) for _ in range(300)]
    pairs = [(r, h) for r, h in pairs if r]
    for reference, hypothesis in pairs:
        for metric in (wer, cer):
            assert metric(reference, hypothesis, backend="jiwer") == metric(reference, hypothesis, backend="builtin"), \
                (metric.__name__, reference, hypothesis)
    refs, hyps = zip(*pairs, strict=True)
    assert wer(refs, hyps, backend="jiwer") == wer(refs, hyps, backend="builtin")
    assert cer(refs, hyps, backend="jiwer") == cer(refs, hyps, backend="builtin")


def test_wer_rejects_an_unknown_backend():
    with pytest.raises(ValueError, match="backend must be"):
        wer("a", "a", backend="kaldi")  # type: ignore[arg-type]


def test_pocketsphinx_recognises_the_arctic_sentence(example_speech):
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is in the eval extra")
    audio, rate = example_speech
    scores = asr_scores(audio, rate, ARCTIC_TEXT)
    # pocketsphinx 5.1.1 gets it word for word (WER 0); allow one wrong word of 11 for other versions.
    assert scores["wer"] <= 0.1, scores
    assert scores["cer"] <= 0.05, scores
    assert isinstance(scores["hypothesis"], str) and "superlative" in scores["hypothesis"]


def test_transcribe_resamples_other_rates(example_speech):
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is in the eval extra")
    audio, rate = example_speech
    at_24k = resample(audio, rate, 24_000).astype(np.float32)
    assert wer(ARCTIC_TEXT, transcribe(at_24k, 24_000)) <= 0.1


def test_a_transcript_does_not_depend_on_what_was_decoded_before(example_speech):
    """pocketsphinx keeps a running cepstral mean across utterances; an eval must not inherit it."""
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is in the eval extra")
    from scipy.signal import butter, sosfilt

    audio, rate = example_speech
    rng = np.random.default_rng(0)
    noisy = audio + rng.standard_normal(audio.size).astype(np.float32) * np.sqrt(np.mean(audio**2)) * 10 ** (-5 / 20)
    noisy = (noisy / np.abs(noisy).max() * 0.8).astype(np.float32)   # uncertain enough to show a shifted mean
    muffled = np.clip(sosfilt(butter(4, 300, "lowpass", fs=rate, output="sos"), audio) * 4, -1, 1).astype(np.float32)
    first = transcribe(noisy, rate)
    transcribe(muffled, rate)
    transcribe(muffled, rate)
    assert transcribe(noisy, rate) == first


def test_transcribe_of_silence_is_empty_or_short():
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is in the eval extra")
    assert len(transcribe(np.zeros(16_000, np.float32), 16_000).split()) <= 1


def test_missing_pocketsphinx_gives_the_eval_extra_hint(monkeypatch):
    monkeypatch.setattr(asr, "_decoder", None)
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # makes `import pocketsphinx` fail
    with pytest.raises(ImportError, match=r'^WER needs pocketsphinx\. Install the eval extra: pip install -e "\.\[eval\]"'):
        transcribe(np.zeros(1600, np.float32), 16_000)

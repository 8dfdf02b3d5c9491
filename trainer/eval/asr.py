"""Intelligibility by offline ASR: transcripts scored with WER and CER against the lyrics.

The S2S paper scores its outputs by the word and character error rates of a recogniser against
the lyrics: lower than on the original singing is the point of singing-to-speech. The
recogniser is Whisper by default (:mod:`.whisper`: it reads singing, in many languages);
pocketsphinx 5 with the en-us models it ships is kept as a second opinion for English (it
cannot read real singing). One :class:`pocketsphinx.Decoder` is created on first use and reused.

Text normalisation (:func:`normalize_text`, applied to reference and hypothesis alike): marks
in angle brackets (``<AP>`` breath, ``<SP>`` silence) are removed, then Unicode NFKC, lower
case, curly apostrophes made straight, then only the tokens are kept:
words of letters and digits, with apostrophes inside a word kept (``don't``), and numbers
kept as written, with ``.``, ``,`` or ``:`` between digits kept (``3.5``, ``1,000``, ``10:30``).
No number is spelled out, so ``3`` and ``three`` differ. All other punctuation and hyphens
become word breaks, and tokens are joined by single spaces. For languages written without
spaces between words (:data:`SPACELESS`: Chinese, Japanese, Korean, ...) CER counts the
characters without spaces, and WER is not computed (:func:`score_transcript`).

Empty texts, after normalisation: an empty reference with an empty hypothesis scores 0.0;
an empty reference with a non-empty hypothesis raises ``ValueError`` (a rate per reference
word is undefined); an empty hypothesis scores 1.0 (every reference unit deleted). Rates are
not capped: insertions can push them above 1.0. For lists of utterances the rate is corpus
level: total edits over total reference units, which is what jiwer computes too.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from .metrics import check_audio, check_sample_rate, missing_dependency, resample

ASR_SAMPLE_RATE = 16_000
Backend = Literal["auto", "jiwer", "builtin"]

_TOKEN = re.compile(r"\d+(?:[.,:]\d+)+|[^\W_]+(?:'[^\W_]+)*")
_MARK = re.compile(r"<[A-Za-z]+>")
#: languages written without spaces between words: CER without spaces, no WER
SPACELESS = frozenset({"zh", "ja", "ko", "th", "lo", "km", "my"})
_decoder: Any = None
_decoder_lock = threading.Lock()


def normalize_text(text: str) -> str:
    """Normalise a transcript for scoring (see the module docstring for the rules).

    ``"And you ALWAYS want -- to see it, in the 'superlative' degree!"`` becomes
    ``"and you always want to see it in the superlative degree"``.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    text = _MARK.sub(" ", text)
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(_TOKEN.findall(text))


def edit_distance(reference: Sequence[Any], hypothesis: Sequence[Any]) -> int:
    """Levenshtein distance: the fewest substitutions, deletions and insertions from one to the other.

    Dynamic programming one reference token at a time; each row is vectorised with numpy, the
    insertion chain by a running minimum (``row[j] = j + min_{k <= j}(candidate[k] - k)``).
    """
    n_hyp = len(hypothesis)
    if len(reference) == 0 or n_hyp == 0:
        return max(len(reference), n_hyp)
    vocabulary: dict[Any, int] = {}
    ref_ids = np.array([vocabulary.setdefault(token, len(vocabulary)) for token in reference])
    hyp_ids = np.array([vocabulary.setdefault(token, len(vocabulary)) for token in hypothesis])
    steps = np.arange(n_hyp + 1)
    previous = steps.copy()
    for i, token in enumerate(ref_ids, start=1):
        candidate = np.empty(n_hyp + 1, dtype=np.int64)
        candidate[0] = i
        candidate[1:] = np.minimum(previous[1:] + 1, previous[:-1] + (hyp_ids != token))
        previous = steps + np.minimum.accumulate(candidate - steps)
    return int(previous[-1])


def _as_list(texts: str | Sequence[str], name: str) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError(f"{name} must be a str or a sequence of str")
    return texts


def _jiwer_edits(reference: str, hypothesis: str, unit: str) -> int:
    try:
        import jiwer
    except ImportError as exc:
        raise missing_dependency("jiwer-backed WER", "jiwer", exc) from exc
    if unit == "word":
        out = jiwer.process_words(reference, hypothesis)
    else:
        out = jiwer.process_characters(reference, hypothesis)
    return int(out.substitutions + out.deletions + out.insertions)


def _use_jiwer(backend: Backend) -> bool:
    if backend == "builtin":
        return False
    if backend == "jiwer":
        return True
    if backend != "auto":
        raise ValueError(f"backend must be 'auto', 'jiwer' or 'builtin', got {backend!r}")
    try:
        import jiwer  # noqa: F401
    except ImportError:
        return False
    return True


def _error_rate(reference: str | Sequence[str], hypothesis: str | Sequence[str], unit: str,
                backend: Backend) -> float:
    refs = [normalize_text(t) for t in _as_list(reference, "reference")]
    hyps = [normalize_text(t) for t in _as_list(hypothesis, "hypothesis")]
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} reference(s) but {len(hyps)} hypothesis(es); pass one per utterance")

    def units(text: str) -> list[str]:
        return text.split() if unit == "word" else list(text)

    total = sum(len(units(r)) for r in refs)
    if total == 0:
        if all(h == "" for h in hyps):
            return 0.0
        raise ValueError(f"the reference has no {unit}s after normalisation ({reference!r}) but the "
                         f"hypothesis has ({hypothesis!r}): a rate per reference {unit} is undefined")
    jiwer_backend = _use_jiwer(backend)
    edits = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        if ref and hyp and jiwer_backend:
            edits += _jiwer_edits(ref, hyp, unit)
        else:
            edits += edit_distance(units(ref), units(hyp))
    return edits / total


def wer(reference: str | Sequence[str], hypothesis: str | Sequence[str], *, backend: Backend = "auto") -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words.

    Args:
        reference: the text said or sung, or one text per utterance.
        hypothesis: the recogniser's transcript(s), in the same order.
        backend: ``"jiwer"``, ``"builtin"`` (:func:`edit_distance`) or ``"auto"`` (jiwer when
            installed); both give the same numbers.

    Returns:
        The rate (0 is perfect; can exceed 1). Corpus level for sequences.

    Raises:
        ValueError: an empty reference against a non-empty hypothesis, or list lengths differ.
    """
    return _error_rate(reference, hypothesis, "word", backend)


def cer(reference: str | Sequence[str], hypothesis: str | Sequence[str], *, backend: Backend = "auto") -> float:
    """Character error rate over the normalised texts, the single spaces between words included.

    Same arguments, rules and errors as :func:`wer`.
    """
    return _error_rate(reference, hypothesis, "char", backend)


def _get_decoder() -> Any:
    global _decoder
    if _decoder is None:
        try:
            from pocketsphinx import Config, Decoder
        except ImportError as exc:
            raise missing_dependency("WER", "pocketsphinx", exc) from exc
        _decoder = Decoder(Config(samprate=ASR_SAMPLE_RATE, loglevel="FATAL"))
    return _decoder


def transcribe(audio: np.ndarray, sample_rate: int) -> str:
    """Recognise English speech with pocketsphinx's bundled en-us models.

    Args:
        audio: ``(samples,)`` float mono in [-1, 1]; resampled to 16 kHz and quantised to int16.
        sample_rate: in Hz.

    Returns:
        The best hypothesis in lower case (``""`` when nothing was recognised).

    Raises:
        ImportError: pocketsphinx is not installed.
    """
    samples = check_audio(audio)
    rate = check_sample_rate(sample_rate)
    pcm = np.clip(np.round(resample(samples, rate, ASR_SAMPLE_RATE) * 32767.0), -32768, 32767)
    data = pcm.astype("<i2").tobytes()
    with _decoder_lock:
        decoder = _get_decoder()
        # pocketsphinx carries its feature state (the running cepstral mean) from one utterance to
        # the next, which made a clip's transcript depend on the clips decoded before it
        decoder.reinit_feat()
        decoder.start_utt()
        decoder.process_raw(data, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
    return hypothesis.hypstr if hypothesis is not None else ""


def asr_scores(audio: np.ndarray, sample_rate: int, text: str) -> dict[str, float | str]:
    """Transcribe ``audio`` and score it against ``text``.

    Returns:
        ``{"wer": float, "cer": float, "hypothesis": str}`` (the raw transcript).
    """
    hypothesis = transcribe(audio, sample_rate)
    return {"wer": wer(text, hypothesis), "cer": cer(text, hypothesis), "hypothesis": hypothesis}


def score_transcript(text: str, hypothesis: str, language: str = "en") -> dict[str, float]:
    """CER (and WER, for languages written with spaces) of a transcript against the text.

    A looping recogniser ("a a a a ...") can insert without end; the rates are returned as
    measured, and averaging code caps a clip at 1 (:func:`capped`).
    """
    lang = language.lower().split("-")[0]
    if lang in SPACELESS:
        ref = normalize_text(text).replace(" ", "")
        hyp = normalize_text(hypothesis).replace(" ", "")
        if not ref:
            return {"cer": 0.0 if not hyp else float("nan")}
        return {"cer": edit_distance(list(ref), list(hyp)) / len(ref)}
    return {"wer": wer(text, hypothesis), "cer": cer(text, hypothesis)}


def capped(rate: float) -> float:
    """An error rate capped at 1 for averaging: a clip can lose all its words, no more."""
    return min(float(rate), 1.0)

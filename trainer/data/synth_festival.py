"""Festival, driven from Python: speak a sentence, sing it in singing mode, read back phone timings.

Each call writes a small Scheme script and runs ``festival -b script.scm`` in a scratch folder.
The script selects the voice, synthesises, resamples the waveform to :data:`SAMPLE_RATE` (16-bit
RIFF WAV) and dumps what the utterance knows to a text file:

- ``S <phoneset>``: the voice's phone set (``radio`` for every voice here: the CMU/ARPAbet-style
  set in lower case, ``aa ae ah ... zh``, with ``pau`` for silence);
- ``P <phone> <end_s>``: every item of the Segment relation, in order (a phone starts where the
  previous one ends; the first starts at 0);
- ``W <word> <syllables>``: every item of the Word relation with its syllable count;
- ``Y <n>``: the number of syllables in the utterance.

Singing uses Festival's singing mode on an XML ``SINGING`` document with one ``DURATION``/``PITCH``
pair per word and one value per syllable. We give ``SECONDS`` and ``FREQ`` (Hz) rather than
``BEATS`` and ``NOTE``: singing-mode.scm converts beats with BPM/50 instead of BPM/60, and reads
note names one octave low (its ``A5`` is 440 Hz), so explicit seconds and hertz are exact.
Singing mode only controls voices whose waveform follows Festival's own durations and F0 targets
(the residual-excited LPC diphone voices); an HTS voice ignores them and speaks.

Levels: the kal voice installs an after-synthesis hook that multiplies the waveform by 2.6, which
overflows 16-bit samples; Festival loads kal at start-up as its default voice, so the hook stays
for ked too. The scripts clear ``after_synth_hooks``; `_repair_level` then undoes the rare
wrap-around the LPC synthesis itself still produces and scales every file to the same peak.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf

from voxflip.engine.errors import ConfigError, EngineError

from .manifest import PhoneSpan

SAMPLE_RATE = 16_000
PEAK_LEVEL = 0.7  # every Festival waveform is scaled to this peak (-3 dBFS), see _repair_level
FESTIVAL_TIMEOUT_S = 120.0
INSTALL_HINT = "install the Debian package festival (apt-get install festival festvox-kallpc16k)"


#: Festival's ``radio`` phone set (every voice here uses it): ARPAbet in lower case, ``pau`` silence,
#: ``h#`` utterance edge, ``brth`` breath
RADIO_PHONES = frozenset(
    "aa ae ah ao aw ax axr ay b ch d dh dx eh el em en er ey f g hh hv ih iy jh k l m n nx ng ow oy "
    "p r s sh t th uh uw v w y z zh pau h# brth".split()
)


class FestivalError(EngineError):
    """Festival failed on one sentence (the message has its last lines of output)."""


@dataclass(frozen=True)
class FestivalVoice:
    """An English Festival voice the corpus can use.

    Attributes:
        name: Festival's voice name (``(voice_<name>)`` selects it); written to ``speaker``.
        package: the Debian package that installs it.
        gender: ``"male"`` or ``"female"``.
        low_midi, high_midi: the singing range melodies are transposed into (MIDI numbers).
        singing_mode: True when Festival's singing mode controls its pitch and timing.
    """

    name: str
    package: str
    gender: str
    low_midi: int
    high_midi: int
    singing_mode: bool


#: every English voice from Debian main that the corpus knows, in the order they are offered
KNOWN_VOICES: tuple[FestivalVoice, ...] = (
    FestivalVoice("kal_diphone", "festvox-kallpc16k", "male", 48, 60, True),  # C3..C4
    FestivalVoice("ked_diphone", "festvox-kdlpc16k", "male", 48, 60, True),
    FestivalVoice("cmu_us_slt_arctic_hts", "festvox-us-slt-hts", "female", 57, 69, False),  # A3..A4
)


@dataclass(frozen=True)
class Utterance:
    """What Festival reported about one synthesised utterance."""

    wav: Path
    phone_set: str
    phones: list[PhoneSpan]
    words: list[tuple[str, int]]  # (word, syllable count)
    syllables: int


def festival_binary() -> str:
    """Path of the ``festival`` program. Raises ConfigError (with the install hint) when absent."""
    path = shutil.which("festival")
    if path is None:
        raise ConfigError(f"the synthetic corpus needs Festival, but 'festival' is not on PATH; {INSTALL_HINT}")
    return path


def festival_version() -> str:
    """Festival's version string, e.g. ``"2.5.0"``."""
    out = subprocess.run([festival_binary(), "--version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"System: ([0-9][^:\s]*)", out.stdout + out.stderr)
    return match.group(1) if match else (out.stdout + out.stderr).strip()


def installed_voices(scratch: Path) -> list[FestivalVoice]:
    """The voices of KNOWN_VOICES that this Festival can load, in KNOWN_VOICES order.

    Raises:
        ConfigError: Festival is missing or has none of them.
    """
    dump = scratch / "voices.txt"
    _run(f'(set! fd (fopen "{_scheme_path(dump)}" "w"))\n(format fd "%l\\n" (voice.list))\n(fclose fd)\n',
         scratch, "voices")
    listed = set(re.findall(r"[A-Za-z0-9_]+", dump.read_text(encoding="utf-8")))
    voices = [v for v in KNOWN_VOICES if v.name in listed]
    if not voices:
        packages = " ".join(v.package for v in KNOWN_VOICES)
        raise ConfigError(f"Festival has none of the English voices {', '.join(v.name for v in KNOWN_VOICES)}; "
                          f"install at least one: apt-get install {packages}")
    return voices


def speak(text: str, voice: FestivalVoice, wav: Path, scratch: Path) -> Utterance:
    """Synthesise `text` as speech with `voice` into `wav` (16-bit, 16 kHz) and return its timings.

    Raises:
        FestivalError: Festival failed or wrote no audio.
    """
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    body = f'(set! vf_utt (utt.synth (Utterance Text "{escaped}")))\n'
    return _synthesise(body, voice, wav, scratch, "speak")


def sing(words: list[tuple[str, int]], notes: list[tuple[float, float]], voice: FestivalVoice,
         wav: Path, scratch: Path) -> Utterance:
    """Sing `words` in Festival's singing mode, one note per syllable, into `wav`.

    Args:
        words: (word, syllable count) pairs, as `speak` reported them.
        notes: (duration_s, f0_hz) per syllable, ``sum(count)`` of them.

    Raises:
        ValueError: the note count is not the syllable count.
        FestivalError: Festival failed or made more than one utterance.
    """
    if sum(n for _, n in words) != len(notes):
        raise ValueError(f"{len(notes)} notes for {sum(n for _, n in words)} syllables; give one note per syllable")
    lines = ['<?xml version="1.0"?>',
             '<!DOCTYPE SINGING PUBLIC "-//SINGING//DTD SINGING mark up//EN" "Singing.v0_1.dtd" []>',
             '<SINGING BPM="60">']
    at = 0
    for word, count in words:
        mine = notes[at:at + count]
        at += count
        seconds = ",".join(f"{d:.4f}" for d, _ in mine)
        freqs = ",".join(f"{f:.3f}" for _, f in mine)
        lines.append(f'<DURATION SECONDS="{seconds}"><PITCH FREQ="{freqs}">{escape(word)}</PITCH></DURATION>')
    lines.append("</SINGING>")
    song = scratch / "song.xml"
    song.write_text("\n".join(lines) + "\n", encoding="utf-8")
    body = (
        "(defvar vf_utts nil)\n"
        "(define (vf_keep utt) (set! vf_utts (append vf_utts (list utt))) utt)\n"
        "(set! tts_hooks (list utt.synth vf_keep))\n"
        f'(tts_file "{_scheme_path(song)}" \'singing)\n'
        '(if (not (equal? (length vf_utts) 1)) (error "singing mode made more than one utterance"))\n'
        "(set! vf_utt (car vf_utts))\n"
    )
    return _synthesise(body, voice, wav, scratch, "sing")


# -- internals ----------------------------------------------------------------------------------------

_DUMP = """(define (vf_dump utt path)
  (let ((fd (fopen path "w")))
    (format fd "S %s\\n" (Param.get 'PhoneSet))
    (mapcar (lambda (s) (format fd "P %s %f\\n" (item.name s) (item.feat s "end")))
            (utt.relation.items utt 'Segment))
    (mapcar (lambda (w) (format fd "W %s %d\\n" (item.name w)
                                (length (item.relation.daughters w 'SylStructure))))
            (utt.relation.items utt 'Word))
    (format fd "Y %d\\n" (length (utt.relation.items utt 'Syllable)))
    (fclose fd)))
"""


def _scheme_path(path: Path) -> str:
    text = str(path.resolve())
    if '"' in text or "\\" in text:
        raise ConfigError(f"folder {text!r} has a quote or backslash in its name; Festival cannot use it")
    return text


def _run(script: str, scratch: Path, name: str) -> None:
    path = scratch / f"{name}.scm"
    path.write_text("(gc-status nil)\n" + script, encoding="utf-8")
    try:
        done = subprocess.run([festival_binary(), "-b", str(path)], cwd=scratch, capture_output=True,
                              text=True, timeout=FESTIVAL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise FestivalError(f"festival ran longer than {FESTIVAL_TIMEOUT_S:g} s on {path}") from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or "SIOD ERROR" in output:
        tail = " | ".join(output.splitlines()[-3:])
        raise FestivalError(f"festival failed on {path} (exit {done.returncode}): {tail}")


def _synthesise(body: str, voice: FestivalVoice, wav: Path, scratch: Path, name: str) -> Utterance:
    dump = scratch / f"{name}.txt"
    dump.unlink(missing_ok=True)
    wav.unlink(missing_ok=True)
    script = (f"(voice_{voice.name})\n(set! after_synth_hooks nil)\n{_DUMP}{body}"
              f"(utt.wave.resample vf_utt {SAMPLE_RATE})\n"
              f"(utt.save.wave vf_utt \"{_scheme_path(wav)}\" 'riff)\n"
              f"(vf_dump vf_utt \"{_scheme_path(dump)}\")\n")
    _run(script, scratch, name)
    if not wav.is_file() or not dump.is_file():
        raise FestivalError(f"festival wrote no audio for {voice.name} ({name}); see {scratch / (name + '.scm')}")
    _repair_level(wav)
    return _parse_dump(dump, wav)


def _repair_level(wav: Path) -> None:
    """Undo 16-bit wrap-around in Festival's output, then scale the peak to PEAK_LEVEL (in place).

    The LPC diphone voices sometimes overshoot full scale, and Festival stores the overshoot
    wrapped around (a sample near +32767 comes out near -32768). A jump of more than half the
    16-bit range between neighbouring samples never happens in speech at 16 kHz, so unwrapping
    with a 65536 period restores those samples exactly.
    """
    samples, rate = sf.read(str(wav), dtype="int16")
    audio = np.unwrap(samples.astype(np.float64), discont=32768.0, period=65536.0)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio *= PEAK_LEVEL * 32767.0 / peak
    tmp = wav.with_name(f".{wav.name}.tmp")
    sf.write(str(tmp), np.round(audio).astype(np.int16), rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, wav)


def _parse_dump(dump: Path, wav: Path) -> Utterance:
    phone_set, phones, words, syllables = "", [], [], 0
    start = 0.0
    for line in dump.read_text(encoding="utf-8").splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "S":
            phone_set = rest.strip()
        elif kind == "P":
            phone, end_text = rest.rsplit(" ", 1)
            end = max(start, float(end_text))
            phones.append(PhoneSpan(phone, start, end))
            start = end
        elif kind == "W":
            word, count = rest.rsplit(" ", 1)
            words.append((word, int(count)))
        elif kind == "Y":
            syllables = int(rest)
    return Utterance(wav, phone_set, phones, words, syllables)

"""A sung or hummed reference as the melody (--melody reference.wav): its notes, transcribed."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest
import soundfile as sf
from helpers import stream_in_blocks

from voxflip.engine.errors import MelodyError
from voxflip.engine.melody import load_melody
from voxflip.engine.registry import make_converter
from voxflip.streaming.streamer import Streamer


def _match(reference, transcribed) -> tuple[float, float]:
    """Over the reference's sounding time (10 ms steps): the share where the transcription has a
    note, and of that, the share where its note is within a semitone of the reference's."""
    hit = sounding = total = 0
    for t in np.arange(0.0, reference.span_s, 0.01):
        want = reference.note_at(t)
        if want is None:
            continue
        total += 1
        got = transcribed.note_at(t)
        if got is not None:
            sounding += 1
            hit += abs(got.midi_note - want.midi_note) < 1.0
    return sounding / total, hit / max(sounding, 1)


@pytest.mark.parametrize("method", ["world", "psola"])
def test_a_tune_sung_by_the_converter_comes_back_as_its_notes(tmp_path, example_speech, method):
    """Synthetic singing of a known melody (the bundled sentence sung on the bundled tune): the
    transcription of that singing is the tune again, within a semitone, for most of its time."""
    audio, rate = example_speech
    tune = load_melody(str(files("voxflip") / "data" / "tune.mid"))
    as_written = {"melody_octave": "keep"} if method == "psola" else {}   # psola would sing it an octave down
    sung = stream_in_blocks(Streamer(make_converter("singing", method, melody=tune, **as_written), rate), audio, 4096)
    path = tmp_path / "reference.wav"
    sf.write(path, sung, rate)
    again = load_melody(path)
    assert again.source == str(path)
    # Unvoiced consonants at the note starts leave some of the tune's time without a transcribed note;
    # where there is one, it is the tune's.
    coverage, pitch = _match(tune, again)
    assert coverage >= 0.65 and pitch >= 0.9, (coverage, pitch)


def test_a_reference_with_no_singing_says_so(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16_000, np.float32), 16_000)
    with pytest.raises(MelodyError, match=r"silence\.wav: no voiced frames"):
        load_melody(path)


def test_an_unknown_extension_lists_the_audio_ones_too(tmp_path):
    path = tmp_path / "tune.txt"
    path.write_text("x")
    with pytest.raises(MelodyError, match=r"allowed: .*\.json, \.wav, \.flac"):
        load_melody(path)


@pytest.mark.devdata
def test_real_singing_is_recovered_within_a_semitone_of_its_own_f0(dev_pairs):
    """On dev-data the transcribed notes lie within a semitone of the singing's own F0 on 97% of its
    voiced frames (2026-12-05; the worst clip 91%), and cover 99.5% of them."""
    from voxflip.engine.melody_audio import transcribe_melody_file

    within, covered = [], []
    for pair in dev_pairs:
        t = transcribe_melody_file(pair["singing"])
        ok = n = 0
        voiced = t.f0_hz > 0
        for time_s, f0 in zip(t.times_s[voiced], t.f0_hz[voiced], strict=True):
            note = t.melody.note_at(time_s)
            if note is None:
                continue
            n += 1
            ok += abs(12 * np.log2(f0 / note.f0_hz) - t.tuning_cents / 100) < 1.0
        within.append(ok / max(n, 1))
        covered.append(n / max(1, voiced.sum()))
    assert np.mean(within) >= 0.95 and min(within) >= 0.85, within
    assert np.mean(covered) >= 0.95, covered

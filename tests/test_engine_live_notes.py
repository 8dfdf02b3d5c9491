"""Speech -> singing on live notes: pitch follows the notes, syllables follow the speaker."""

from __future__ import annotations

import numpy as np
import pytest

from voxflip.engine.converters.world_to_singing_live import LiveNotesToSingingConverter
from voxflip.streaming.streamer import Streamer

RATE = 16_000
BLOCK = 160  # 10 ms: notes act at the next 10 ms chunk


def praat_f0(audio: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    parselmouth = pytest.importorskip("parselmouth", reason="praat-parselmouth is in the dev extra")
    pitch = parselmouth.Sound(audio.astype(np.float64), rate).to_pitch_ac(time_step=0.005, pitch_floor=75.0,
                                                                          pitch_ceiling=1000.0)
    return pitch.xs(), pitch.selected_array["frequency"]


def play(audio: np.ndarray, events: list[tuple[float, int, float]], **kw) -> tuple[np.ndarray, LiveNotesToSingingConverter, Streamer]:
    """Stream ``audio`` with ``(time_s, midi, velocity)`` note events applied between 10 ms blocks."""
    conv = LiveNotesToSingingConverter(**kw)
    streamer = Streamer(conv, RATE)
    by_block: dict[int, list[tuple[int, float]]] = {}
    for t, midi, vel in events:
        by_block.setdefault(int(round(t * RATE)) // BLOCK, []).append((midi, vel))
    out = []
    for k in range(0, audio.shape[0] // BLOCK):
        for event in by_block.get(k, []):
            conv.set_param(streamer.state, "note", event)
        out.append(streamer.process(audio[k * BLOCK : (k + 1) * BLOCK]))
    out.append(streamer.flush())
    return np.concatenate(out), conv, streamer


def median_f0_in(times, f0, start, stop):
    sel = (times >= start) & (times < stop) & (f0 > 0)
    return float(np.median(f0[sel])) if sel.sum() >= 5 else 0.0


@pytest.fixture(scope="module")
def speech(example_speech):
    audio, rate = example_speech
    assert rate == RATE
    return audio


def test_output_keeps_the_input_timing_and_is_silent_without_notes(speech):
    out, _, _ = play(speech, [])
    assert out.shape == speech.shape
    assert np.max(np.abs(out)) < 1e-3


def test_pitch_follows_the_notes(speech):
    melody = [60, 64, 67, 65, 62, 69]
    events = []
    for i, m in enumerate(melody):
        events += [(0.6 + 0.45 * i, m, 0.9), (0.6 + 0.45 * i + 0.4, m, 0.0)]
    out, conv, streamer = play(speech, events)
    times, f0 = praat_f0(out, RATE)
    sung = 0
    for i, m in enumerate(melody):
        start = 0.6 + 0.45 * i + 0.05  # past the onset consonant and the glide
        got = median_f0_in(times, f0, start, start + 0.3)
        if got:
            sung += 1
            cents = 1200 * np.log2(got / (440 * 2 ** ((m - 69) / 12)))
            chroma = abs((cents + 600) % 1200 - 600)  # octave-folded, as raw chroma accuracy counts it
            assert chroma < 50, f"note {m}: {got:.1f} Hz"
    assert sung >= 5, "most notes should find a syllable to sing"
    assert conv.report(streamer.state).stats["notes"] == len(melody)


def test_a_held_note_sustains_and_note_off_ends_it(speech):
    # one note held for 2 s over the whole sentence start, then released
    out, _, _ = play(speech, [(0.5, 57, 1.0), (2.5, 57, 0.0)])
    times, f0 = praat_f0(out, RATE)
    held = (times > 0.8) & (times < 2.4)
    assert (f0[held] > 0).mean() > 0.8, "the vowel is sustained while the note is held"
    after = times > 2.7
    level = np.sqrt(np.mean(out[int(2.7 * RATE) : int(3.0 * RATE)] ** 2))
    assert (f0[after & (times < 3.0)] > 0).mean() < 0.1 and level < 1e-3


def test_legato_glides_to_the_new_note(speech):
    out, _, _ = play(speech, [(0.5, 60, 1.0), (1.5, 67, 1.0), (2.5, 67, 0.0), (2.5, 60, 0.0)])
    times, f0 = praat_f0(out, RATE)
    assert abs(median_f0_in(times, f0, 1.1, 1.45) - 261.6) < 8
    assert abs(median_f0_in(times, f0, 1.7, 2.4) - 392.0) < 12


def test_velocity_sets_the_level(speech):
    loud, _, _ = play(speech, [(0.5, 60, 1.0), (2.0, 60, 0.0)])
    soft, _, _ = play(speech, [(0.5, 60, 0.1), (2.0, 60, 0.0)])
    span = slice(int(0.7 * RATE), int(1.9 * RATE))
    ratio_db = 20 * np.log10(np.sqrt(np.mean(soft[span] ** 2)) / np.sqrt(np.mean(loud[span] ** 2)))
    assert ratio_db == pytest.approx(-20.0, abs=1.0)


@pytest.mark.parametrize("value, match", [((128, 1.0), "0..127"), ((60, 1.5), "velocity 0..1")])
def test_bad_notes_are_refused(value, match):
    conv = LiveNotesToSingingConverter()
    with pytest.raises(ValueError, match=match):
        conv.set_param(conv.init_state(), "note", value)

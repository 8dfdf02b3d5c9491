"""psola's plan sings syllables, not the tracker's voiced blips, and leaves a phrase's breath out of its coda."""

from __future__ import annotations

import numpy as np
from helpers import stream_in_blocks

from voxflip.engine.converters.psola_to_singing import (
    BLIP_BELOW_DB,
    CODA_BELOW_DB,
    PsolaToSingingConverter,
    sung_units,
)
from voxflip.engine.converters.syllable_units import Unit
from voxflip.engine.melody import Melody, Note
from voxflip.streaming.streamer import Streamer

FRAME_S = 0.005
PAUSE = 40   # 200 ms at 5 ms frames


def _levels(n: int, units: list[tuple[Unit, float]]) -> np.ndarray:
    """Room tone at -70 dB; each unit's frames at its level."""
    levels = np.full(n, -70.0)
    for unit, level in units:
        levels[unit.onset:unit.end] = level
    return levels


def _spans(units: list[Unit]) -> list[tuple[int, int, int, int]]:
    return [(u.onset, u.nucleus, u.coda, u.end) for u in units]


def test_a_blip_between_pauses_is_left_out():
    words = [Unit(100, 105, 140, 140), Unit(150, 152, 190, 190)]
    blip = Unit(10, 12, 15, 15)                    # 15 ms of voicing, alone before the first word
    levels = _levels(300, [(blip, -20.0 - BLIP_BELOW_DB - 5), (words[0], -20.0), (words[1], -22.0)])
    assert _spans(sung_units([blip, *words], levels, PAUSE, FRAME_S)) == _spans(words)


def test_a_blip_just_before_a_word_hands_on_its_onset():
    """A voiced flicker inside an /s/: the word keeps the consonant from its start."""
    blip = Unit(90, 95, 98, 98)
    word = Unit(110, 115, 160, 160)
    levels = _levels(300, [(blip, -50.0), (word, -20.0), (Unit(200, 200, 240, 240), -20.0)])
    out = sung_units([blip, word, Unit(200, 200, 240, 240)], levels, PAUSE, FRAME_S)
    assert _spans(out)[0] == (90, 115, 160, 160)


def test_a_blip_just_after_a_word_becomes_its_coda():
    word = Unit(10, 15, 60, 60)
    blip = Unit(70, 72, 75, 75)
    levels = _levels(300, [(word, -20.0), (blip, -30.0), (Unit(200, 200, 240, 240), -20.0)])
    levels[[72, 73, 74]] = -45.0                   # the blip's voicing: 25 dB under the words' peaks
    out = sung_units([word, blip, Unit(200, 200, 240, 240)], levels, PAUSE, FRAME_S)
    assert _spans(out)[0] == (10, 15, 60, 72)      # its consonant stays in the coda, its faint voicing goes


def test_loud_and_long_units_stay_syllables():
    quiet_but_long = Unit(10, 12, 12 + 20, 32)      # 100 ms nucleus: a weak syllable, not a blip
    loud_short = Unit(100, 101, 104, 104)           # 15 ms but loud
    other = Unit(200, 200, 240, 240)
    levels = _levels(300, [(quiet_but_long, -50.0), (loud_short, -20.0), (other, -20.0)])
    out = sung_units([quiet_but_long, loud_short, other], levels, PAUSE, FRAME_S)
    assert [u.nucleus for u in out] == [12, 101, 200]


def test_a_coda_ends_at_its_last_frame_near_the_nucleus():
    word = Unit(10, 15, 60, 100)                   # the tracker's coda: 40 frames to the pause
    levels = _levels(300, [(word, -20.0)])
    levels[60:70] = -20.0 - CODA_BELOW_DB + 2      # the consonant
    levels[70:100] = -20.0 - CODA_BELOW_DB - 8     # breath
    levels[75] = -25.0                             # a louder frame inside the breath keeps what is before it
    out = sung_units([word], levels, PAUSE, FRAME_S)
    assert _spans(out) == [(10, 15, 60, 76)]
    assert _spans([word]) == [(10, 15, 60, 100)], "the tracker's units are not changed"
    levels[60:100] = -80.0
    assert _spans(sung_units([word], levels, PAUSE, FRAME_S)) == [(10, 15, 60, 60)]


def test_only_blips_are_sung_as_they_are():
    blips = [Unit(10, 12, 14, 14), Unit(100, 101, 103, 103)]
    levels = _levels(300, [(blips[0], -50.0), (blips[1], -52.0)])
    assert _spans(sung_units(blips, levels, PAUSE, FRAME_S)) == _spans(blips)
    assert sung_units([], levels, PAUSE, FRAME_S) == []


def test_a_faint_blip_before_the_first_word_takes_no_note():
    """End to end: a faint voiced flicker before the speech no longer takes the song's first note."""
    rate = 16_000
    t = np.arange(int(0.5 * rate)) / rate
    vowel = (0.3 * np.sin(2 * np.pi * 150 * t) + 0.1 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    flicker = (0.012 * np.sin(2 * np.pi * 150 * t[: int(0.05 * rate)])).astype(np.float32)  # 27 dB down, 50 ms
    gap = np.zeros(int(0.4 * rate), np.float32)
    speech = np.concatenate([gap, flicker, gap, vowel, gap, vowel, gap])
    melody = Melody((Note(0.0, 0.6, 60), Note(0.8, 1.4, 64), Note(1.6, 2.2, 62)), "three notes")
    converter = PsolaToSingingConverter(melody)
    streamer = Streamer(converter, rate)
    out = stream_in_blocks(streamer, speech, 4096)
    stats = streamer.report().stats
    # Before, the flicker was a syllable that shared the first note with the first vowel.
    assert stats["blips"] == 1.0 and stats["shared_notes"] == 0.0 and stats["melisma_notes"] == 1.0
    for start in (0.1, 0.9, 1.7):                   # every note sings a vowel
        assert np.sqrt(np.mean(out[int(start * rate):int((start + 0.4) * rate)] ** 2)) > 0.05

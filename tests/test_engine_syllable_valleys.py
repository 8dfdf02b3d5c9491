"""psola's ``valleys`` option: the speech's syllables cut again at the valleys of its formant band's level, a
lengthened nucleus's unvoiced stretches sung at their spoken speed (engine/converters/syllable_valleys.py)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import stream_in_blocks

from voxflip.engine.converters.psola_to_singing import PsolaToSingingConverter
from voxflip.engine.converters.syllable_units import Unit
from voxflip.engine.converters.syllable_valleys import (
    DIP_DB,
    JOIN_GAP_S,
    MIN_SYLLABLE_S,
    band_level_db,
    nucleus_map,
    resegment,
)
from voxflip.engine.melody import Melody, Note
from voxflip.streaming.streamer import Streamer

FRAME_S = 0.005
RATE = 16_000
HOP = 80


def _spans(units: list[Unit]) -> list[tuple[int, int, int, int]]:
    return [(u.onset, u.nucleus, u.coda, u.end) for u in units]


def _tone(hz: float, seconds: float, amplitude: float = 0.1) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * RATE)) / RATE)


# -- the band level -------------------------------------------------------------------------------------

def test_the_band_hears_the_formants_not_the_voice_bar():
    inside, below = _tone(1000.0, 0.5), _tone(150.0, 0.5)
    frames = 0.5 / FRAME_S
    level_in = band_level_db(inside, 0, int(frames), HOP, RATE)
    level_below = band_level_db(below, 0, int(frames), HOP, RATE)
    middle = slice(20, 80)
    assert np.median(level_in[middle]) - np.median(level_below[middle]) > 30.0


def test_the_band_level_sits_on_the_frame_grid():
    """Samples are placed by their absolute index: a signal given from sample 800 on, or padded with
    zeros to start at 0, has the same levels; frames whose window holds no sample are at the floor."""
    tone = _tone(1000.0, 0.3)
    padded = np.concatenate([np.zeros(800), tone])
    a = band_level_db(tone, 800, 80, HOP, RATE)
    b = band_level_db(padded, 0, 80, HOP, RATE)
    np.testing.assert_allclose(a, b, atol=1e-9)
    assert a[0] == pytest.approx(-200.0)                    # frame 0's window ends at sample 240, before 800
    assert a[20] > a[0] + 100.0                             # frame 20 is centred on sample 1600


# -- cutting phrases again ------------------------------------------------------------------------------

def _band(n: int, peaks: list[tuple[int, int, float]]) -> np.ndarray:
    """-80 dB, with plateaus (first, last, level)."""
    band = np.full(n, -80.0)
    for a, b, level in peaks:
        band[a:b] = level
    return band


def test_a_voiced_consonant_with_no_broadband_dip_cuts_a_nucleus():
    """"me ré": one voiced run to the causal tracker; the band dips 15 dB at the /r/."""
    unit = Unit(10, 20, 120, 130)
    band = _band(200, [(20, 65, -20.0), (65, 75, -35.0), (75, 120, -20.0)])
    out = resegment([unit], band, np.ones(200, bool), FRAME_S)
    assert len(out) == 2
    (o1, n1, c1, e1), (o2, n2, c2, e2) = _spans(out)
    assert (o1, n1) == (10, 20) and (c2, e2) == (120, 130), "the phrase keeps its onset, coda and end"
    assert c1 == e1 == o2, "the consonant opens the second syllable"
    assert 60 <= o2 <= 66 and 74 <= n2 <= 80, (o2, n2)


def test_a_voicing_dropout_inside_a_vowel_does_not_cut():
    """Creak: the tracker heard two syllables across 30 ms without F0; the band never dipped."""
    first, second = Unit(10, 20, 70, 70), Unit(70, 76, 130, 140)
    band = _band(200, [(20, 130, -20.0)])
    voiced = np.ones(200, bool)
    voiced[70:76] = False
    out = resegment([first, second], band, voiced, FRAME_S)
    assert _spans(out) == [(10, 20, 130, 140)]


def test_shallow_valleys_and_valleys_near_the_ends_do_not_cut():
    unit = Unit(0, 10, 110, 110)
    shallow = _band(200, [(10, 55, -20.0), (55, 65, -20.0 - DIP_DB + 1.5), (65, 110, -20.0)])
    assert len(resegment([unit], shallow, np.ones(200, bool), FRAME_S)) == 1
    near = round(MIN_SYLLABLE_S / FRAME_S) - 4
    edge = _band(200, [(10, 10 + near, -20.0), (10 + near, 18 + near, -40.0), (18 + near, 110, -20.0)])
    assert len(resegment([unit], edge, np.ones(200, bool), FRAME_S)) == 1


def test_nuclei_parted_by_a_consonant_are_never_joined():
    """More unvoiced sound than a dropout between two nuclei is a consonant: the tracker's cut stays."""
    gap = round(JOIN_GAP_S / FRAME_S) + 1
    first, second = Unit(0, 10, 60, 60), Unit(60, 60 + gap, 160, 160)
    band = _band(200, [(10, 160, -20.0)])
    voiced = np.ones(200, bool)
    voiced[60:60 + gap] = False
    out = resegment([first, second], band, voiced, FRAME_S)
    assert _spans(out) == _spans([first, second])
    assert resegment([], band, voiced, FRAME_S) == []


def test_a_piece_with_no_voice_is_the_next_syllables_onset():
    """A loud unvoiced fricative between two valleys is no syllable of its own."""
    unit = Unit(0, 10, 190, 190)
    band = _band(200, [(10, 50, -20.0), (50, 60, -40.0), (60, 100, -20.0), (100, 110, -40.0), (110, 190, -20.0)])
    voiced = np.ones(200, bool)
    voiced[55:105] = False                                  # the middle piece
    out = resegment([unit], band, voiced, FRAME_S)
    assert len(out) == 2
    assert out[0].coda == out[1].onset < 60 and out[1].nucleus > 100


# -- singing a nucleus ------------------------------------------------------------------------------------

def test_unvoiced_runs_of_a_lengthened_nucleus_keep_their_spoken_length():
    voiced = np.array([True] * 20 + [False] * 8 + [True] * 20)
    sources, sung = nucleus_map(voiced, 96, dropout=3)
    assert len(sources) == len(sung) == 96
    assert np.all(np.diff(sources) >= 0) and sources[0] == 0 and sources[-1] == 47
    quiet = np.flatnonzero(~sung)
    assert len(quiet) == 8 and np.array_equal(sources[quiet], np.arange(20, 28))
    assert np.count_nonzero(sung[:quiet[0]]) == 44            # the voiced runs share 88 frames equally


def test_dropouts_count_as_voice_and_shortening_reads_evenly():
    voiced = np.array([True] * 20 + [False] * 2 + [True] * 20)
    sources, sung = nucleus_map(voiced, 84, dropout=3)
    assert sung.all()
    np.testing.assert_allclose(sources, np.arange(84) * 41 / 83)
    voiced = np.array([True] * 20 + [False] * 8 + [True] * 20)
    sources, sung = nucleus_map(voiced, 24, dropout=3)
    np.testing.assert_allclose(sources, np.arange(24) * 47 / 23)
    assert not sung[np.round(sources).astype(int) == 24].any()
    assert nucleus_map(voiced, 0, dropout=3)[0].shape == (0,)


# -- end to end -------------------------------------------------------------------------------------------

def _mama() -> np.ndarray:
    """Two vowels joined by a nasal, all voiced: the broadband level dips only 2 dB, the band 30 dB."""
    vowel = [0.08, 0.08, 0.1, 0.12, 0.15, 0.15, 0.12, 0.1, 0.08, 0.06, 0.04, 0.03]   # harmonics of 150 Hz
    nasal = [0.25, 0.12, 0.01, 0.005, 0.005]
    t = np.arange(int(0.68 * RATE)) / RATE
    murmur = (t >= 0.3) & (t < 0.38)
    harmonics = np.sin(2 * np.pi * 150 * np.outer(np.arange(1, 13), t))
    sound = np.where(murmur, np.array(nasal + [0.0] * 7) @ harmonics, np.array(vowel) @ harmonics)
    gap = np.zeros(int(0.3 * RATE))
    return np.concatenate([gap, sound, gap]).astype(np.float32)


def test_psola_sings_two_syllables_where_the_tracker_heard_one():
    melody = Melody((Note(0.0, 0.6, 60), Note(0.6, 1.2, 64)), "two notes")
    stats = {}
    for valleys in (False, True):
        streamer = Streamer(PsolaToSingingConverter(melody, valleys=valleys), RATE)
        stream_in_blocks(streamer, _mama(), 4096)
        stats[valleys] = streamer.report().stats
    assert stats[False]["syllables"] == stats[True]["syllables"] == 1.0, "the causal tracker hears one"
    assert stats[False]["sung_syllables"] == 1.0 and stats[False]["melisma_notes"] == 1.0
    assert stats[True]["sung_syllables"] == 2.0 and stats[True]["melisma_notes"] == 0.0


def test_the_cut_song_is_the_same_for_any_block_size():
    melody = Melody((Note(0.0, 0.6, 60), Note(0.6, 1.2, 64)), "two notes")
    songs = [stream_in_blocks(Streamer(PsolaToSingingConverter(melody, valleys=True), RATE), _mama(), block)
             for block in (160, 4096)]
    np.testing.assert_array_equal(songs[0], songs[1])


def test_a_voiced_onset_is_sung_on_the_note_only_with_valleys():
    """The /m/ that opens the second syllable is voiced: with valleys it is sung at the note's pitch;
    without, psola's onsets stay as recorded, as before."""
    melody = Melody((Note(0.0, 0.6, 60), Note(0.6, 1.2, 64)), "two notes")
    murmur = round((0.3 + 0.34) / FRAME_S)                  # inside the nasal, after the leading pause
    murmur_unit = Unit(murmur - 5, murmur + 10, murmur + 40, murmur + 40)
    for valleys in (True, False):
        converter = PsolaToSingingConverter(melody, valleys=valleys)
        streamer = Streamer(converter, RATE)
        stream_in_blocks(streamer, _mama(), 4096)
        s = streamer.state.custom
        assert s.units.store.f0(murmur) > 0
        assert converter._onset_voiced(murmur_unit, float(murmur), s) is valleys

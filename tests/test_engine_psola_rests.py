"""psola sings its rests on the speech's own pauses (room tone, breaths), never on exact zeros."""

from __future__ import annotations

import numpy as np
from helpers import stream_in_blocks

from voxflip.engine.converters.psola_to_singing import REST_MARGIN_FRAMES, PsolaToSingingConverter
from voxflip.engine.converters.syllable_units import Unit
from voxflip.engine.melody import Melody, Note
from voxflip.streaming.streamer import Streamer


def _rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-30))


def test_the_pool_keeps_quiet_frames_away_from_syllables_in_runs():
    levels = np.full(100, -70.0)
    levels[20:30] = -20.0                  # a syllable
    levels[60:62] = -30.0                  # a loud click outside any syllable: too loud for a rest
    levels[76] = levels[80] = -10.0        # loud frames around 77..79: a quiet run of 3, too short
    units = [Unit(onset=20, nucleus=22, coda=28, end=30)]
    pool = PsolaToSingingConverter._rest_pool(levels, units)
    assert not np.any((pool >= 20 - REST_MARGIN_FRAMES) & (pool < 30 + REST_MARGIN_FRAMES))
    assert not np.any((pool >= 60) & (pool < 62)) and 76 not in pool and 80 not in pool
    assert not np.any((pool >= 77) & (pool < 80))         # a run of 3 is too short
    assert 75 in pool and 81 in pool
    assert np.all(np.diff(pool) > 0) and 0 in pool and 99 in pool
    assert len(PsolaToSingingConverter._rest_pool(levels, [])) == 0


def test_rests_play_the_speechs_room_tone_at_its_level(example_speech):
    audio, rate = example_speech
    pause = audio[: int(0.15 * rate)]      # the ARCTIC sentence's lead-in: room tone before the first word
    melody = Melody((Note(0.0, 1.0, 60), Note(2.0, 3.0, 64), Note(3.0, 4.0, 67)), "with a rest")
    out = stream_in_blocks(Streamer(PsolaToSingingConverter(melody), rate), audio, 4096)
    rest = out[int(1.2 * rate):int(1.8 * rate)]
    sung = out[int(2.2 * rate):int(2.8 * rate)]
    zero_run = np.max(np.diff(np.flatnonzero(rest != 0), prepend=0, append=len(rest)))
    assert zero_run < int(0.005 * rate), "a rest must not be gated to exact zeros"
    assert abs(_rms_db(rest) - _rms_db(pause)) < 6.0
    assert _rms_db(sung) - _rms_db(rest) > 20.0


def test_rests_add_nothing_the_speech_did_not_have():
    """Pauses of exact zeros give rests of exact zeros, but for the tail of the fixed high-pass under
    the note before (``dc_block_hz``), 120 dB down: no comfort noise is made up."""
    rate = 16_000
    t = np.arange(int(0.6 * rate)) / rate
    vowel = (0.3 * np.sin(2 * np.pi * 140 * t) + 0.1 * np.sin(2 * np.pi * 280 * t)).astype(np.float32)
    gap = np.zeros(int(0.5 * rate), np.float32)
    speech = np.concatenate([gap, vowel, gap, vowel, gap])
    melody = Melody((Note(0.0, 0.8, 60), Note(1.8, 2.6, 64)), "with a rest")
    out = stream_in_blocks(Streamer(PsolaToSingingConverter(melody), rate), speech, 4096)
    assert np.max(np.abs(out[int(1.1 * rate):int(1.5 * rate)])) < 1e-6
    assert np.max(np.abs(out[int(2.0 * rate):int(2.4 * rate)])) > 0.1

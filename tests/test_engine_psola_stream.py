"""``psola-stream``: speech -> singing note by note as the syllables arrive, sung by TD-PSOLA (runs live)."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest
from helpers import stream_in_blocks

from voxflip.engine.errors import OptionError
from voxflip.engine.melody import load_melody
from voxflip.engine.melody_audio import f0_contour
from voxflip.engine.registry import get_converter, make_converter
from voxflip.streaming.streamer import Streamer

TUNE = str(files("voxflip") / "data" / "tune.mid")


def _sing(audio: np.ndarray, rate: int, block: int, **options) -> tuple[np.ndarray, int]:
    """The whole song, and how many of its samples came out before the input had ended."""
    streamer = Streamer(make_converter("singing", "psola-stream", melody=TUNE, **options), rate)
    during = [streamer.process(audio[i:i + block]) for i in range(0, len(audio), block)]
    return np.concatenate([*during, streamer.flush()]), sum(len(p) for p in during)


def test_the_same_song_for_any_chunk_and_block_size(example_speech):
    audio, rate = example_speech
    reference, _ = _sing(audio, rate, 4096, chunk_ms=10)
    for chunk_ms, block in ((10, 333), (20, 4096), (1000, 777)):
        out, _ = _sing(audio, rate, block, chunk_ms=chunk_ms)
        np.testing.assert_array_equal(out, reference, err_msg=f"{chunk_ms} ms chunks, {block}-sample blocks")


def test_it_sings_while_the_speech_goes_on_where_psola_waits_for_the_end(example_speech):
    audio, rate = example_speech
    song, during = _sing(audio, rate, 1024, chunk_ms=10)
    assert during > 0.6 * len(song)
    whole = Streamer(make_converter("singing", "psola", melody=TUNE), rate)
    assert sum(len(whole.process(audio[i:i + 1024])) for i in range(0, len(audio), 1024)) == 0


def test_the_song_is_on_the_notes(example_speech):
    """Over the steady middle of each note (vibrato aside), the sung F0 is the note's."""
    audio, rate = example_speech
    song, _ = _sing(audio, rate, 4096)
    times, f0 = f0_contour(song, rate)
    cents = []
    for note in load_melody(TUNE).notes:
        middle = (times > note.start_s + 0.06) & (times < note.end_s - 0.06) & (f0 > 0)
        target = 440.0 * 2 ** ((note.midi_note - 69) / 12)
        cents.extend(1200 * np.log2(f0[middle] / target))
    cents = (np.array(cents) + 600) % 1200 - 600          # the tracker's octave errors are not the converter's
    assert len(cents) > 200
    assert np.median(np.abs(cents)) < 30.0   # the vibrato's peak is 24 cents


def test_it_is_the_psola_sound_not_worlds(example_speech):
    """Same plan as world, another synthesiser: the two songs last the same but are not the same."""
    audio, rate = example_speech
    song, _ = _sing(audio, rate, 4096)
    world = stream_in_blocks(Streamer(make_converter("singing", "world", melody=TUNE), rate), audio, 4096)
    assert abs(len(song) - len(world)) <= rate // 50
    n = min(len(song), len(world))
    assert not np.allclose(song[:n], world[:n], atol=1e-3)


def test_it_sings_a_melody_file_not_live_notes():
    with pytest.raises(OptionError, match="live_notes=True are sung by the WORLD converter only"):
        make_converter("singing", "psola-stream", live_notes=True)
    assert not get_converter("psola-stream").whole_input


def test_with_rest_pauses_its_rests_play_the_speechs_own_pauses(example_speech):
    """As psola's: the frames before each syllable's onset where the speech paused (room tone,
    breath), quiet against the singing; by default (words first) the rests are silent. Either way
    the song does not depend on the chunk size."""
    from voxflip.engine.converters.psola_to_singing import PsolaStreamToSingingConverter
    from voxflip.engine.melody import Melody, Note

    audio, rate = example_speech
    tune = Melody(tuple(Note(round(1.0 + 0.35 * k, 6), round(1.3 + 0.35 * k, 6), 60.0 + k % 4)
                        for k in range(10)), "late")      # a second of rest before the first note
    songs = [stream_in_blocks(Streamer(PsolaStreamToSingingConverter(tune, rest_pauses=True, chunk_frames=frames),
                                       rate), audio, 4096) for frames in (2, 200)]
    np.testing.assert_array_equal(songs[0], songs[1])
    out = songs[0]
    rest, sung = out[int(0.1 * rate):int(0.9 * rate)], out[int(1.0 * rate):int(4.3 * rate)]
    assert np.count_nonzero(rest) > 0.9 * len(rest)
    assert 20 * np.log10(np.sqrt(np.mean(rest ** 2)) / np.sqrt(np.mean(sung ** 2))) < -20
    silent = stream_in_blocks(Streamer(make_converter("singing", "psola-stream", melody=tune), rate), audio, 4096)
    assert not silent[int(0.1 * rate):int(0.9 * rate)].any()

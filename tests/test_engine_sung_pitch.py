"""``--melody-pitch sung``: a sung reference's own pitch (tuning, vibrato, glides) as the pitch to sing.

The reference is synthetic singing of a known score (``test_engine_melody_audio.sing``) sung 30 cents
sharp with vibrato: the notes transcribed from it are whole semitones in A4 = 440 Hz, so a converter
singing the notes is 30 cents flat of it, and one singing the sung pitch is not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from helpers import stream_in_blocks
from test_engine_melody_audio import SAMPLE_RATE, SCORE, sing

from voxflip.engine.converters.alignsts_model import notes_f0, target_mel
from voxflip.engine.converters.world_to_singing import midi_hz
from voxflip.engine.errors import MelodyError, OptionError
from voxflip.engine.melody import Melody, Note, SungPitch, load_melody
from voxflip.engine.melody_audio import f0_contour, transcribe_melody
from voxflip.engine.registry import make_converter
from voxflip.streaming.streamer import Streamer

DETUNE_CENTS = 30.0


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    """A 2.45 s sung reference, 30 cents sharp, with 40-cent vibrato on two of its five notes."""
    path = tmp_path_factory.mktemp("sung") / "reference.wav"
    sf.write(path, sing(SCORE, detune_cents=DETUNE_CENTS), SAMPLE_RATE)
    return str(path)


# -- SungPitch ------------------------------------------------------------------------------------
def test_at_interpolates_between_frames_and_is_none_where_nothing_was_sung():
    pitch = SungPitch(0.5, 0.01, np.array([60.0, 61.0, np.nan, 62.0]))
    assert pitch.at(0.5) == 60.0
    assert pitch.at(0.505) == pytest.approx(60.5)
    assert pitch.at(0.515) is None          # next to an unsung frame
    assert pitch.at(0.53) == 62.0
    assert pitch.at(0.49) is None and pitch.at(0.531) is None
    assert pitch.end_s == pytest.approx(0.53)


def test_transpose_and_tempo_move_pitch_and_clock():
    pitch = SungPitch(1.0, 0.01, np.array([60.0, 62.0]))
    assert pitch.transposed(2.5).at(1.0) == 62.5
    faster = pitch.with_tempo(2.0)
    assert (faster.start_s, faster.hop_s) == (0.5, 0.005)
    assert faster.at(0.505) == 62.0


def test_pitches_are_a_read_only_copy():
    values = np.array([60.0, 61.0])
    pitch = SungPitch(0.0, 0.01, values)
    values[0] = 0.0
    assert pitch.at(0.0) == 60.0
    with pytest.raises(ValueError):
        pitch.midi[0] = 1.0


@pytest.mark.parametrize("start, hop, midi", [(0.0, 0.0, [60.0]), (math.nan, 0.01, [60.0]), (0.0, 0.01, [[60.0]])])
def test_a_malformed_sung_pitch_is_refused(start, hop, midi):
    with pytest.raises(MelodyError, match="a sung pitch needs"):
        SungPitch(start, hop, np.array(midi))


def test_melody_transforms_carry_the_sung_pitch():
    melody = Melody((Note(0.0, 1.0, 60.0),), "m", SungPitch(0.0, 0.01, np.full(101, 60.3)))
    moved = melody.transposed(2.0).with_tempo(2.0)
    assert moved.sung is not None and moved.sung.at(0.25) == pytest.approx(62.3)


# -- from a recording -----------------------------------------------------------------------------
def test_the_transcription_keeps_tuning_and_vibrato_inside_notes_only():
    result = transcribe_melody(sing(SCORE, detune_cents=DETUNE_CENTS), SAMPLE_RATE)
    pitch = result.sung_pitch()
    times = pitch.start_s + pitch.hop_s * np.arange(len(pitch.midi))
    for note in result.melody.notes:
        inside = (times >= note.start_s) & (times < note.end_s)
        assert np.isfinite(pitch.midi[inside]).all()         # consonant gaps inside a note are filled
        steady = inside & (times > note.start_s + 0.05) & (times < note.end_s - 0.05)
        assert np.median(pitch.midi[steady]) - note.midi_note == pytest.approx(DETUNE_CENTS / 100, abs=0.08)
    rest = (times > 1.02) & (times < 1.18)                    # the score's 200 ms rest
    assert np.isnan(pitch.midi[rest]).all()
    vibrato = (times > 0.2) & (times < 0.5)                   # 40 cents at 5.5 Hz on the first note
    assert np.ptp(pitch.midi[vibrato]) > 0.6


def test_load_melody_keeps_the_sung_pitch_only_when_asked(reference):
    assert load_melody(reference).sung is None
    melody = load_melody(reference, sung_pitch=True, transpose_semitones=-1.0)
    assert melody.sung is not None
    assert melody.sung.at(0.8) == pytest.approx(64.0 + DETUNE_CENTS / 100 - 1.0, abs=0.1)


def test_a_score_has_no_sung_pitch(tmp_path):
    path = tmp_path / "tune.csv"
    path.write_text("start_s,end_s,midi_note\n0,1,60\n")
    with pytest.raises(MelodyError, match=r"tune\.csv: --melody-pitch sung follows the pitch of a sung recording"):
        load_melody(path, sung_pitch=True)


def test_options_are_checked(reference):
    with pytest.raises(OptionError, match="melody_pitch='loose' is not one of notes, sung"):
        make_converter("singing", "psola", melody=reference, melody_pitch="loose")
    with pytest.raises(OptionError, match="has notes only"):
        make_converter("singing", "psola", melody=Melody((Note(0, 1, 60),), "m"), melody_pitch="sung")
    with pytest.raises(OptionError, match="live notes are sung at their own pitch"):
        make_converter("singing", "world", live_notes=True, melody_pitch="sung")



def test_a_recording_is_sung_at_its_sung_pitch_unless_notes_are_asked_for(reference, tmp_path):
    assert make_converter("singing", "psola", melody=reference).melody.sung is not None
    assert make_converter("singing", "psola", melody=reference, melody_pitch="notes").melody.sung is None
    sung = load_melody(reference, sung_pitch=True)
    assert make_converter("singing", "world", melody=sung).melody.sung is not None
    assert make_converter("singing", "world", melody=sung, melody_pitch="notes").melody.sung is None
    score = tmp_path / "tune.csv"
    score.write_text("start_s,end_s,midi_note\n0,1,60\n")
    assert make_converter("singing", "psola", melody=score).melody.sung is None


# -- converters -----------------------------------------------------------------------------------
def _offset_cents(sung: np.ndarray, rate: int, reference: str) -> float:
    """Median pitch of the output minus the reference's, in cents, over the steady middles of the notes
    where both are voiced (the engine's YIN on each)."""
    ref_audio, ref_rate = sf.read(reference)
    ref_times, ref_f0 = f0_contour(ref_audio, ref_rate)
    times, f0 = f0_contour(sung, rate)
    n = min(len(ref_f0), len(f0))
    middle = np.zeros(n, bool)
    for start, end, _, _ in SCORE:
        middle |= (ref_times[:n] > start + 0.08) & (ref_times[:n] < end - 0.08)
    both = middle & (ref_f0[:n] > 0) & (f0[:n] > 0)
    assert both.sum() > 50
    cents = 1200 * np.log2(f0[:n][both] / ref_f0[:n][both])
    cents = (cents + 600) % 1200 - 600           # an octave error of the tracker is not the converter's
    return float(np.median(cents))


@pytest.mark.parametrize("method", ["psola", "world"])
def test_the_song_sings_the_references_pitch(example_speech, reference, method):
    audio, rate = example_speech
    offsets = {}
    for pitch in ("notes", "sung"):
        converter = make_converter("singing", method, melody=reference, melody_pitch=pitch)
        offsets[pitch] = _offset_cents(stream_in_blocks(Streamer(converter, rate), audio, 4096), rate, reference)
    assert offsets["sung"] == pytest.approx(0.0, abs=12.0), offsets
    assert offsets["notes"] == pytest.approx(-DETUNE_CENTS, abs=12.0), offsets


def test_transpose_moves_the_sung_pitch(example_speech, reference):
    audio, rate = example_speech
    converter = make_converter("singing", "psola", melody=reference, melody_pitch="sung", transpose_semitones=2.0)
    offset = _offset_cents(stream_in_blocks(Streamer(converter, rate), audio, 4096), rate, reference)
    assert offset == pytest.approx(200.0, abs=12.0)


def test_the_same_song_for_any_block_size(example_speech, reference):
    audio, rate = example_speech
    outputs = [stream_in_blocks(Streamer(make_converter("singing", "psola", melody=reference, melody_pitch="sung"),
                                         rate), audio, block) for block in (4096, 777)]
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_alignsts_target_f0_follows_the_sung_pitch(reference):
    melody = load_melody(reference, sung_pitch=True)
    f0 = notes_f0(melody)
    frame_s = target_mel().frame_s
    for t in (0.3, 0.8, 1.3, 2.0):
        k = round(t / frame_s)
        assert f0[k] == pytest.approx(midi_hz(melody.sung.at(k * frame_s)), rel=1e-5)


def test_a_melody_sung_again_follows_the_same_pitch_on_every_pass():
    from voxflip.engine.converters.world_to_singing import sung_midi

    melody = Melody((Note(0.0, 1.0, 60.0),), "m", SungPitch(0.0, 0.01, 60.0 + np.arange(101) / 100))
    assert sung_midi(melody, 0.25) == pytest.approx(60.25)
    assert sung_midi(melody, 1.25) == pytest.approx(60.25)
    assert sung_midi(melody, 2.5) == pytest.approx(60.5)
    assert sung_midi(Melody(melody.notes, "m"), 0.25) is None


def _sung_midi(t_s: float, cfg, note: float = 64.0, prev: float | None = 60.0) -> float:
    from voxflip.engine.converters.world_to_singing import sung_pitch_hz

    return 69.0 + 12.0 * math.log2(sung_pitch_hz(note, t_s, prev, cfg) / 440.0)


def test_without_overshoot_the_glide_is_the_raised_cosine():
    from voxflip.engine.converters.world_to_singing import WorldToSingingConfig

    cfg = WorldToSingingConfig(vibrato_cents=0.0)
    for t in (0.0, 0.0075, 0.015, 0.0225, 0.03, 0.1):
        want = 64.0 if t >= 0.03 else 60.0 + 4.0 * (0.5 - 0.5 * math.cos(math.pi * t / 0.03))
        assert abs(_sung_midi(t, cfg) - want) < 1e-9


@pytest.mark.parametrize(("step", "peak_cents"), [(4.0, 36.2), (1.0, 14.3), (-4.0, 36.2)])
def test_an_overshoot_passes_the_note_by_a_capped_fraction_and_settles(step, peak_cents):
    from voxflip.engine.converters.world_to_singing import OVERSHOOT_MAX_CENTS, WorldToSingingConfig

    cfg = WorldToSingingConfig(vibrato_cents=0.0, overshoot=0.15)
    note, prev = 64.0, 64.0 - step
    t = np.arange(0.0, 0.2, 0.0005)
    midi = np.array([_sung_midi(x, cfg, note, prev) for x in t])
    past = (midi - note) * np.sign(step) * 100.0      # cents beyond the note, in the step's direction
    assert abs(midi[0] - prev) < 1e-9 and abs(midi[1] - prev) < 0.01 * abs(step)   # starts at rest
    # 15% of the step, through the soft cap of 40 cents (40 tanh(15% of the step / 40 cents)).
    assert abs(past.max() - peak_cents) < 1.0 and past.max() < OVERSHOOT_MAX_CENTS
    assert abs(t[np.argmax(past)] - 0.03) < 0.004         # the peak comes a glide's length in
    assert np.all(np.abs(past[t >= 0.12]) < 2.0)            # and it has settled four glides in


def test_an_overshoot_out_of_range_is_refused_with_the_value():
    from voxflip.engine.converters.world_to_singing import WorldToSingingConfig

    with pytest.raises(OptionError, match=r"overshoot=0.8 is outside 0..0.5"):
        WorldToSingingConfig(overshoot=0.8)


def _vibrato_cycles(cents: np.ndarray, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The length (s) and peak (cents) of each vibrato cycle, from one upward zero crossing to the next."""
    up = np.flatnonzero((cents[:-1] < 0) & (cents[1:] >= 0))
    return np.diff(up) * step_s, np.array([np.abs(cents[a:b]).max() for a, b in zip(up[:-1], up[1:], strict=True)])


def test_wander_moves_the_vibratos_rate_and_depth_within_their_bounds():
    """A steady vibrato repeats one cycle; with ``wander`` its cycles speed up and slow down by up to a
    quarter of ``wander`` and its depth swells and shrinks by up to ``wander``, as real singers' do."""
    from voxflip.engine.converters.world_to_singing import WorldToSingingConfig

    step = 0.0005
    t = np.arange(0.4, 6.0, step)
    for wander in (0.0, 0.5):
        cfg = WorldToSingingConfig(vibrato_cents=24.0, vibrato_hz=4.9, wander=wander)
        cents = np.array([(_sung_midi(x, cfg, 64.0, None) - 64.0) * 100.0 for x in t])
        lengths, peaks = _vibrato_cycles(cents, step)
        rates = 1.0 / lengths
        if wander == 0.0:
            assert np.ptp(rates) < 0.02 and np.ptp(peaks) < 0.1
        else:
            assert rates.min() < 4.9 * 0.95 and rates.max() > 4.9 * 1.05          # it wanders
            assert rates.min() > 4.9 * (1 - 0.125) - 0.1 and rates.max() < 4.9 * 1.125 + 0.1
            assert peaks.min() < 24.0 * 0.75 and peaks.max() > 24.0 * 1.25
            assert peaks.max() <= 24.0 * 1.5 + 0.1


def test_wander_is_the_same_for_the_same_note_and_out_of_range_is_refused():
    from voxflip.engine.converters.world_to_singing import WorldToSingingConfig

    cfg = WorldToSingingConfig(wander=0.5)
    assert _sung_midi(1.234, cfg) == _sung_midi(1.234, cfg)
    assert _sung_midi(1.234, cfg, 64.0, 60.0) != _sung_midi(1.234, cfg, 65.0, 60.0)   # another note, another phase
    with pytest.raises(OptionError, match=r"wander=1.5 is outside 0..1"):
        WorldToSingingConfig(wander=1.5)

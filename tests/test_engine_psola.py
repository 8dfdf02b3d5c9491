"""TD-PSOLA: the input's own samples, re-timed and re-pitched; consonants pass through sample for sample."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import stream_in_blocks

from voxflip.engine.errors import ConfigError
from voxflip.engine.registry import make_converter
from voxflip.engine.vocoder.psola import PsolaConfig, PsolaSynth
from voxflip.streaming.streamer import Streamer

SR, HOP = 24_000, 120


def _one_note():
    from voxflip.engine.melody import Melody, Note

    return Melody((Note(0.0, 1.0, 60.0),), "one note")


def _render(x: np.ndarray, f0_in: np.ndarray, source: np.ndarray, covers: np.ndarray, f0_out: np.ndarray,
            pieces: int = 1, narrow_raised: bool = False, blend: bool = False, below_f0: float = 0.0,
            wide_lowered: bool = False, peak_marks: bool = False, dc_block_hz: float = 0.0) -> np.ndarray:
    """Feed the synthesiser in ``pieces`` installments (input, analysis and output frames alike)."""
    synth = PsolaSynth(PsolaConfig(SR, HOP, narrow_raised=narrow_raised, blend=blend, below_f0=below_f0,
                                   wide_lowered=wide_lowered, peak_marks=peak_marks, dc_block_hz=dc_block_hz))
    state = synth.init_state()
    synth.add_input(x, 0, state)
    synth.add_analysis(f0_in, 0, state)
    parts = []
    for idx in np.array_split(np.arange(len(source)), pieces):
        synth.add_output_frames(source[idx], covers[idx], f0_out[idx], state)
        parts.append(synth.render(state))
    parts.append(synth.render(state, final=True))
    return np.concatenate(parts)


def _pulses(f0: float, seconds: float, formant_hz: float = 700.0) -> np.ndarray:
    """A glottal-pulse train at ``f0`` through one resonance: a crude vowel."""
    n = int(seconds * SR)
    x = np.zeros(n)
    x[(np.arange(0, n, SR / f0)).astype(int)] = 1.0
    r, w = np.exp(-np.pi * 120.0 / SR), 2 * np.pi * formant_hz / SR
    y = np.zeros(n)
    for i in range(n):   # y[i] = x[i] + 2r cos(w) y[i-1] - r^2 y[i-2]
        y[i] = x[i] + 2 * r * np.cos(w) * (y[i - 1] if i else 0.0) - r * r * (y[i - 2] if i > 1 else 0.0)
    return y / np.abs(y).max() * 0.5


def _f0_of(y: np.ndarray) -> float:
    """F0 by the autocorrelation peak between 60 and 400 Hz."""
    y = y - y.mean()
    ac = np.correlate(y, y, "full")[y.shape[0] - 1:]
    lo, hi = SR // 400, SR // 60
    return SR / (lo + int(np.argmax(ac[lo:hi])))


def test_unvoiced_input_at_the_sung_pace_comes_out_sample_for_sample():
    x = np.random.default_rng(0).normal(0, 0.1, SR // 2)
    frames = x.shape[0] // HOP
    ident = np.arange(frames)
    y = _render(x, np.zeros(frames), ident, np.ones(frames, int), np.zeros(frames), pieces=7)
    assert y.shape[0] == frames * HOP
    np.testing.assert_allclose(y[: -HOP], x[: frames * HOP - HOP], atol=1e-12)


@pytest.mark.parametrize(("f0_out", "narrow", "wide"), [(150.0, False, False), (260.0, False, False),
                                                      (150.0, True, False), (260.0, True, False), (130.0, False, True)])
def test_voiced_grains_take_the_new_pitch_and_keep_the_formant(f0_out, narrow, wide):
    x = _pulses(200.0, 0.6)
    frames = x.shape[0] // HOP
    ident = np.arange(frames)
    y = _render(x, np.full(frames, 200.0), ident, np.ones(frames, int), np.full(frames, f0_out), pieces=5,
                narrow_raised=narrow, wide_lowered=wide)
    mid = slice(SR // 10, SR // 2)
    assert abs(12 * np.log2(_f0_of(y[mid]) / f0_out)) < 0.3
    # The resonance stays where it was (the grains carry the input's envelope): by linear prediction.
    assert abs(_formant_hz(y[mid]) - 700.0) < 60.0
    assert abs(_formant_hz(x[mid]) - 700.0) < 60.0


def test_wide_grains_even_out_the_dips_a_lowered_pitch_leaves():
    # A 600 Hz carrier marked as a 200 Hz voice: every grain (marks 120 samples apart, placed 200 apart
    # for 120 Hz) holds whole carrier periods of 40 samples, so the output is the carrier times the
    # sum of the grains' windows, which the RMS over one carrier period reads.
    t = np.arange(int(0.6 * SR)) / SR
    x = 0.5 * np.sin(2 * np.pi * 600.0 * t)
    frames = x.shape[0] // HOP
    ident = np.arange(frames)
    mid = slice(SR // 10, SR // 2)

    def dip(wide: bool) -> float:
        y = _render(x, np.full(frames, 200.0), ident, np.ones(frames, int), np.full(frames, 120.0), wide_lowered=wide)
        rms = np.sqrt(np.convolve(y[mid] ** 2, np.ones(40) / 40, "valid"))
        return float(rms.min() / rms.max())

    # Two-period Hann grains of the input's period, 1.67 of them apart: between marks the windows
    # sum to a few tenths of their peak; grains two output periods long sum to a constant.
    assert dip(False) < 0.3
    assert dip(True) > 0.8


def test_peak_marks_sit_on_the_pulses_and_lowering_gives_one_pulse_per_period():
    x = _pulses(200.0, 0.6)   # pulses every 120 samples from sample 0, each ringing through a 700 Hz resonance
    frames = x.shape[0] // HOP
    ident = np.arange(frames)

    def marks(peaks: bool) -> np.ndarray:
        synth = PsolaSynth(PsolaConfig(SR, HOP, peak_marks=peaks))
        state = synth.init_state()
        synth.add_input(x, 0, state)
        synth.add_analysis(np.full(frames, 200.0), 0, state)
        return np.array(state.marks[5:-5])

    # One period apart from where voicing began, the marks fall halfway between the pulses; on the
    # energy peaks, each sits on its pulse's ringing (one place in every period).
    assert set(marks(False) % 120) == {60}
    on_pulse = marks(True) % 120
    assert len(set(on_pulse)) == 1 and on_pulse[0] < 30

    def echo(peaks: bool) -> float:
        """The output's autocorrelation at the input's period: a second pulse in each output period."""
        y = _render(x, np.full(frames, 200.0), ident, np.ones(frames, int), np.full(frames, 130.0), peak_marks=peaks)
        mid = y[SR // 10: SR // 2] - y[SR // 10: SR // 2].mean()
        ac = np.correlate(mid, mid, "full")[mid.shape[0] - 1:]
        assert abs(12 * np.log2(_f0_of(y[SR // 10: SR // 2]) / 130.0)) < 0.3
        return float(ac[120] / ac[0])

    # Lowered to 130 Hz, grains centred between two pulses keep both in every output period.
    assert echo(False) > 0.15
    assert abs(echo(True)) < 0.05


@pytest.mark.parametrize("scale", [0.9, 1.1])
def test_formant_scale_moves_the_formant_and_keeps_the_pitch_and_level(scale):
    x = _pulses(200.0, 0.6)
    frames = x.shape[0] // HOP
    ident = np.arange(frames)
    mid = slice(SR // 10, SR // 2)

    def render(formant_scale: float) -> np.ndarray:
        synth = PsolaSynth(PsolaConfig(SR, HOP, formant_scale=formant_scale))
        state = synth.init_state()
        synth.add_input(x, 0, state)
        synth.add_analysis(np.full(frames, 200.0), 0, state)
        synth.add_output_frames(ident, np.ones(frames, int), np.full(frames, 150.0), state)
        return np.concatenate([synth.render(state), synth.render(state, final=True)])[mid]

    plain, scaled = render(1.0), render(scale)
    assert abs(12 * np.log2(_f0_of(scaled) / 150.0)) < 0.3
    moved = _formant_hz(scaled) / _formant_hz(plain)
    assert (moved < 0.97) if scale > 1 else (moved > 1.05)      # 700 Hz: to 666 at 1.1, to 780 at 0.9
    assert abs(20 * np.log10(np.std(scaled) / np.std(plain))) < 1.0


def test_formant_scale_outside_its_range_is_refused():
    with pytest.raises(ConfigError, match=r"psola.formant_scale=1.5 must be within 0.8..1.25"):
        PsolaConfig(formant_scale=1.5)


def _formant_hz(v: np.ndarray, order: int = 6) -> float:
    """The frequency of the sharpest pole of an LPC fit (autocorrelation method) below 2 kHz."""
    from scipy.linalg import solve_toeplitz

    w = v * np.hanning(v.shape[0])
    r = np.correlate(w, w, "full")[w.shape[0] - 1: w.shape[0] + order]
    a = solve_toeplitz(r[:order], r[1:order + 1])
    roots = np.roots(np.concatenate([[1.0], -a]))
    roots = roots[(np.imag(roots) > 0) & (np.angle(roots) * SR / (2 * np.pi) < 2000)]
    return float(np.angle(roots[np.argmax(np.abs(roots))]) * SR / (2 * np.pi))


def test_covering_several_frames_shortens_and_keeps_the_pitch():
    x = _pulses(220.0, 0.8)
    frames = x.shape[0] // HOP
    source = np.arange(0, frames - 3, 4)
    y = _render(x, np.full(frames, 220.0), source, np.full(source.shape[0], 4), np.full(source.shape[0], 220.0))
    assert y.shape[0] == source.shape[0] * HOP
    assert abs(12 * np.log2(_f0_of(y[HOP * 5: -HOP * 5]) / 220.0)) < 0.3


def test_the_output_does_not_depend_on_how_the_frames_arrive():
    x = _pulses(180.0, 0.5) + np.random.default_rng(1).normal(0, 0.01, int(0.5 * SR))
    frames = x.shape[0] // HOP
    f0_in = np.where(np.arange(frames) % 40 < 30, 180.0, 0.0)
    source = np.arange(0, frames - 1, 2)
    covers = np.full(source.shape[0], 2)
    f0_out = np.where(f0_in[source] > 0, 140.0, 0.0)
    whole = _render(x, f0_in, source, covers, f0_out, pieces=1)
    for pieces in (3, 17, len(source)):
        np.testing.assert_array_equal(_render(x, f0_in, source, covers, f0_out, pieces=pieces), whole)


def test_blended_grains_do_not_depend_on_how_the_frames_arrive_and_keep_the_pitch():
    x = _pulses(180.0, 0.5) + np.random.default_rng(1).normal(0, 0.01, int(0.5 * SR))
    frames = x.shape[0] // HOP
    f0_in = np.where(np.arange(frames) % 40 < 30, 180.0, 0.0)
    source = np.arange(3 * frames - 3) / 3.0                               # stretched three times over
    covers = np.full(source.shape[0], 1.0 / 3.0)
    f0_out = np.where(f0_in[source.astype(int)] > 0, 260.0, 0.0)
    whole = _render(x, f0_in, source, covers, f0_out, blend=True)
    for pieces in (3, 17, len(source)):
        np.testing.assert_array_equal(_render(x, f0_in, source, covers, f0_out, pieces=pieces, blend=True), whole)
    assert abs(12 * np.log2(_f0_of(whole[SR // 20: SR // 5]) / 260.0)) < 0.3


def test_a_vowel_stretched_with_blended_grains_changes_smoothly():
    """A swell stretched five times over: the nearest grain repeats and then jumps (a staircase in the
    period-by-period level); blended grains step a fifth as far each period."""
    x = _pulses(150.0, 0.6) * np.linspace(0.2, 1.0, int(0.6 * SR))
    frames = x.shape[0] // HOP
    source = np.arange(5 * frames - 5) / 5.0
    covers = np.full(source.shape[0], 0.2)
    f0_out = np.full(source.shape[0], 150.0)
    period = SR / 150.0
    steps = {}
    for blend in (False, True):
        y = _render(x, np.full(frames, 150.0), source, covers, f0_out, blend=blend)
        peaks = np.array([np.abs(y[int(k * period):int((k + 1) * period)]).max()
                          for k in range(20, int(y.shape[0] / period) - 20)])
        steps[blend] = np.abs(np.diff(peaks)).max()
    assert steps[True] < 0.5 * steps[False]


def _uneven_voice(f0: float, seconds: float) -> np.ndarray:
    """Pulses whose spacing and strength wander from period to period (jitter and shimmer, as a
    speaking voice has), through one resonance."""
    rng = np.random.default_rng(7)
    n = int(seconds * SR)
    x = np.zeros(n)
    t = 0.0
    while t < n:
        x[int(t)] = rng.uniform(0.4, 1.0)
        t += SR / f0 * rng.uniform(0.93, 1.07)
    r, w = np.exp(-np.pi * 120.0 / SR), 2 * np.pi * 700.0 / SR
    from scipy.signal import lfilter

    y = lfilter([1.0], [1.0, -2 * r * np.cos(w), r * r], x)
    return y / np.abs(y).max() * 0.5


def _band_db(y: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.shape[0]))) ** 2
    f = np.fft.rfftfreq(y.shape[0], 1.0 / SR)
    return 10 * np.log10(spectrum[(f >= lo) & (f < hi)].sum() + 1e-30)


def test_below_f0_takes_away_what_lies_under_the_new_pitch_and_keeps_the_voice():
    """An uneven voice at 120 Hz sung an octave up and three times slower: each grain is placed about
    six times, so the output repeats in groups and has energy under its new F0; ``below_f0`` removes
    it and leaves the fundamental and everything above as they were."""
    x = _uneven_voice(120.0, 0.8)
    frames = x.shape[0] // HOP
    source = np.arange(3 * frames - 3) / 3.0
    covers = np.full(source.shape[0], 1.0 / 3.0)
    f0_out = np.full(source.shape[0], 240.0)
    mid = slice(SR // 4, -SR // 4)
    off = _render(x, np.full(frames, 120.0), source, covers, f0_out, narrow_raised=True)[mid]
    on = _render(x, np.full(frames, 120.0), source, covers, f0_out, narrow_raised=True, below_f0=0.75)[mid]
    assert _band_db(off, 20.0, 150.0) - _band_db(off, 200.0, 6000.0) > -40.0   # there is something to take
    assert _band_db(on, 20.0, 150.0) < _band_db(off, 20.0, 150.0) - 12.0
    assert abs(_band_db(on, 220.0, 6000.0) - _band_db(off, 220.0, 6000.0)) < 0.3
    assert abs(12 * np.log2(_f0_of(on) / 240.0)) < 0.3


def test_below_f0_does_not_depend_on_how_the_frames_arrive():
    x = _uneven_voice(130.0, 0.5) + np.random.default_rng(1).normal(0, 0.01, int(0.5 * SR))
    frames = x.shape[0] // HOP
    f0_in = np.where(np.arange(frames) % 40 < 30, 130.0, 0.0)
    source = np.arange(2 * frames - 2) / 2.0
    covers = np.full(source.shape[0], 0.5)
    f0_out = np.where(f0_in[source.astype(int)] > 0, np.where(np.arange(source.shape[0]) < 100, 220.0, 330.0), 0.0)
    whole = _render(x, f0_in, source, covers, f0_out, below_f0=0.75)
    assert np.all(np.isfinite(whole))
    for pieces in (3, 17, len(source)):
        np.testing.assert_array_equal(_render(x, f0_in, source, covers, f0_out, pieces=pieces, below_f0=0.75), whole)


def test_below_f0_keeps_filtering_after_a_final_render():
    """A stream that renders to its end and is then given more frames goes on with the last cut-off."""
    x = _uneven_voice(130.0, 0.5)
    frames = x.shape[0] // HOP
    synth = PsolaSynth(PsolaConfig(SR, HOP, below_f0=0.75))
    state = synth.init_state()
    synth.add_input(x, 0, state)
    synth.add_analysis(np.full(frames, 130.0), 0, state)
    half = frames // 2
    synth.add_output_frames(np.arange(half, dtype=float), np.ones(half), np.full(half, 260.0), state)
    first = synth.render(state, final=True)
    synth.add_output_frames(np.arange(half, frames, dtype=float), np.ones(frames - half), np.full(frames - half, 260.0),
                            state)
    rest = synth.render(state, final=True)
    assert first.shape[0] == half * HOP and rest.shape[0] == (frames - half) * HOP
    assert np.all(np.isfinite(rest)) and np.abs(rest).max() > 0.01


@pytest.mark.parametrize("ratio", [-0.5, 0.05, 1.0, 2.0])
def test_below_f0_outside_its_range_is_refused_with_the_value(ratio):
    with pytest.raises(ConfigError, match=rf"below_f0={ratio!r} must be 0 \(off\) or within 0.1..0.95"):
        PsolaConfig(SR, HOP, below_f0=ratio)


def test_raised_grains_sum_to_an_offset_that_dc_block_takes_away_leaving_the_voice():
    """A voice at 120 Hz sung at 300 Hz: two and a half times as many windowed grains as the input had
    periods overlap, each with the mean of its piece of the pulse-and-resonance wave, and their sum
    sits off zero; ``dc_block_hz`` takes the offset away and leaves the voice (F0, and every band from
    70 Hz up) as it was."""
    x = _uneven_voice(120.0, 0.8)
    frames = x.shape[0] // HOP
    source = np.arange(2 * frames - 2) / 2.0
    covers = np.full(source.shape[0], 0.5)
    f0_out = np.full(source.shape[0], 300.0)
    mid = slice(SR // 2, -SR // 4)
    off = _render(x, np.full(frames, 120.0), source, covers, f0_out, narrow_raised=True)[mid]
    on = _render(x, np.full(frames, 120.0), source, covers, f0_out, narrow_raised=True, dc_block_hz=20.0)[mid]
    assert abs(off.mean()) > 0.05 * off.std()                   # the offset is there to take
    assert abs(on.mean()) < 0.005 * on.std()
    assert abs(_band_db(on, 70.0, 6000.0) - _band_db(off - off.mean(), 70.0, 6000.0)) < 0.2
    assert abs(12 * np.log2(_f0_of(on) / 300.0)) < 0.3


def test_dc_block_does_not_depend_on_how_the_frames_arrive():
    x = _uneven_voice(130.0, 0.5)
    frames = x.shape[0] // HOP
    source = np.arange(2 * frames - 2) / 2.0
    covers = np.full(source.shape[0], 0.5)
    f0_out = np.where(np.arange(source.shape[0]) < 100, 220.0, 330.0)
    whole = _render(x, np.full(frames, 130.0), source, covers, f0_out, dc_block_hz=20.0)
    for pieces in (3, 17, len(source)):
        np.testing.assert_array_equal(_render(x, np.full(frames, 130.0), source, covers, f0_out, pieces=pieces,
                                              dc_block_hz=20.0), whole)


@pytest.mark.parametrize("hz", [-1.0, 2.0, 100.0])
def test_dc_block_outside_its_range_is_refused_with_the_value(hz):
    with pytest.raises(ConfigError, match=rf"dc_block_hz={hz!r} must be 0 \(off\) or within 5..60 Hz"):
        PsolaConfig(SR, HOP, dc_block_hz=hz)


def test_the_psola_singers_take_the_offset_away_by_default(example_speech):
    """The bundled sentence sung an octave and more above its speaking pitch: without the fixed
    high-pass its song sits off zero; as shipped it does not."""
    from voxflip.engine.converters.psola_to_singing import SINGING_DC_BLOCK_HZ
    from voxflip.engine.melody import Melody, Note

    audio, rate = example_speech
    tune = Melody(tuple(Note(0.2 + 0.4 * k, 0.55 + 0.4 * k, 62.0 + (k % 3)) for k in range(6)), "test")
    shipped = make_converter("singing", "psola", melody=tune)
    assert shipped.dc_block_hz == SINGING_DC_BLOCK_HZ == 20.0
    plain = make_converter("singing", "psola", melody=tune)
    plain.dc_block_hz = 0.0
    out_on = stream_in_blocks(Streamer(shipped), audio, 4096)
    out_off = stream_in_blocks(Streamer(plain), audio, 4096)
    assert abs(out_off.mean()) > 10 * abs(out_on.mean())
    assert abs(out_on.mean()) < 0.002 * out_on.std()


def test_psola_tsm_passes_consonants_through_unchanged():
    """A fricative between held vowels comes out of psola-tsm as the same samples, only earlier."""
    rng = np.random.default_rng(2)
    vowel = _pulses(220.0, 0.9)
    fricative = rng.normal(0, 0.05, int(0.12 * SR))
    x = np.concatenate([np.zeros(SR // 10), vowel, fricative, vowel, np.zeros(SR // 10)]).astype(np.float32)
    out = stream_in_blocks(Streamer(make_converter("speech", "psola-tsm")), x, 4096)
    assert out.shape[0] < 0.8 * x.shape[0], "the held vowels were not shortened"
    core = fricative[len(fricative) // 4: 3 * len(fricative) // 4].astype(np.float32)
    # Find the fricative's core in the output: it must be there sample for sample.
    corr = np.correlate(out, core, "valid")
    at = int(np.argmax(corr))
    np.testing.assert_allclose(out[at:at + core.shape[0]], core, atol=1e-6)


@pytest.mark.parametrize("method", ["psola-nodur", "psola-tsm"])
def test_the_output_does_not_depend_on_the_chunk_size(short_voice, method):
    """Stronger than block-size invariance: the grains wait for the analysis, not for the chunk."""
    reference = stream_in_blocks(Streamer(make_converter("speech", method, chunk_ms=20)), short_voice, 10**9)
    for chunk_ms in (5, 10, 40, 100):   # 100 ms: the offline default (registry: _PSOLA)
        out = stream_in_blocks(Streamer(make_converter("speech", method, chunk_ms=chunk_ms)), short_voice, 10**9)
        np.testing.assert_array_equal(out, reference, err_msg=f"{method} at {chunk_ms} ms chunks")


def test_input_is_held_in_a_buffer_that_grows_by_doubling():
    """Holding a whole speech (psola to singing) must not copy it on every chunk: the buffer grows
    geometrically, so 2000 chunks cost a handful of reallocations, and what it holds is the input."""
    synth = PsolaSynth(PsolaConfig(SR, HOP))
    state = synth.init_state()
    x = np.random.default_rng(5).normal(0, 0.1, 2000 * 480)
    capacities = set()
    for k in range(2000):
        synth.add_input(x[k * 480 - (40 if k else 0):(k + 1) * 480], k * 480 - (40 if k else 0), state)
        capacities.add(state.buffer.shape[0])
    assert state.held == x.shape[0] and state.buffer.shape[0] < 2 * x.shape[0] + 4096
    assert len(capacities) <= 12
    np.testing.assert_array_equal(state.buffer[state.offset:state.offset + state.held], x)


def test_psola_singing_does_not_depend_on_the_chunk_size(short_voice):
    """What lets an offline render of psola take 100 ms chunks (a fifth of the calls) with the same samples."""
    from voxflip.engine.melody import Melody, Note

    tune = Melody(tuple(Note(0.1 + 0.3 * k, 0.35 + 0.3 * k, 60.0 + 2 * k) for k in range(5)), "test")
    outputs = [stream_in_blocks(Streamer(make_converter("singing", "psola", melody=tune, chunk_ms=chunk_ms)),
                                short_voice, 10**9) for chunk_ms in (10, 20, 100)]
    for out in outputs[1:]:
        np.testing.assert_array_equal(out, outputs[0])


@pytest.mark.parametrize("method", ["psola-tsm", "psola-nodur"])
def test_a_long_stream_holds_only_the_input_its_grains_can_still_use(method):
    """Singing -> speech never goes back in the input: once every output frame given is rendered,
    the input before the latest source is dropped, and the buffer is reused instead of doubling
    while what it holds moves on (a 30-minute file held 693 MB, then 524 MB; now 105 MB)."""
    rate = 16_000
    t = np.arange(60 * rate) / rate
    x = (0.1 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)).astype(np.float32)
    streamer = Streamer(make_converter("speech", method), rate)
    sizes = []
    for i in range(0, x.shape[0], 16_384):
        streamer.process(x[i:i + 16_384])
        sizes.append(streamer.state.psola.buffer.shape[0])
    # a 1 s chunk and its context, doubled: about 2 s at 24 kHz, however long the stream (it was the stream, doubled)
    assert max(sizes) < 4 * 24_000, f"the input buffer grew to {max(sizes)} samples (4 s at 24 kHz)"
    assert sizes[-1] == max(sizes[: len(sizes) // 4])
    assert streamer.state.psola.held < 2 * 24_000


@pytest.mark.parametrize("to, method, envelope", [("speech", "psola-tsm", True), ("speech", "psola-nodur", False),
                                                  ("singing", "psola", False)])
def test_the_psola_converters_skip_only_the_analysis_they_never_read(example_speech, to, method, envelope):
    """CheapTrick and D4C are most of the analysis: a PSOLA converter runs only what it reads (no
    aperiodicity; the envelope only where the timing shortens), and its output is the same, sample for
    sample, as with the whole analysis."""
    from dataclasses import replace

    from voxflip.engine.features.world import WorldAnalyzer
    from voxflip.engine.melody import Melody, Note

    audio, rate = example_speech
    options = {"melody": Melody(tuple(Note(0.2 + 0.4 * k, 0.55 + 0.4 * k, 57.0 + k) for k in range(6)), "t")} \
        if to == "singing" else {}
    lean = make_converter(to, method, **options)
    assert (lean.analysis.envelope, lean.analysis.aperiodicity) == (envelope, False)
    whole = make_converter(to, method, **options)
    whole.analyzer = WorldAnalyzer(replace(whole.analysis, envelope=True, aperiodicity=True))
    np.testing.assert_array_equal(stream_in_blocks(Streamer(lean, rate), audio, 4096),
                                  stream_in_blocks(Streamer(whole, rate), audio, 4096))


def test_octaves_down_brings_a_melody_within_reach_of_the_voice_and_never_raises_one():
    from voxflip.engine.converters.psola_to_singing import octaves_down
    from voxflip.engine.melody import Melody, Note

    def melody(midi: float) -> Melody:
        return Melody((Note(0, 1, midi - 2), Note(1, 2, midi), Note(2, 3, midi + 2)), "m")

    speech = np.array([0.0, 110.0, 110.0, 0.0])            # MIDI 45
    assert octaves_down(melody(58.0), speech) == 0         # 13 semitones above: as written
    assert octaves_down(melody(64.0), speech) == 1         # 19 above: an octave down, 7 above
    assert octaves_down(melody(80.0), speech) == 2         # 35 above: two octaves down
    assert octaves_down(melody(30.0), speech) == 0         # below the voice: never raised
    assert octaves_down(melody(80.0), np.zeros(4)) == 0    # nothing voiced: nothing to fit


def test_psola_sings_the_bundled_tune_an_octave_down_for_the_bundled_speaker_unless_told_to_keep_it(example_speech):
    from importlib.resources import files

    from voxflip.engine.melody_audio import f0_contour

    audio, rate = example_speech
    tune = str(files("voxflip") / "data" / "tune.mid")
    medians, stats = {}, {}
    for octave in ("auto", "keep"):
        converter = make_converter("singing", "psola", melody=tune, melody_octave=octave)
        streamer = Streamer(converter, rate)
        song = stream_in_blocks(streamer, audio, 4096)
        report = converter.report(streamer.state)
        stats[octave] = (report.stats["octaves_down"], any("octave(s) lower" in w for w in report.warnings))
        _, f0 = f0_contour(song, rate)
        medians[octave] = float(np.median(f0[f0 > 0]))
    assert stats == {"auto": (1.0, True), "keep": (0.0, False)}
    assert medians["auto"] / medians["keep"] == pytest.approx(0.5, rel=0.06)


def test_the_octave_option_is_psolas_alone():
    from voxflip.engine.errors import OptionError

    with pytest.raises(OptionError, match="melody_octave='keep' applies to psola only"):
        make_converter("singing", "world", melody=_one_note(), melody_octave="keep")
    with pytest.raises(OptionError, match="melody_octave='down' is not one of auto, keep"):
        make_converter("singing", "psola", melody=_one_note(), melody_octave="down")

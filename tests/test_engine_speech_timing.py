"""Speech timing (world-tsm): held vowels and long pauses are time-scaled, every consonant frame is kept as it was."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import VOWELS, vowel_envelope

from voxflip.engine.converters.speech_timing import PAUSE, STEADY, TRANSIENT, SpeechTiming, SpeechTimingConfig
from voxflip.engine.errors import ConfigError
from voxflip.engine.features.world import Frames

FRAME_S = 0.005
BINS = 513


def _frames(plan: list[tuple[str, float]], seed: int = 0) -> tuple[Frames, np.ndarray]:
    """Frames for ``(kind, seconds)``: a vowel name (voiced, steady), "a>i" (a voiced glide),
    "s" (a loud fricative, every frame different), "-" (near silence). Also returns each frame's kind."""
    rng = np.random.default_rng(seed)
    f0, sp, ap, level, kinds = [], [], [], [], []
    for kind, seconds in plan:
        n = round(seconds / FRAME_S)
        for k in range(n):
            if kind == "-":
                f0.append(0.0)
                sp.append(np.full(BINS, 1e-12) * (1.0 + 0.1 * rng.random(BINS)))
                ap.append(np.ones(BINS))
                level.append(-80.0)
            elif kind == "s":
                f0.append(0.0)
                sp.append(vowel_envelope([4000 + 100 * k], [1500]) * (0.5 + rng.random(BINS)))
                ap.append(np.ones(BINS))
                level.append(-25.0)
            elif kind == "a>i":
                w = k / max(1, n - 1)
                a, i = vowel_envelope(*VOWELS["a"]), vowel_envelope(*VOWELS["i"])
                f0.append(200.0)
                sp.append(np.exp((1 - w) * np.log(a) + w * np.log(i)))
                ap.append(np.full(BINS, 0.05))
                level.append(-12.0)
            else:
                f0.append(200.0 * (1.0 + 0.02 * np.sin(2 * np.pi * 5.5 * k * FRAME_S)))   # vibrato
                sp.append(vowel_envelope(*VOWELS[kind]) * (1.0 + 0.05 * rng.random(BINS)))
                ap.append(np.full(BINS, 0.05))
                level.append(-10.0)
            kinds.append(kind)
    frames = Frames(np.array(f0), np.where(np.array(f0) > 0, 0.9, 0.1), np.array(level), np.array(sp), np.array(ap))
    return frames, np.array(kinds)


PLAN = [("-", 0.1), ("s", 0.08), ("a", 0.8), ("a>i", 0.06), ("i", 0.5), ("s", 0.1), ("-", 0.6), ("s", 0.05),
        ("u", 0.3), ("-", 0.1)]


def _run(timing: SpeechTiming, frames: Frames, chunk: int):
    state = timing.init_state()
    parts = []
    n = len(frames)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        parts.append(timing.push(frames.slice(start, stop), start, state, end_index=n if stop == n else None))
    parts.append(timing.flush(state, BINS))
    out = Frames.concat([p.frames for p in parts], BINS)
    return out, np.concatenate([p.source for p in parts]), np.concatenate([p.covers for p in parts]), \
        np.concatenate([p.kinds for p in parts]), state


@pytest.fixture(scope="module")
def timing() -> SpeechTiming:
    return SpeechTiming(SpeechTimingConfig(), FRAME_S, 24_000, 1024)


def test_consonant_and_transition_frames_come_out_unchanged(timing):
    frames, kinds = _frames(PLAN)
    out, source, covers, out_kinds, _ = _run(timing, frames, 4)
    single = covers == 1
    # Every frame that stands for one input frame is that input frame, bit for bit.
    for j in np.flatnonzero(single):
        i = source[j]
        assert np.array_equal(out.sp[j], frames.sp[i]) and np.array_equal(out.ap[j], frames.ap[i])
        assert out.f0_hz[j] == frames.f0_hz[i] and out.level_db[j] == frames.level_db[i]
    # ... and every fricative frame is among them, once and in order; so is the glide, but for its
    # first frames, where the envelope 20 ms either side has not yet moved by steady_db.
    kept = source[single]
    assert np.isin(np.flatnonzero(kinds == "s"), kept).all(), "fricative frames were time-scaled or dropped"
    glide = np.flatnonzero(kinds == "a>i")
    assert np.isin(glide[3:], kept).all(), "the glide was time-scaled"
    assert np.all(np.diff(source) > 0), "output frames must follow the input order"
    assert not np.any(out_kinds[single & np.isin(source, np.flatnonzero(kinds == "s"))] == STEADY)


def test_held_vowels_are_time_scaled_and_long_pauses_cut(timing):
    frames, kinds = _frames(PLAN)
    out, source, covers, out_kinds, state = _run(timing, frames, 4)
    cfg = timing.config
    a = np.flatnonzero(kinds == "a")
    in_a = (source >= a[0]) & (source <= a[-1])
    # 0.8 s of steady /a/: the keep as sung, the rest at the vowel rate, plus what the ease adds (the area
    # under its ramp; edges judged transient).
    keep, ease = cfg.vowel_keep_ms / 1000, cfg.vowel_ease_ms / 1000
    expected = keep + (0.8 - keep) * cfg.vowel_rate + (1 - cfg.vowel_rate) * ease / 2
    # every /a/ frame is covered, and at most the glide's first three frames (still steady) join its last bin
    assert len(a) <= covers[in_a].sum() <= len(a) + 3
    assert abs(in_a.sum() * FRAME_S - expected) < 0.04
    # The compressed frames are means of the frames they cover (log envelope).
    j = np.flatnonzero(in_a & (covers > 1))[0]
    i0, n = source[j], covers[j]
    mean = np.exp(np.log(frames.sp[i0:i0 + n]).mean(axis=0))
    np.testing.assert_allclose(out.sp[j], mean, rtol=1e-9)
    # The 0.6 s pause keeps 0.15 s; the 0.1 s ones are kept whole.
    pause = np.flatnonzero(kinds == "-")
    long_pause = pause[(pause > a[-1])][: round(0.6 / FRAME_S)]
    assert np.isin(source, long_pause).sum() == round(cfg.pause_keep_ms / 1000 / FRAME_S)
    assert state.dropped == round((0.6 - cfg.pause_keep_ms / 1000) / FRAME_S)
    assert np.isin(source, pause[:20]).sum() == 20
    assert state.counts[PAUSE] > 0 and state.counts[TRANSIENT] > 0 and state.counts[STEADY] > 0


def test_an_eased_rate_shortens_long_vowels_like_the_plain_one_and_short_ones_less():
    keep, ease, rate = 0.08, 0.12, 0.15
    eased = SpeechTiming(SpeechTimingConfig(vowel_keep_ms=keep * 1000, vowel_ease_ms=ease * 1000, vowel_rate=rate),
                         FRAME_S, 24_000, 1024)
    plain = SpeechTiming(SpeechTimingConfig(vowel_keep_ms=keep * 1000, vowel_ease_ms=0.0, vowel_rate=rate), FRAME_S, 24_000,
                         1024)
    # The rate: 1 through the keep, then falling linearly to the plain rate by the end of the ease.
    rates = [eased.vowel_rate(run) for run in range(1, 60)]
    k, e = round(keep / FRAME_S), round(ease / FRAME_S)
    assert rates[:k] == [1.0] * k and rates[k + e - 1:] == [rate] * (59 - k - e + 1)
    assert all(a > b for a, b in zip(rates[k - 1:k + e - 1], rates[k:k + e], strict=True))

    def vowel_out_s(timing: SpeechTiming, seconds: float) -> float:
        frames, kinds = _frames([("-", 0.1), ("s", 0.08), ("a", seconds), ("s", 0.08), ("-", 0.1)])
        _, source, covers, _, _ = _run(timing, frames, 4)
        a = np.flatnonzero(kinds == "a")
        inside = (source >= a[0]) & (source <= a[-1])
        assert covers[inside].sum() == len(a)
        return inside.sum() * FRAME_S

    # A held note: the ease adds the area under the ramp, (1 - rate) * ease / 2 (edges judged transient).
    assert abs(vowel_out_s(eased, 1.0) - vowel_out_s(plain, 1.0) - (1 - rate) * ease / 2) < 0.015
    # A vowel a little longer than a spoken one: the plain rate takes most of what passes the keep.
    assert vowel_out_s(plain, 0.2) < 0.15 < vowel_out_s(eased, 0.2) < 0.2


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 10_000])
def test_the_output_does_not_depend_on_how_the_frames_arrive(timing, chunk):
    frames, _ = _frames(PLAN, seed=3)
    reference = _run(timing, frames, 10_000)
    out = _run(timing, frames, chunk)
    for got, want in zip(out[:4], reference[:4], strict=True):
        if isinstance(got, Frames):
            np.testing.assert_array_equal(got.sp, want.sp)
            np.testing.assert_array_equal(got.f0_hz, want.f0_hz)
        else:
            np.testing.assert_array_equal(got, want)


def test_a_rate_of_one_keeps_every_frame_that_is_not_a_long_pause():
    timing = SpeechTiming(SpeechTimingConfig(vowel_rate=1.0, pause_keep_ms=10_000), FRAME_S, 24_000, 1024)
    frames, _ = _frames(PLAN)
    out, source, covers, _, _ = _run(timing, frames, 5)
    assert len(out) == len(frames) and np.array_equal(source, np.arange(len(frames)))
    np.testing.assert_array_equal(out.sp, frames.sp)


@pytest.mark.parametrize(("field", "value"), [("vowel_rate", 0.0), ("vowel_rate", 1.5), ("steady_db", 0.0),
                                             ("pause_keep_ms", -1.0), ("envelope_order", 1),
                                             ("vowel_ease_ms", -5.0)])
def test_bad_settings_name_the_setting(field, value):
    with pytest.raises(ConfigError, match=field):
        SpeechTimingConfig(**{field: value})


def test_the_pitch_source_is_checked():
    from voxflip.engine.converters.world_speech_timing import WorldSpeechTimingConfig

    with pytest.raises(ConfigError, match=r"pitch='hummed' is not one of speech, sung, sung-shifted"):
        WorldSpeechTimingConfig(pitch="hummed")

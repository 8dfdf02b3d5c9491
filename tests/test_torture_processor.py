"""pluginval-style checks of the processors: any block size, any rate, parameters moving while it streams.

A host may call an effect with blocks of 1 to 8192 samples at 8 to 192 kHz, change its
parameters between any two blocks, and feed it silence, noise or a voice. Whatever it does,
each block must come back finite and exactly as long as it went in (the live chain), and an
offline stream must give the same number of samples for any blocking (time-preserving
converters: exactly the input's). Hypothesis draws the blockings, rates, levels and the
automation; the default run is derandomized (CI sees the same cases every time), ``-m slow``
draws many more.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxflip.engine.converters.base import Converter
from voxflip.engine.direction import Direction
from voxflip.engine.errors import ConfigError
from voxflip.engine.melody import Melody, Note
from voxflip.engine.params import ParamChange
from voxflip.engine.registry import converters, live_default_converter, make_converter
from voxflip.streaming.live_control import LiveController
from voxflip.streaming.presets import bundled_presets
from voxflip.streaming.streamer import Streamer

RATES = [8_000, 11_025, 16_000, 22_050, 44_100, 48_000, 96_000, 192_000]
SPEECH = [spec.name for spec in converters(Direction.TO_SPEECH) if not spec.missing() and spec.ships_model()]
SINGING = [spec.name for spec in converters(Direction.TO_SINGING) if not spec.missing() and spec.ships_model()]
TUNE = Melody(tuple(Note(0.12 * i, 0.12 * i + 0.1, 57.0 + 2 * (i % 5), 90) for i in range(12)), "fuzz tune")


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


FAST = _settings(6)
LONG = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@functools.cache
def _converter(direction: str, name: str, live: bool) -> Converter:
    if direction == "singing":
        options = {"live_notes": True} if live else {"melody": TUNE}
        return make_converter(direction, name, **options)
    return make_converter(direction, name)


def _signal(n: int, rate: int, kind: str, level: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    if kind == "silence":
        x = np.zeros(n)
    elif kind == "noise":
        x = rng.standard_normal(n) * 0.3
    else:   # a voiced buzz with a glide: 180 -> 260 Hz, harmonics to the top of the band
        f0 = 180.0 + 80.0 * t / max(t[-1], 1e-9) if n else t
        phase = 2 * np.pi * np.cumsum(f0) / rate
        x = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.2
    return (level * x).astype(np.float32)


blockings = st.lists(st.one_of(st.integers(1, 64), st.integers(65, 8192)), min_size=1, max_size=10)
kinds = st.sampled_from(["voice", "voice", "noise", "silence"])
levels = st.sampled_from([1.0, 0.5, 1e-3, 3.0])

change = st.one_of(
    st.builds(lambda v: ParamChange("mix", v), st.floats(0.0, 1.0)),
    st.builds(lambda v: ParamChange("gain", v), st.floats(-60.0, 24.0)),
    st.builds(lambda v: ParamChange("transpose", v), st.floats(-24.0, 24.0)),
    st.builds(lambda n, v: ParamChange("note", (n, v)), st.integers(0, 127), st.floats(0.0, 1.0)),
    st.builds(lambda v: ParamChange("duration", v), st.floats(0.0, 1.0)),
    st.builds(lambda v: ParamChange("mode", v), st.sampled_from(["speech", "singing", "bypass"])),
    st.builds(lambda v: ParamChange("preset", v), st.sampled_from(sorted(bundled_presets()))),
    st.builds(lambda p, v: ParamChange("fx", (p, "gain_db", v)), st.sampled_from(["level", "nothing"]),
              st.floats(-24.0, 12.0)),
)


def _run_live(speech: str, rate: int, blocks: list[int], changes: list[ParamChange | None], kind: str,
              level: float) -> None:
    controller = LiveController({"speech": _converter("speech", speech, True),
                                 "singing": _converter("singing", live_default_converter("singing").name, True)},
                                "speech", rate)
    x = _signal(sum(blocks), rate, kind, level, seed=len(blocks))
    at = 0
    for size, move in zip(blocks, changes, strict=True):
        if move is not None:
            try:
                controller.apply(move)
            except ConfigError as exc:    # refused with one line; the stream goes on
                assert "\n" not in str(exc)
        block = x[at:at + size]
        at += size
        y = controller.realtime.process(block)
        assert y.shape == block.shape, f"{size} samples in, {y.shape[0]} out"
        assert y.dtype == np.float32
        assert np.isfinite(y).all(), f"non-finite output after {move}"


def _run_offline(direction: str, name: str, rate: int, blocks: list[int], kind: str, level: float) -> None:
    converter = _converter(direction, name, False)
    x = _signal(max(sum(blocks), rate // 5), rate, kind, level, seed=3)
    streamer = Streamer(converter, rate, rate)
    outs, at = [], 0
    for size in blocks:
        outs.append(streamer.process(x[at:at + size]))
        at += size
    outs.append(streamer.process(x[at:]))
    outs.append(streamer.flush())
    y = np.concatenate(outs)
    assert np.isfinite(y).all()
    if converter.time_preserving:
        assert y.shape[0] == x.shape[0]
    else:   # the same length as one block at once
        whole = Streamer(converter, rate, rate)
        reference = np.concatenate([whole.process(x), whole.flush()])
        assert y.shape[0] == reference.shape[0]


@pytest.mark.parametrize("speech", SPEECH)
def test_live_chain_any_block_any_rate_with_automation(speech: str) -> None:
    @FAST
    @given(rate=st.sampled_from(RATES), blocks=blockings, data=st.data(), kind=kinds, level=levels)
    def run(rate: int, blocks: list[int], data: st.DataObject, kind: str, level: float) -> None:
        changes = data.draw(st.lists(st.one_of(st.none(), change), min_size=len(blocks), max_size=len(blocks)))
        _run_live(speech, rate, blocks, changes, kind, level)

    run()


@pytest.mark.parametrize(("direction", "name"), [("speech", n) for n in SPEECH] + [("singing", n) for n in SINGING])
def test_offline_stream_length_for_any_blocking(direction: str, name: str) -> None:
    @FAST
    @given(rate=st.sampled_from(RATES), blocks=blockings, kind=kinds, level=levels)
    def run(rate: int, blocks: list[int], kind: str, level: float) -> None:
        _run_offline(direction, name, rate, blocks, kind, level)

    run()


@pytest.mark.slow
@pytest.mark.parametrize("speech", SPEECH)
def test_live_chain_automation_long(speech: str) -> None:
    @LONG
    @given(rate=st.sampled_from(RATES), blocks=blockings, data=st.data(), kind=kinds, level=levels)
    def run(rate: int, blocks: list[int], data: st.DataObject, kind: str, level: float) -> None:
        changes = data.draw(st.lists(st.one_of(st.none(), change), min_size=len(blocks), max_size=len(blocks)))
        _run_live(speech, rate, blocks, changes, kind, level)

    run()

"""The declared algorithmic latency of the live converters, at 48 kHz (issue 16's budget).

These are declared figures, computed from the analysis windows, the chunk and the resamplers (no
timing is measured here); tests/test_streaming_jack.py checks that a click through ``voxflip live``
comes out exactly that late.
"""

from __future__ import annotations

from importlib.resources import files

import pytest

from voxflip.engine.registry import make_converter
from voxflip.streaming.streamer import Streamer

RATE = 48_000
TUNE = {"melody": str(files("voxflip") / "data" / "tune.csv")}


def _latency_ms(to: str, method: str, **options) -> float:
    extra = TUNE if to == "singing" else {}
    return 1000.0 * Streamer(make_converter(to, method, **extra, **options), RATE, RATE).latency_samples / RATE


@pytest.mark.parametrize(("to", "method"), [("speech", "world-nodur"), ("singing", "world")])
def test_world_converters_declare_at_most_25_ms_for_voices_above_100_hz(to, method):
    assert _latency_ms(to, method, voice_floor_hz=100.0, chunk_ms=5) == pytest.approx(24.98, abs=0.02)


@pytest.mark.parametrize(("to", "method"), [("speech", "world-nodur"), ("singing", "world")])
def test_the_default_windows_declare_less_than_before(to, method):
    # 10 ms chunk + 21.8 ms past it (the envelope's 21.25 ms, or a frame plus the F0 window's 16.75 ms,
    # for the tidy step) + 2.65 ms of resampling (the polyphase filters; pedalboard's took 4 ms); it
    # was 40.3 ms while the tidy step waited a whole frame
    assert _latency_ms(to, method, chunk_ms=10) == pytest.approx(34.44, abs=0.05)
    assert _latency_ms(to, method, chunk_ms=5) == pytest.approx(29.44, abs=0.05)


def test_a_voice_floor_shortens_the_psola_converters_too():
    assert _latency_ms("speech", "psola-nodur", chunk_ms=10) == pytest.approx(64.44, abs=0.05)
    assert _latency_ms("speech", "psola-nodur", chunk_ms=5, voice_floor_hz=100.0) == pytest.approx(44.98, abs=0.05)


@pytest.mark.parametrize("method", ["flow-nodur", "flow-dur"])
def test_the_shipped_flow_model_declares_at_most_30_ms_live(method):
    # 10 ms chunk + 14.4 ms past it (half the 70 Hz F0 tracker's 29 ms window; the model looks no frame
    # ahead and reads 25 ms mel windows) + 4.0 ms of resampling to 16 kHz and back; it was 64.1 ms
    # with the model that looked two frames ahead through 40 ms windows, at 20 ms chunks
    from voxflip.engine.converters.flow_to_speech import flow_chunk_grid

    assert _latency_ms("speech", method, chunk_ms=flow_chunk_grid().live_ms) == pytest.approx(28.44, abs=0.05)

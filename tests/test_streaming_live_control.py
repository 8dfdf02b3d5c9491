"""LiveController: every run-time parameter changes what it should, and bad ones change nothing."""

from __future__ import annotations

import numpy as np
import pytest

from voxflip.engine.errors import ConfigError
from voxflip.engine.params import ParamChange
from voxflip.engine.registry import make_converter
from voxflip.streaming.live_control import LiveController

RATE = 16_000


def controller(mode="speech", preset=None, method="world-dur") -> LiveController:
    speech = make_converter("speech", method, chunk_ms=10)
    singing = make_converter("singing", live_notes=True, chunk_ms=10)
    return LiveController({"speech": speech, "singing": singing}, mode, RATE, preset=preset)


def run(ctl: LiveController, audio: np.ndarray, changes_at: dict[int, list[ParamChange]] | None = None) -> np.ndarray:
    out = []
    for k, i in enumerate(range(0, audio.shape[0] - 159, 160)):
        for change in (changes_at or {}).get(k, []):
            ctl.apply(change)
        out.append(ctl.realtime.process(audio[i : i + 160]))
    return np.concatenate(out)


@pytest.fixture(scope="module")
def speech(example_speech):
    return example_speech[0][: 2 * RATE]


def test_bypass_gives_the_input_delayed_by_the_declared_latency(speech):
    ctl = controller()
    out = run(ctl, speech, {0: [ParamChange("mode", "bypass")]})
    lat = ctl.realtime.latency_samples
    settled = slice(lat + 2000, None)  # after the 20 ms crossfade
    assert np.allclose(out[settled], speech[: out.shape[0] - lat][2000:], atol=1e-6)


def test_switching_mode_keeps_the_timing(speech):
    ctl = controller(method="world-nodur")
    out = run(ctl, speech, {50: [ParamChange("mode", "singing")], 100: [ParamChange("mode", "speech")]})
    assert out.shape[0] == (speech.shape[0] // 160) * 160
    assert ctl.realtime.gap_samples == 0 and ctl.realtime.dropped_samples == 0
    assert ctl.mode == "speech"


def test_notes_reach_the_singing_converter_and_transpose_sticks_across_a_swap(speech):
    ctl = controller(mode="singing")
    run(ctl, speech[:1600], {0: [ParamChange("note", (60, 1.0))], 2: [ParamChange("transpose", 2.0)]})
    state = ctl.chain.streamer.state.custom
    assert state.midi == 60.0 and state.transpose_semitones == 2.0
    ctl.apply(ParamChange("mode", "speech"))
    ctl.apply(ParamChange("mode", "singing"))
    run(ctl, speech[:800])
    assert ctl.chain.streamer.state.custom.transpose_semitones == 2.0


def test_duration_goes_to_world_dur_and_mix_gain_to_the_realtime_stage(speech):
    ctl = controller()
    run(ctl, speech[:800], {0: [ParamChange("duration", 0.25), ParamChange("mix", 0.5), ParamChange("gain", -6.0)]})
    assert ctl.chain.streamer.state.custom.duration == 0.25
    assert ctl.realtime.mix == 0.5 and ctl.realtime.gain_db == pytest.approx(-6.0)


def test_presets_and_fx_parameters(speech):
    ctl = controller(preset="hall")
    run(ctl, speech[:800])
    plugin = ctl.chain.effects["verb"]
    ctl.apply(ParamChange("fx", ("verb", "wet_level", 0.1)))
    assert plugin.wet_level == pytest.approx(0.1, abs=1e-3)
    ctl.apply(ParamChange("preset", "radio"))
    assert ctl.preset == "radio"
    run(ctl, speech[:800])


@pytest.mark.parametrize(
    "change, match",
    [
        (ParamChange("mode", "shout"), "not one of"),
        (ParamChange("mix", 3.0), "outside 0..1"),
        (ParamChange("preset", "nope"), "not a bundled preset"),
        (ParamChange("fx", ("nothere", "x", 1.0)), "nothere"),
        (ParamChange("volume", 1.0), "unknown parameter"),
    ],
)
def test_bad_changes_raise_and_change_nothing(speech, change, match):
    ctl = controller(preset="hall")
    run(ctl, speech[:800])
    before = (ctl.mode, ctl.preset, ctl.realtime.mix, ctl.chain)
    with pytest.raises((ConfigError, ValueError), match=match):
        ctl.apply(change)
    assert (ctl.mode, ctl.preset, ctl.realtime.mix, ctl.chain) == before

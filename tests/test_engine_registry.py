"""The converter registry: one entry per converter, and everything else reads it.

Each spec's declared facts (direction, rate, timing, chunk grid, options, run-time
parameters, what it needs installed) are checked against the converter it builds; option
errors name the option as the API spells it, and the CLI rewords them with its flags.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from voxflip.cli import FLAG_OF_OPTION, error_message, main
from voxflip.engine.backends.runtime import conflict_warning
from voxflip.engine.errors import MissingDependencyError, OptionError
from voxflip.engine.registry import (
    CONVERTERS,
    Direction,
    default_converter,
    get_converter,
    live_default_converter,
    make_converter,
    names,
    spec_of,
)

ROOT = Path(__file__).resolve().parents[1]
TUNE = ROOT / "voxflip" / "data" / "tune.mid"


def _build(spec, **options):
    if spec.missing() or not spec.ships_model():
        pytest.skip(f"{spec.name} needs what this checkout lacks")
    if spec.direction is Direction.TO_SINGING and "live_notes" not in options:
        options.setdefault("melody", TUNE)
    return make_converter(spec.direction, spec.name, **options)


@pytest.mark.parametrize("spec", CONVERTERS, ids=lambda s: s.name)
def test_each_converter_is_what_its_spec_declares(spec):
    converter = _build(spec)
    assert converter.name == spec.name and spec_of(converter) is spec
    assert converter.sample_rate == spec.sample_rate
    assert converter.time_preserving == spec.time_preserving
    assert converter.chunk_samples == spec.grid.default_frames * spec.grid.hop_samples
    assert converter.chunk_samples == round(spec.grid.default_frames * spec.grid.hop_ms * spec.sample_rate / 1000)


@pytest.mark.parametrize("spec", CONVERTERS, ids=lambda s: s.name)
def test_the_chunk_changes_unit_in_one_place(spec):
    hop = spec.grid.hop_ms
    converter = _build(spec, chunk_ms=3 * hop)
    assert converter.chunk_samples == 3 * spec.grid.hop_samples
    for bad in (0.0, -hop, 1.5 * hop, 1e9, spec.grid.max_ms + hop):
        with pytest.raises(OptionError, match=r"^chunk_ms=.* must be a multiple of the"):
            _build(spec, chunk_ms=bad)


@pytest.mark.parametrize("spec", CONVERTERS, ids=lambda s: s.name)
def test_run_time_parameters_are_exactly_the_declared_ones(spec):
    converter = _build(spec, **({"live_notes": True} if "note" in spec.params else {}))
    valid = {"transpose": 2.0, "duration": 0.5, "note": (60, 1.0)}
    state = converter.init_state()
    for name in spec.params:
        converter.set_param(state, name, valid[name])
    for name in set(valid) - set(spec.params):
        with pytest.raises(ValueError):
            converter.set_param(state, name, valid[name])


def test_each_direction_has_a_default_and_names_are_unique():
    assert {spec.direction for spec in CONVERTERS} == set(Direction)
    everything = names()
    assert len(everything) == len(set(everything))
    assert default_converter("speech").name == "psola-tsm"         # docs/results.md: real voices chose it
    assert default_converter(Direction.TO_SINGING).name == "psola"
    assert get_converter("flow").name == "flow-dur"                 # an alias


@pytest.mark.parametrize("spec", [s for s in CONVERTERS if s.live_form], ids=lambda s: s.name)
def test_a_live_form_converts_the_same_way_and_can_play_live(spec):
    """A converter whose live form is another one: that one exists and converts the same way; to speech it
    keeps time (a time-shortening converter live only leaves silence where it ran ahead), to singing it
    also sings live notes (docs/live.md)."""
    live = get_converter(spec.live_form, spec.direction)
    assert live.live_form is None
    if spec.direction is Direction.TO_SPEECH:
        assert live.time_preserving
    else:
        assert "note" in live.params
        _build(live, live_notes=True)
    assert live_default_converter(spec.direction).name in (spec.name, live.name)


@pytest.mark.parametrize("to, method, options, match", [
    ("singing", "psola", {"live_notes": True}, r"^live_notes=True are sung by the WORLD converter only"),
    ("sideways", None, {}, r"^to='sideways' is not a direction; use one of: speech, singing"),
    ("speech", "world", {}, r"^method='world' does not convert to speech; use one of: psola-tsm, world-nodur"),
    ("speech", "world-nodur", {"duration": 0.5}, r"^duration=0.5 does not apply to world-nodur; it takes: chunk_ms"),
    ("speech", "world-dur", {"duration": 1.5}, r"^duration=1.5 is outside 0..1"),
    ("speech", "world-nodur", {"transpose_semitones": 30}, r"^transpose_semitones=30.0 semitones is outside"),
    ("speech", "world-nodur", {"melody": "x.mid"}, r"^melody='x.mid' does not apply to world-nodur"),
    ("singing", None, {}, r"^melody is needed to sing"),
    ("singing", None, {"melody": str(TUNE), "vibrato_cents": 300}, r"^vibrato_cents=300 is outside 0..200"),
    ("singing", None, {"live_notes": True, "tempo": 2.0}, r"^tempo=2.0 scales a melody file"),
    ("singing", None, {"melody": str(TUNE), "brightness_db": 20}, r"^brightness_db=20 must be a number of dB within -12..12$"),
    ("singing", "world", {"melody": str(TUNE), "singers_formant_db": float("nan")},
     r"^singers_formant_db=nan must be a number of dB within -12..12$"),
    ("singing", None, {"melody": str(TUNE), "brightness_db": "3"}, r"^brightness_db='3' must be a number of dB"),
    ("speech", "psola-tsm", {"brightness_db": -3.0}, r"^brightness_db=-3.0 does not apply to psola-tsm"),
    ("speech", "world-nodur", {"voice_floor_hz": 50}, r"^voice_floor_hz=50 must be within 71..400 Hz"),
    ("singing", None, {"melody": str(TUNE), "voice_floor_hz": 500.0}, r"^voice_floor_hz=500.0 must be within 71"),
    ("speech", "flow-nodur", {"voice_floor_hz": 100}, r"^voice_floor_hz=100 does not apply to flow-nodur"),
])
def test_option_errors_name_the_option_as_the_api_spells_it(to, method, options, match):
    with pytest.raises(OptionError, match=match):
        make_converter(to, method, **options)


def test_the_cli_words_every_option_as_its_flag():
    options = {name for spec in CONVERTERS for name in spec.option_names} | {"to", "method"}
    assert options <= set(FLAG_OF_OPTION), options - set(FLAG_OF_OPTION)
    with pytest.raises(OptionError) as caught:
        make_converter("speech", "world-nodur", duration=0.5)
    assert error_message(caught.value) == ("--duration=0.5 does not apply to world-nodur; it takes: --chunk-ms, "
                                           "--transpose, --voice-floor")


#: model kinds spelled as the converter that runs them: one constant each (file, literal)
MODEL_KINDS = {("engine/converters/alignsts_model.py", "alignsts")}


def test_the_registry_is_the_only_place_a_converter_is_named():
    """No string literal outside engine/registry.py is a converter's name (its aliases are ordinary words)."""
    found = []
    for room in ("voxflip", "engine", "streaming", "osc_control", "trainer", "trt_build"):
        for path in (ROOT / room).rglob("*.py"):
            if path == ROOT / "engine" / "registry.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and node.value in names(aliases=False) \
                        and (path.relative_to(ROOT).as_posix(), node.value) not in MODEL_KINDS:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert found == []


def test_a_converter_that_needs_a_missing_runtime_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)      # as if no ONNX runtime were installed
    flow = get_converter("flow-dur")
    assert flow.missing() and not get_converter("world-nodur").missing()
    with pytest.raises(MissingDependencyError, match=r'flow-dur needs an ONNX runtime .*pip install "voxflip\[cpu\]"'):
        make_converter("speech", "flow-dur")
    source = tmp_path / "in.wav"
    import soundfile as sf

    sf.write(source, np.zeros(1600, np.float32), 16_000)
    assert main(["render", str(source), "-o", str(tmp_path / "out.wav"), "--to", "speech", "--method", "flow"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and '"voxflip[gpu]" on a CUDA machine' in err
    assert not (tmp_path / "out.wav").exists()


def test_two_onnx_runtimes_in_one_environment_are_reported():
    assert conflict_warning(["onnxruntime"]) is None
    assert conflict_warning(["onnxruntime-gpu"]) is None
    assert "share one folder" in conflict_warning(["onnxruntime", "onnxruntime-gpu"])

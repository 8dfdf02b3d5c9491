"""Issue 15, "no code from data files" and OSC fairness: what a user or a network peer supplies runs no code.

Each test drives a real part: a real preset file and a real shared object in a ``.vst3`` bundle
(its constructor writes a marker file when loaded), a real UDP socket, real ``.onnx`` files copied
from the shipped model, a real torch checkpoint holding a pickled object that would run code.
"""

from __future__ import annotations

import json
import queue
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_until
from pythonosc.osc_message_builder import OscMessageBuilder

from voxflip.cli import main
from voxflip.engine.errors import ArtifactMismatchError, ConfigError, EngineError
from voxflip.engine.params import ParamChange
from voxflip.osc_control.server import MAX_TRACKED_SENDERS, OscServer
from voxflip.streaming.presets import bundled_presets, find_preset, load_preset

RATE = 16_000


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message, message
    return message


# --- plugins: a preset may name a VST3 only with --allow-plugins -----------------------------------

@pytest.fixture
def evil_vst3(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """``Evil.vst3``: a real shared object whose constructor writes ``marker``; else a bare bundle folder."""
    marker = tmp_path / "marker"
    monkeypatch.setenv("VOXFLIP_TEST_MARKER", str(marker))
    bundle = tmp_path / "plugins" / "Evil.vst3"
    binary = bundle / "Contents" / "x86_64-linux"
    binary.mkdir(parents=True)
    source = tmp_path / "evil.c"
    source.write_text(
        "#include <stdio.h>\n#include <stdlib.h>\n"
        "__attribute__((constructor)) static void voxflip_marker(void) {\n"
        '  const char *path = getenv("VOXFLIP_TEST_MARKER");\n'
        '  FILE *f = path ? fopen(path, "w") : NULL;\n'
        '  if (f) { fputs("constructor ran\\n", f); fclose(f); }\n}\n'
    )
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is not None:
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(binary / "Evil.so"), str(source)], check=True)
    return bundle, marker


def _plugin_preset(folder: Path, plugin: Path, name: str = "evil.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps({"name": "evil", "post": [{"plugin": "Gain", "params": {"gain_db": 24.0}},
                                                        {"plugin_path": str(plugin)}]}))
    return path


def test_a_preset_naming_a_vst3_is_refused_before_anything_loads(evil_vst3, tmp_path: Path):
    bundle, marker = evil_vst3
    preset = _plugin_preset(tmp_path, bundle)
    with pytest.raises(ConfigError, match=r"post\[1\]: plugin_path .*Evil\.vst3.* a plugin is code.*--allow-plugins") as info:
        load_preset(preset)
    assert one_line(info.value).startswith(str(preset))
    assert not marker.exists(), "the plugin's code ran although plugins were not allowed"


def test_the_fake_vst3_really_runs_code_when_plugins_are_allowed(evil_vst3, tmp_path: Path):
    """What the refusal prevents: with allow_plugins=True pedalboard loads the file and its constructor runs."""
    bundle, marker = evil_vst3
    if not (bundle / "Contents" / "x86_64-linux" / "Evil.so").exists():
        pytest.skip("no C compiler: the fake plugin is an empty bundle")
    with pytest.raises(ConfigError, match=r"pedalboard cannot load plugin_path") as info:
        load_preset(_plugin_preset(tmp_path, bundle), allow_plugins=True)
    one_line(info.value)
    assert marker.read_text() == "constructor ran\n"


@pytest.mark.parametrize("plugin, match", [
    ("Missing.vst3", r"post\[0\]: plugin_path 'Missing\.vst3' does not exist"),
    ("Broken.vst3", r"post\[0\]: pedalboard cannot load plugin_path 'Broken\.vst3'"),
])
def test_with_plugins_allowed_a_bad_plugin_file_is_still_one_line(tmp_path: Path, plugin: str, match: str):
    (tmp_path / "Broken.vst3").write_bytes(b"not a plugin")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"post": [{"plugin_path": plugin}]}))
    with pytest.raises(ConfigError, match=match) as info:
        load_preset(path, allow_plugins=True)
    assert one_line(info.value).startswith(str(path))


def test_render_refuses_a_plugin_preset_without_allow_plugins(evil_vst3, tmp_path: Path, example_speech_path, capsys):
    bundle, marker = evil_vst3
    preset = _plugin_preset(tmp_path, bundle)
    out = tmp_path / "out.wav"
    code = main(["render", str(example_speech_path), "-o", str(out), "--to", "speech", "--method", "world-nodur",
                 "--fx", str(preset), "-q"])
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert stderr.startswith("voxflip: error: ") and stderr.count("\n") == 1 and "--allow-plugins" in stderr, stderr
    assert not marker.exists() and not out.exists()


# --- preset names: bundled and the user folder, never the working directory ------------------------

@pytest.fixture
def user_presets(tmp_path: Path, monkeypatch) -> Path:
    """An empty user preset folder ($XDG_CONFIG_HOME/voxflip/presets) and a working directory of traps."""
    config = tmp_path / "config"
    folder = config / "voxflip" / "presets"
    folder.mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    loud = json.dumps({"name": "trap", "post": [{"plugin": "Gain", "params": {"gain_db": 24.0}}]})
    for name in ("hall", "hall.json", "evil", "evil.json"):
        (cwd / name).write_text(loud)
    return folder


def test_a_bare_name_never_reads_the_working_directory(user_presets: Path):
    hall, shipped = load_preset("hall"), load_preset(bundled_presets()["hall"])
    assert hall.name == shipped.name != "trap" and list(hall.effects) == list(shipped.effects)
    with pytest.raises(ConfigError, match=r"preset 'evil' is not a bundled preset .* nor in the user preset folder") as info:
        load_preset("evil")
    assert str(user_presets) in one_line(info.value)
    # an explicit path on the command line still works
    assert load_preset("./evil").name == "trap" and load_preset("evil.json").name == "trap"


def test_user_presets_are_found_by_name_and_cannot_shadow_a_bundled_one(user_presets: Path):
    (user_presets / "mine.json").write_text(json.dumps({"post": [{"plugin": "Gain", "params": {"gain_db": -6.0}}]}))
    assert find_preset("mine") == user_presets / "mine.json"
    assert load_preset("mine").effects["gain"].gain_db == -6.0
    (user_presets / "radio.json").write_text(json.dumps({"post": []}))
    with pytest.raises(ConfigError, match=r"preset 'radio' is both a bundled preset and .*radio\.json; bundled names are reserved"):
        load_preset("radio")


@pytest.mark.parametrize("name", ["../evil", "a b", "", "x" * 65, "evil\x00"])
def test_find_preset_takes_names_only(user_presets: Path, name: str):
    with pytest.raises(ConfigError, match="must be letters, digits"):
        find_preset(name)


@pytest.fixture
def controller(user_presets: Path, evil_vst3):
    from voxflip.engine.registry import make_converter
    from voxflip.streaming.live_control import LiveController

    bundle, marker = evil_vst3
    cwd = Path.cwd()
    _plugin_preset(cwd, bundle, "evil")          # ./evil and ./evil.json: a preset whose plugin would run
    _plugin_preset(cwd, bundle, "evil.json")
    _plugin_preset(user_presets, bundle, "plugged.json")
    speech = make_converter("speech", "world-dur", chunk_ms=10)
    return LiveController({"speech": speech}, "speech", RATE, preset="hall"), marker


def osc(address: str, *args) -> bytes:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


def test_osc_selects_presets_by_name_from_the_preset_folders_only(controller):
    """Real UDP: /voxflip/preset from the network reaches the controller as a name, or not at all."""
    ctl, marker = controller
    changes: queue.Queue[ParamChange] = queue.Queue(maxsize=64)
    with OscServer(changes, port=0) as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for name in ("evil", "../evil", "./evil.json", "plugged", "radio"):
            sender.sendto(osc("/voxflip/preset", name), server.address)
        assert wait_until(lambda: server.counters["received"] == 5), server.counters
        assert server.counters["not_allowed"] == 2     # the two paths never reach the queue
    received = [changes.get_nowait() for _ in range(changes.qsize())]
    assert [c.value for c in received] == ["evil", "plugged", "radio"]
    messages = []
    for change in received[:2]:
        with pytest.raises(ConfigError) as info:
            ctl.apply(change)
        messages.append(one_line(info.value))
    assert "not a bundled preset" in messages[0] and "--allow-plugins" in messages[1]
    assert ctl.preset == "hall" and not marker.exists()
    ctl.apply(received[2])
    assert ctl.preset == "radio"
    with pytest.raises(ConfigError, match="takes a preset name, never a path"):
        ctl.apply(ParamChange("preset", "./evil.json"))   # a path given to the controller directly
    assert not marker.exists()


# --- OSC: the allowlist first, then a rate limit per sender ------------------------------------------

def _flood(server: OscServer, flooder: str, flood: int, allowed: str, sent: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bad, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as good:
        bad.bind((flooder, 0))
        good.bind((allowed, 0))
        k = 0
        for i in range(flood):
            bad.sendto(osc("/voxflip/mix", 0.25), server.address)
            if i % (flood // sent) == 0 and k < sent:
                good.sendto(osc("/voxflip/gain", -float(k % 20)), server.address)
                k += 1
                time.sleep(0.0005)   # stay inside the socket buffer: every datagram must arrive
        assert wait_until(lambda: server.counters["datagrams"] >= flood + sent, 10.0), server.counters


def test_an_outsider_flooding_an_allowlisted_server_takes_nothing_from_the_allowed_sender():
    changes: queue.Queue[ParamChange] = queue.Queue(maxsize=1000)
    with OscServer(changes, port=0, allow=["127.0.0.1/32"], max_rate=1.0, burst=50) as server:
        _flood(server, "127.0.0.2", 400, "127.0.0.1", 40)
        counters = server.counters
    assert counters["not_allowed"] == 400 and counters["rate_limited"] == 0, counters
    gains = [changes.get_nowait() for _ in range(changes.qsize())]
    assert len(gains) == 40 and {c.name for c in gains} == {"gain"}


def test_a_flooding_allowed_sender_is_limited_alone():
    changes: queue.Queue[ParamChange] = queue.Queue(maxsize=1000)
    with OscServer(changes, port=0, allow=["127.0.0.0/8"], max_rate=1.0, burst=50) as server:
        _flood(server, "127.0.0.3", 400, "127.0.0.1", 40)
        counters = server.counters
    taken = [changes.get_nowait() for _ in range(changes.qsize())]
    assert sum(c.name == "gain" for c in taken) == 40, counters
    mixes = sum(c.name == "mix" for c in taken)
    assert 50 <= mixes < 60 and counters["rate_limited"] == 400 - mixes, counters


def test_the_per_sender_table_stays_bounded():
    server = OscServer(queue.Queue(maxsize=1), port=0, max_rate=1.0, burst=1)
    for i in range(3 * MAX_TRACKED_SENDERS):
        assert server._admit((f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 9000))
    assert len(server._buckets) == MAX_TRACKED_SENDERS
    assert not server._admit(("10.0.11.255", 9000))    # the most recent sender is remembered: no token left


# --- model manifests (--model) -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped_model() -> Path:
    pytest.importorskip("onnxruntime", reason="an ONNX runtime (the cpu or gpu extra) is needed")
    from voxflip.engine.registry import default_flow_model

    path = default_flow_model()
    if not path.is_file():
        pytest.skip("no flow model is shipped with this installation")
    return path


@pytest.fixture
def model_copy(shipped_model: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(shipped_model.parent, folder)
    return folder / "model.manifest.json"


def _edit(manifest: Path, change: Callable[[dict], object]) -> None:
    data = json.loads(manifest.read_text())
    change(data)
    manifest.write_text(json.dumps(data))


MANIFEST_CASES = [
    (lambda m: m["files"].__setitem__("step", "/etc/passwd"), ConfigError, r"files\.step='/etc/passwd' must be a relative path inside"),
    (lambda m: m["files"].__setitem__("decoder", "../model/model.decoder.onnx"), ConfigError, r"files\.decoder=.* no '\.\.'"),
    (lambda m: m.pop("files"), ConfigError, r"the field 'files' is missing"),
    (lambda m: m.__setitem__("files", ["model.onnx"]), ConfigError, r"files must be an object of role: file name"),
    (lambda m: m["files"].pop("step"), ConfigError, r"files\.step is missing"),
    (lambda m: m["files"].__setitem__("plugin", "x.so"), ConfigError, r"files has an unknown role 'plugin'"),
    (lambda m: m.__setitem__("chunk_frames", 10**12), ConfigError, r"chunk_frames=1000000000000 must be a whole number of frames in 1\.\.100"),
    (lambda m: m.__setitem__("chunk_frames", "2"), ConfigError, r"chunk_frames=2 must be a whole number"),
    (lambda m: m.__setitem__("lookahead_frames", -1), ConfigError, r"lookahead_frames=-1 must be"),
    (lambda m: m["state"][0].__setitem__("shape", [1, 2**20, 2**20, 2**13]), ConfigError, r"state\[0\]\.shape=.* in 1\.\.4096"),
    (lambda m: m["state"][0].__setitem__("shape", [4096, 4096, 2]), ConfigError, r"state: its tensors hold \d+ values together; at most 16777216"),
    (lambda m: m["state"].append({"name": "enc0", "shape": [1]}), ConfigError, r"state\[\d+\]\.name='enc0' must be a unique"),
    (lambda m: m.__setitem__("noise_scale", float("inf")), ConfigError, r"noise_scale=inf must be a number"),
    (lambda m: m.__setitem__("residual", "yes"), ConfigError, r"residual=yes must be true or false"),
    (lambda m: m.__setitem__("evil", 1), ConfigError, r"unknown field 'evil'"),
    (lambda m: m.__setitem__("format_version", 99), ArtifactMismatchError, r"Re-export"),
]


@pytest.mark.parametrize("change, exc, match", MANIFEST_CASES)
def test_a_bad_manifest_is_one_line_naming_the_file_and_the_field(model_copy: Path, change, exc, match):
    from voxflip.engine.backends.onnx_step import OnnxStepModel

    _edit(model_copy, change)
    with pytest.raises(exc, match=match) as info:
        OnnxStepModel(model_copy)
    assert one_line(info.value).startswith(str(model_copy))


@pytest.mark.parametrize("role", ["step", "decoder", "encoder"])
def test_a_corrupt_onnx_graph_is_one_line(model_copy: Path, role: str):
    from voxflip.engine.backends.onnx_step import OnnxStepModel

    graph = model_copy.parent / json.loads(model_copy.read_text())["files"][role]
    graph.write_bytes(b"\x08\x07\x12\x04junk" + bytes(range(256)) * 4)
    with pytest.raises(ArtifactMismatchError, match=r"onnxruntime cannot load this graph") as info:
        OnnxStepModel(model_copy)
    assert str(graph) in one_line(info.value)


def test_a_file_linked_out_of_the_model_folder_is_refused(model_copy: Path, tmp_path: Path):
    from voxflip.engine.backends.onnx_step import OnnxStepModel

    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(model_copy.parent / "model.decoder.onnx", outside)
    (model_copy.parent / "link.onnx").symlink_to(outside)
    _edit(model_copy, lambda m: m["files"].__setitem__("decoder", "link.onnx"))
    with pytest.raises(ConfigError, match=r"leads outside the manifest's folder"):
        OnnxStepModel(model_copy)


def test_render_with_a_bad_model_exits_2_with_one_line(model_copy: Path, tmp_path: Path, example_speech_path, capsys):
    _edit(model_copy, lambda m: m["state"][0].__setitem__("shape", [4096, 4096, 4096]))   # 256 GiB if allocated
    code = main(["render", str(example_speech_path), "-o", str(tmp_path / "o.wav"), "--to", "speech",
                 "--method", "flow-nodur", "--model", str(model_copy.with_name("model.onnx")), "-q"])
    stderr = capsys.readouterr().err
    assert code == 2 and stderr.startswith("voxflip: error: ") and stderr.count("\n") == 1, stderr
    others = sum(int(np.prod(e["shape"])) for e in json.loads(model_copy.read_text())["state"][1:])
    assert f"state: its tensors hold {4096**3 + others} values together; at most 16777216" in stderr


# --- checkpoints: weights_only, no code ----------------------------------------------------------------

class _RunsCode:
    """Unpickling this calls ``exec``: it writes the marker file named by ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').write('unpickled')",)


@pytest.fixture
def evil_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    torch = pytest.importorskip("torch", reason="the train extra (torch) is needed")
    marker = tmp_path / "pickle-marker"
    path = tmp_path / "checkpoints" / "step_00000001.pt"
    path.parent.mkdir()
    torch.save({"format": 2, "model": {}, "model_config": {}, "optimizer": {}, "step": 1, "epoch": 0, "index": 1,
                "rng": {}, "payload": _RunsCode(marker)}, path)
    assert not marker.exists()
    return path, marker


def test_a_checkpoint_with_a_pickled_object_is_refused_and_runs_nothing(evil_checkpoint):
    from voxflip.trainer.train import load_checkpoint, read_checkpoint

    path, marker = evil_checkpoint
    for load in (load_checkpoint, lambda p: read_checkpoint(p, needs=("model", "rng"))):
        with pytest.raises(ConfigError, match=r"holds pickled objects.*refuses them unread") as info:
            load(path)
        assert "Unsupported global: GLOBAL exec was not an allowed global" in one_line(info.value)
    assert not marker.exists(), "unpickling the checkpoint ran its code"


def test_export_and_init_from_refuse_it_too(evil_checkpoint, tmp_path: Path, capsys):
    import torch

    from voxflip.trainer.models.to_speech_flow import ToSpeechFlow, ToSpeechFlowConfig
    from voxflip.trainer.train import _init_weights

    path, marker = evil_checkpoint
    code = main(["export", str(path), "-o", str(tmp_path / "x.onnx")])
    stderr = capsys.readouterr().err
    assert code == 2 and stderr.startswith("voxflip: error: ") and stderr.count("\n") == 1, stderr
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match="holds pickled objects"):
        _init_weights(ToSpeechFlow(ToSpeechFlowConfig(n_phones=6)), path, 0, [])
    assert not marker.exists() and not (tmp_path / "x.onnx").exists()


def test_an_old_checkpoint_with_numpy_random_state_is_refused_with_one_line(tmp_path: Path):
    torch = pytest.importorskip("torch", reason="the train extra (torch) is needed")
    from voxflip.trainer.train import read_checkpoint

    path = tmp_path / "old.pt"
    torch.save({"model": {}, "model_config": {}, "rng": {"numpy": np.random.get_state()}}, path)
    with pytest.raises(ConfigError, match=r"older voxflip must be made again") as info:
        read_checkpoint(path)
    one_line(info.value)


def test_random_states_survive_a_weights_only_round_trip_exactly(tmp_path: Path):
    torch = pytest.importorskip("torch", reason="the train extra (torch) is needed")
    import random

    from voxflip.trainer.train import read_checkpoint, rng_states, set_rng_states

    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    np.random.standard_normal()           # leaves a cached gaussian in numpy's legacy state
    path = tmp_path / "rng.pt"
    torch.save({"model": {}, "model_config": {}, "rng": rng_states()}, path)

    def draw():
        return random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist()

    first = draw()
    set_rng_states(read_checkpoint(path, needs=("rng",))["rng"], path)
    assert draw() == first


@pytest.mark.parametrize("config, match", [
    ({"hidden": 10**9}, r"model_config\.hidden=1000000000 must be a whole number in 0\.\.4096"),
    ({"hidden": 4096}, r"describes a model of \d+ parameters; at most 200000000"),
    ({"hidden": "128"}, r"model_config\.hidden=128 must be a whole number"),
    ({"evil": 1}, r"unknown setting 'evil'"),
])
def test_a_checkpoint_model_config_cannot_ask_for_a_huge_model(tmp_path: Path, config, match):
    torch = pytest.importorskip("torch", reason="the train extra (torch) is needed")
    from voxflip.trainer.train import load_checkpoint

    path = tmp_path / "big.pt"
    torch.save({"model": {}, "model_config": config}, path)
    with pytest.raises(ConfigError, match=match) as info:
        load_checkpoint(path)
    one_line(info.value)


def test_engine_errors_of_this_slice_are_engine_errors():
    assert issubclass(ConfigError, EngineError) and issubclass(ArtifactMismatchError, EngineError)

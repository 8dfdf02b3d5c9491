"""The S2S flow model shipped in the package: present, small, loadable, and run without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voxflip.engine.registry import default_flow_model

pytest.importorskip("onnxruntime", reason="flow models run on onnxruntime (the train extra)")

MODEL = default_flow_model()
pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason="no flow model is shipped in this checkout")


def test_the_shipped_artifact_is_complete_and_a_few_megabytes():
    manifest = json.loads(MODEL.read_text())
    files = [MODEL.parent / name for name in manifest["files"].values()]
    assert all(f.is_file() for f in files)
    total = sum(f.stat().st_size for f in files) + MODEL.stat().st_size
    assert total < 10 * 2**20, f"{total / 2**20:.1f} MB"
    assert manifest["model_config"]["duration_smoothing"] == 9


def test_flow_renders_speech_from_the_command_line_without_torch(tmp_path: Path, example_speech_path: Path):
    out = tmp_path / "spoken.wav"
    code = (
        "import sys\n"
        "from voxflip.cli import main\n"
        f"rc = main(['render', {str(example_speech_path)!r}, '-o', {str(out)!r}, '--to', 'speech', "
        "'--method', 'flow', '-q'])\n"
        "assert rc == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'tensorrt'))\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    import soundfile as sf

    audio, rate = sf.read(out)
    source = sf.info(example_speech_path)
    assert rate == source.samplerate and np.all(np.isfinite(audio))
    assert np.sqrt(np.mean(audio**2)) > 1e-3                  # it speaks: not silence

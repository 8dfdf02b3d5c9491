"""Helpers shared by the tests (imported as `from helpers import ...`; conftest.py holds the fixtures)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from voxflip.engine.vocoder.source_filter import SourceFilterSynth, SynthConfig

SAMPLE_RATE = 24_000
HOP = 120
DEV_DATA = Path(__file__).resolve().parents[2] / "shared" / "dev-data"
CHUNK_SIZES = [1, 7, 64, 65, 480, 4096, 1_000_000]  # 1, a prime, 2^n and 2^n+1, larger than the signal


def vowel_envelope(formants_hz: list[float], bandwidths_hz: list[float], bins: int = 513,
                   sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Power envelope of an all-pole vowel (a cascade of second-order resonances) with a -12 dB/oct tilt."""
    f = np.linspace(0, sample_rate / 2, bins)
    z = np.exp(1j * 2 * np.pi * f / sample_rate)
    h = np.ones(bins, complex)
    for fc, bw in zip(formants_hz, bandwidths_hz, strict=True):
        r = np.exp(-np.pi * bw / sample_rate)
        pole = r * np.exp(1j * 2 * np.pi * fc / sample_rate)
        h /= (1 - pole / z) * (1 - np.conj(pole) / z)
    tilt = 1.0 / (1.0 + (f / 300.0) ** 2)
    power = np.abs(h) ** 2 * tilt
    return power / power.max() * 1e-3


VOWELS = {
    "a": ([800, 1200, 2500, 3500], [80, 90, 120, 150]),
    "i": ([300, 2300, 3000, 3700], [60, 100, 120, 150]),
    "u": ([350, 800, 2400, 3400], [60, 80, 120, 150]),
    "e": ([500, 1900, 2600, 3600], [70, 100, 120, 150]),
}


def synth_from_plan(plan: list[tuple[str, float, float]], seed: int = 0) -> np.ndarray:
    """Render ``(kind, seconds, f0_hz)`` segments: kind is a vowel name, "s" (fricative) or "-" (silence)."""
    frames_f0, frames_sp, frames_ap = [], [], []
    noise_env = vowel_envelope([4500], [1500]) * 0.3
    for kind, seconds, f0 in plan:
        n = int(round(seconds * SAMPLE_RATE / HOP))
        for _ in range(n):
            if kind == "-":
                frames_f0.append(0.0)
                frames_sp.append(np.full(513, 1e-14))
                frames_ap.append(np.ones(513))
            elif kind == "s":
                frames_f0.append(0.0)
                frames_sp.append(noise_env)
                frames_ap.append(np.ones(513))
            else:
                frames_f0.append(f0)
                frames_sp.append(vowel_envelope(*VOWELS[kind]))
                frames_ap.append(np.full(513, 0.05))
    synth = SourceFilterSynth(SynthConfig(SAMPLE_RATE, HOP, 1024, seed=seed))
    f0 = np.array(frames_f0 + [0.0])
    sp = np.stack(frames_sp + [frames_sp[-1]])
    ap = np.stack(frames_ap + [frames_ap[-1]])
    audio, _ = synth.step(f0, sp, ap, synth.init_state())
    return audio.astype(np.float32)



def stream_in_blocks(streamer, audio: np.ndarray, block: int) -> np.ndarray:
    """Feed ``audio`` to a Streamer in blocks of ``block`` samples, flush, return everything."""
    out = [streamer.process(audio[i : i + block]) for i in range(0, audio.shape[0], block)]
    out.append(streamer.flush())
    return np.concatenate(out)


def assert_allclose_report_first_mismatch(actual: np.ndarray, expected: np.ndarray, atol: float, label: str = "") -> None:
    assert actual.shape == expected.shape, f"{label}: shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    bad = np.nonzero(diff > atol)[0]
    if bad.size:
        i = int(bad[0])
        raise AssertionError(
            f"{label}: {bad.size} samples differ by more than {atol}; first at sample {i}: "
            f"{actual[i]!r} vs {expected[i]!r} (max diff {diff.max():.3g})"
        )


HEAVY_MODULES = ("torch", "onnx", "tensorrt", "librosa")


def cli_heavy_imports(argv: list[str], heavy: tuple[str, ...] = HEAVY_MODULES) -> list[str]:
    """Run ``voxflip ARGV`` in a fresh interpreter; return the ``heavy`` top-level modules it imported.

    Raises AssertionError when the command fails. The live and render paths must stay light.
    """
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from voxflip.cli import main\n"
        f"rc = main({argv!r})\n"
        "assert rc == 0, rc\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    import json

    return json.loads(done.stdout.strip().splitlines()[-1])


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll ``predicate`` every 2 ms until it holds or ``timeout_s`` passes; its last answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


def assert_training_resumes_exactly(config, run_root: Path, trained: str):
    """4 ``train-alignsts`` steps straight == 2 steps, stop, resume for 2 more (every tensor of the model
    equal), and the parameter ``trained`` moved from step 2 to 4. Returns the straight run's step-4
    model and checkpoint payload."""
    import torch

    from voxflip.trainer.alignsts_train import load_alignsts, train_alignsts

    straight, resumed = run_root / "a", run_root / "b"
    train_alignsts(config, straight, progress=False)
    train_alignsts(config, resumed, progress=False, stop_after=2)
    train_alignsts(config, resumed, progress=False)
    a = torch.load(straight / "checkpoints" / "step_00000004.pt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "step_00000004.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    first = torch.load(straight / "checkpoints" / "step_00000002.pt", weights_only=True)["model"]
    assert not torch.equal(first[trained], a["model"][trained])       # it did train
    assert (straight / "tb").is_dir() and (straight / "config.toml").is_file()
    return load_alignsts(straight / "checkpoints" / "step_00000004.pt")


def sts_batch(seed: int = 0, t=(120, 90), n=(30, 22), m=(70, 50)) -> dict:
    """A random ``train-alignsts`` batch: target lengths ``t``, content lengths ``n``, voice-mel lengths ``m``."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    b = len(t)
    return {
        "content": torch.randn(b, 512, max(n), generator=gen), "content_len": torch.tensor(n),
        "f0_bins": torch.randint(0, 256, (b, max(t)), generator=gen), "rhythm": torch.rand(b, max(t), generator=gen),
        "mel": torch.randn(b, 80, max(t), generator=gen) - 4, "mel_len": torch.tensor(t),
        "timbre_mel": torch.randn(b, 80, max(m), generator=gen) - 4, "timbre_len": torch.tensor(m),
    }


def torchrun_two_processes(command: str, *args: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m voxflip COMMAND ARGS`` on CPU (one thread a process);
    fails with the ranks' own lines (torchrun's closing summary names only a signal). Skips without torchrun."""
    import pytest

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    if not Path(torchrun).exists():
        pytest.skip("torchrun not found")
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "voxflip", command, *args],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[:3000] + "\n...\n" + done.stderr[-600:]
    return done

"""render_file: bounded memory on long files, atomic output, the result it reports."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxflip.engine.converters.base import DelayConverter
from voxflip.render import render_file


def _long_file(path: Path, minutes: float, rate: int) -> Path:
    """Write a long file in pieces (so the test itself never holds it whole)."""
    rng = np.random.default_rng(3)
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as f:
        for _ in range(int(minutes * 60)):
            f.write((rng.standard_normal(rate) * 0.1).astype(np.float32))
    return path


def test_a_long_file_is_rendered_in_bounded_memory(tmp_path: Path):
    src = _long_file(tmp_path / "long.wav", minutes=10, rate=8_000)  # 4.8 M samples: 19 MB as float32
    tracemalloc.start()
    result = render_file(src, tmp_path / "out.wav", DelayConverter(), block_size=16_384)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.output_seconds == pytest.approx(600.0)
    assert sf.info(tmp_path / "out.wav").frames == 600 * 8_000
    assert peak < 4_000_000, f"peak traced memory {peak / 1e6:.1f} MB for a 19 MB file"


@pytest.mark.slow
def test_a_30_minute_file_through_world_nodur_stays_small(tmp_path: Path):
    """The issue's case: a 30-minute file must not need all of it in RAM (peak RSS in a fresh process)."""
    src = _long_file(tmp_path / "long.wav", minutes=30, rate=16_000)  # 115 MB as float32
    code = (
        "import resource, sys\n"
        "from voxflip.cli import main\n"
        f"rc = main(['render', {str(src)!r}, '-o', {str(tmp_path / 'o.flac')!r}, '--to', 'speech', '-q'])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stdout.strip().splitlines()[-1]) / 1024
    assert peak_mb < 300, f"peak RSS {peak_mb:.0f} MB"


def test_a_failed_render_leaves_no_file_and_keeps_an_existing_one(tmp_path: Path):
    src = tmp_path / "nan.wav"
    audio = np.zeros(48_000, np.float32)
    audio[30_000] = np.nan
    sf.write(src, audio, 24_000, subtype="FLOAT")
    target = tmp_path / "out.wav"
    target.write_bytes(b"previous contents")
    with pytest.raises(ValueError, match="NaN"):
        render_file(src, target, DelayConverter(), block_size=4096)
    assert target.read_bytes() == b"previous contents"
    assert {p.name for p in tmp_path.iterdir()} == {"nan.wav", "out.wav"}  # no temporary file left


def test_progress_is_reported_per_block(tmp_path: Path, example_speech_path: Path):
    seen: list[tuple[int, int]] = []
    render_file(example_speech_path, tmp_path / "o.wav", DelayConverter(), block_size=10_000,
                progress=lambda done, total: seen.append((done, total)))
    total = sf.info(example_speech_path).frames
    assert [d for d, _ in seen] == [*range(10_000, total, 10_000), total]
    assert all(t == total for _, t in seen)

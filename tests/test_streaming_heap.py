"""The process heap setting (streaming.heap): applied by the command line, off on request, and
the output the same either way."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.resources import files

import pytest

GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")


def _python(code: str, env_heap: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VOXFLIP_HEAP"}
    if env_heap is not None:
        env["VOXFLIP_HEAP"] = env_heap
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_keep_freed_memory_sets_glibc_once_and_stays_off_when_asked():
    code = ("from voxflip.streaming.heap import keep_freed_memory as k\n"
            "print(k(), k())")
    assert _python(code, None).stdout.split() == ["True", "True"]
    off = _python(code, "default")
    assert off.returncode == 0, off.stderr
    assert off.stdout.split() == ["False", "False"]


def test_the_command_line_renders_the_same_bytes_with_and_without_it(tmp_path):
    example = str(files("voxflip") / "data" / "arctic_a0007.wav")
    outputs = []
    for heap in (None, "default"):
        out = tmp_path / f"out_{heap}.wav"
        code = ("import sys\nfrom voxflip.cli import main\n"
                f"sys.exit(main(['render', {example!r}, '-o', {str(out)!r}, '--to', 'speech', "
                "'--method', 'world-nodur', '-q']))")
        done = _python(code, heap)
        assert done.returncode == 0, done.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]

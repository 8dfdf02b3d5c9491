"""Signals, exits and file names (issue #15): real child processes, real signals, real files.

Each CLI test runs ``python -m voxflip.cli`` in a child and checks its exit status, that
stderr is one line, and what is left in the output folder: the output complete, or nothing
(never a hidden ``.tmp`` file).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import test_streaming_jack as jack

from voxflip.engine.converters.base import DelayConverter
from voxflip.streaming.live import LiveEngine, LiveRunError, run_file
from voxflip.streaming.realtime import RealtimeStreamer
from voxflip.streaming.streamer import Streamer

jack_env = jack.jack_env  # the fixture: a JACK dummy server of the test's own (skips where there is none)

VOXFLIP = [sys.executable, "-m", "voxflip.cli"]
NON_UTF8 = b"caf\xe9"  # Latin-1 "café": not valid UTF-8


def _default_signals() -> None:
    """In the child: the stop signals at their defaults, whatever the test runner inherited (under
    ``nohup`` SIGHUP arrives ignored, and voxflip rightly leaves an ignored signal ignored)."""
    for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)


def start(argv: list, **kwargs) -> subprocess.Popen:
    kwargs.setdefault("preexec_fn", _default_signals)
    return subprocess.Popen([*VOXFLIP, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode("utf-8", "backslashreplace"), err.decode("utf-8", "backslashreplace")


def run_cli(argv: list, **kwargs) -> tuple[int, str, str]:
    return finish(start(argv, **kwargs))


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr[-2000:]}"
    return lines[0]


def wait_for_temp_file(proc: subprocess.Popen, folder: Path, timeout: float = 60) -> None:
    """Wait until the child is writing its output (its hidden temporary file exists)."""
    deadline = time.monotonic() + timeout
    while not any(name.endswith(".tmp") for name in os.listdir(folder)):
        if proc.poll() is not None:
            pytest.fail(f"the child ended before writing: {finish(proc)}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the child wrote no temporary file in time")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def speech(example_speech) -> tuple[np.ndarray, int]:
    return example_speech


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory, speech) -> Path:
    """60 s of real speech (the bundled sentence, repeated): long enough to be stopped halfway."""
    audio, rate = speech
    path = tmp_path_factory.mktemp("in") / "long.wav"
    sf.write(path, np.resize(audio, 60 * rate), rate)
    return path


@pytest.fixture(scope="module")
def short_speech(tmp_path_factory, speech) -> Path:
    audio, rate = speech
    path = tmp_path_factory.mktemp("in") / "short.wav"
    sf.write(path, audio, rate)
    return path


STOPS = [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)]


@pytest.mark.parametrize("signum, status", STOPS, ids=[s.name for s, _ in STOPS])
def test_a_stop_signal_during_render_leaves_no_file_and_exits_128_plus_its_number(tmp_path, long_speech, signum, status):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = start(["render", str(long_speech), "-o", str(out_dir / "r.wav"), "--to", "speech", "--method", "world-nodur", "-q"])
    wait_for_temp_file(proc, out_dir)
    proc.send_signal(signum)
    code, _, err = finish(proc)
    assert code == status, err
    assert one_line(err) == f"voxflip: interrupted by {signum.name}; {str(out_dir / 'r.wav')!r} was not written"
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("signum, status", STOPS, ids=[s.name for s, _ in STOPS])
def test_a_stop_signal_during_live_from_a_file_prints_the_summary_and_leaves_no_file(tmp_path, long_speech, signum, status):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    stats = tmp_path / "stats.json"
    proc = start(["live", "--to", "speech", "--method", "world-nodur", "--input-file", str(long_speech),
                  "--output-file", str(out_dir / "l.wav"), "--stats-json", str(stats), "-q"])
    wait_for_temp_file(proc, out_dir)
    time.sleep(0.3)  # let it play a little
    proc.send_signal(signum)
    code, out, err = finish(proc)
    assert code == status, err
    assert one_line(err) == f"voxflip: interrupted by {signum.name}; {str(out_dir / 'l.wav')!r} was not written"
    assert f"voxflip live (stopped by {signum.name}): " in out and "xruns" in out
    assert os.listdir(out_dir) == []
    facts = json.loads(stats.read_text())
    assert facts["stopped_by"] == signum.name and facts["blocks"] > 0


def test_an_ignored_sighup_stays_ignored(tmp_path, long_speech):
    """``nohup voxflip ...``: a SIGHUP ignored when voxflip starts does not stop it (a SIGTERM still does)."""
    proc = start(["render", str(long_speech), "-o", str(tmp_path / "r.wav"), "--to", "speech", "--method",
                  "world-nodur", "-q"], preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    wait_for_temp_file(proc, tmp_path)
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert proc.poll() is None, finish(proc)
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == 143, err
    assert os.listdir(tmp_path) == []


def write_with_nan(path: Path, speech, start_s: float = 0.5, samples: int = 1000) -> int:
    audio, rate = speech
    audio = audio.copy()
    first = int(start_s * rate)
    audio[first : first + samples] = np.nan
    sf.write(path, audio, rate, subtype="FLOAT")
    return first


def test_live_from_a_file_plays_nan_samples_as_silence_and_counts_them(tmp_path, speech):
    source = tmp_path / "nan.wav"
    write_with_nan(source, speech, samples=1000)
    out, stats = tmp_path / "out.wav", tmp_path / "stats.json"
    code, stdout, err = run_cli(["live", "--to", "speech", "--method", "world-nodur", "--input-file", str(source),
                                 "--output-file", str(out), "--fast", "-q", "--stats-json", str(stats)])
    assert code == 0, err
    facts = json.loads(stats.read_text())
    assert facts["non_finite_input_samples"] == 1000 and facts["worker_errors"] == 0
    assert "non-finite input 1000 samples (played as silence)" in stdout
    y, _ = sf.read(out, dtype="float32")
    assert y.shape[0] == sf.info(source).frames + facts["declared_latency_samples"]
    assert np.isfinite(y).all() and np.abs(y).max() > 0.01


def test_render_refuses_nan_samples_in_one_line_naming_the_sample(tmp_path, speech):
    source = tmp_path / "nan.wav"
    first = write_with_nan(source, speech)
    code, _, err = run_cli(["render", str(source), "-o", str(tmp_path / "out.wav"), "--to", "speech"])
    assert code == 2
    assert f"contains NaN at sample {first}" in one_line(err)
    assert sorted(os.listdir(tmp_path)) == ["nan.wav"]


def test_an_input_that_shrinks_during_live_ends_with_an_error_and_no_output(tmp_path, speech):
    """The pacer thread's read error reaches the command: exit 2, one line, no output file."""
    audio, rate = speech
    source = tmp_path / "in.wav"
    sf.write(source, np.resize(audio, 10 * rate), rate)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = start(["live", "--to", "speech", "--method", "world-nodur", "--input-file", str(source),
                  "--output-file", str(out_dir / "o.wav"), "-q"])
    wait_for_temp_file(proc, out_dir)
    os.truncate(source, 44 + 2 * rate)  # the header and 1 s of 16-bit samples are left
    code, _, err = finish(proc)
    assert code == 2, err
    line = one_line(err)
    assert line.startswith("voxflip: error: audio input") and "truncated" in line and "was not written" in line
    assert os.listdir(out_dir) == []


@pytest.fixture
def non_utf8_dir(tmp_path) -> bytes:
    folder = os.fsencode(tmp_path)
    try:
        open(os.path.join(folder, NON_UTF8 + b".probe"), "wb").close()
    except OSError:
        pytest.skip("this filesystem refuses file names that are not UTF-8")
    return folder


def test_non_utf8_file_names_work_for_render_and_live(non_utf8_dir, short_speech):
    source = os.path.join(non_utf8_dir, NON_UTF8 + b".wav")
    shutil.copyfile(short_speech, source)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}  # the strictest stdout
    rendered = os.path.join(non_utf8_dir, NON_UTF8 + b"-render.wav")
    code, out, err = run_cli([b"render", source, b"-o", rendered, b"--to", b"speech", b"--method", b"world-nodur",
                              b"-q"], env=env)
    assert code == 0, err
    assert "caf\\udce9.wav" in out  # the name, escaped, in the summary line
    played = os.path.join(non_utf8_dir, NON_UTF8 + b"-live.wav")
    code, _, err = run_cli([b"live", b"--to", b"speech", b"--method", b"world-nodur", b"--input-file", source,
                            b"--output-file", played, b"--fast", b"-q"], env=env)
    assert code == 0, err
    assert sf.info(rendered).frames == sf.info(str(short_speech)).frames
    assert sf.info(played).frames > sf.info(str(short_speech)).frames
    assert not [n for n in os.listdir(non_utf8_dir) if n.endswith(b".tmp")]


def test_a_missing_non_utf8_input_is_one_line(non_utf8_dir):
    missing = os.path.join(non_utf8_dir, NON_UTF8 + b"-missing.wav")
    code, _, err = run_cli([b"render", missing, b"-o", os.path.join(non_utf8_dir, b"o.wav"), b"--to", b"speech"],
                           env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert code == 2
    assert "caf\\udce9-missing.wav' does not exist" in one_line(err)


def limit_file_size(limit_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


@pytest.mark.parametrize("command", ["render", "live"])
def test_a_file_size_limit_says_so_in_one_line_and_leaves_no_file(tmp_path, short_speech, command):
    out = tmp_path / "out.wav"
    if command == "render":
        argv = ["render", str(short_speech), "-o", str(out), "--to", "speech", "--method", "world-nodur", "-q",
                "--block-size", "4096"]
    else:
        argv = ["live", "--to", "speech", "--method", "world-nodur", "--input-file", str(short_speech),
                "--output-file", str(out), "--fast", "-q"]
    code, _, err = run_cli(argv, preexec_fn=limit_file_size(20_000))
    assert code == 2, err
    line = one_line(err)
    assert line.startswith(f"voxflip: error: audio output {str(out)!r}: writing failed after ")
    assert "File too large" in line and "file-size limit of 20000 bytes (ulimit -f)" in line
    assert "the partial file was removed" in line
    assert os.listdir(tmp_path) == []


def test_a_full_disk_says_so_in_one_line_and_leaves_no_file(tmp_path, short_speech):
    """A real full filesystem: a 64 KiB tmpfs, mounted in a private mount namespace (skipped where not allowed)."""
    small = tmp_path / "small"
    small.mkdir()
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-r", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("no unprivileged mount namespaces here (unshare -r -m)")
    script = ('mount -t tmpfs -o size=64k tmpfs "$1" || exit 99; shift; "$@"; code=$?; '
              'ls -A "$OUT_DIR"; exit $code')
    done = subprocess.run([unshare, "-r", "-m", "sh", "-c", script, "sh", str(small), *VOXFLIP, "render",
                           str(short_speech), "-o", str(small / "out.wav"), "--to", "speech", "--method",
                           "world-nodur", "-q"], capture_output=True, text=True, env={**os.environ, "OUT_DIR": str(small)})
    if done.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert "No space left on device" in line and f"the disk holding {str(small)!r} is full" in line
    assert done.stdout.strip() == ""  # nothing was left in the full folder


@pytest.mark.live
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 0), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_live_on_devices_stops_on_a_signal_with_its_summary(jack_env, tmp_path, signum, status):
    """On devices, Ctrl-C is the way to stop (exit 0); SIGTERM and SIGHUP stop it too, with 128+N.
    Either way the summary is printed and --stats-json written."""
    stats = tmp_path / "stats.json"
    proc = start(["live", "--to", "speech", "--method", "world-nodur", "--sample-rate", "48000", "--block-size", "256",
                  "--stats-json", str(stats), "-q"], env=jack_env)
    deadline = time.monotonic() + 30
    while not any(p.startswith("PortAudio:") for p in jack._jack_ports(jack_env)):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"voxflip live did not come up: {finish(proc)}")
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signum)
    code, out, err = finish(proc, timeout=30)
    assert code == status, err
    assert "voxflip live" in out and "xruns" in out
    if signum == signal.SIGINT:
        assert err == ""
        assert json.loads(stats.read_text())["stopped_by"] is None
    else:
        assert one_line(err) == f"voxflip: interrupted by {signum.name}"
        assert f"(stopped by {signum.name})" in out
        assert json.loads(stats.read_text())["stopped_by"] == signum.name


# -- the live engine in this process: worker and pacer failures end the run ----------------------------------


class _FailsAt:
    """A block processor that raises on its n-th block (``exc`` an exception type)."""

    latency_s = 0.0

    def __init__(self, n: int, exc: type[BaseException]) -> None:
        self.n, self.exc, self.calls = n, exc, 0

    def process(self, block: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == self.n:
            raise self.exc("boom")
        return block

    def reset(self) -> None:
        pass


class _Fatal(BaseException):
    """Not an ``Exception``: it ends the worker's loop instead of turning one block into silence."""


@pytest.mark.parametrize("exc, stop_on_error", [(RuntimeError, True), (_Fatal, False)],
                         ids=["a failed block, stop_on_error", "the worker thread dies"])
def test_a_worker_failure_ends_a_file_run_with_live_run_error(exc, stop_on_error):
    noise = (np.random.default_rng(0).standard_normal(24_000 * 5) * 0.1).astype(np.float32)
    engine = LiveEngine(RealtimeStreamer(_FailsAt(20, exc), 24_000), 24_000, 256, stop_on_error=stop_on_error)
    written: list[np.ndarray] = []
    engine.start()
    try:
        with pytest.raises(LiveRunError, match="boom"):
            run_file(engine, [noise], written.append, realtime=False)
    finally:
        engine.stop()
    assert sum(w.shape[0] for w in written) < noise.shape[0] // 2  # it stopped early instead of finishing


def test_a_pacer_error_is_raised_in_the_calling_thread():
    engine = LiveEngine(RealtimeStreamer(Streamer(DelayConverter()), 24_000), 24_000, 256)

    def blocks():
        yield np.zeros(2048, np.float32)
        raise ValueError("the disk went away")

    engine.start()
    try:
        with pytest.raises(LiveRunError, match="pacer failed .*ValueError: the disk went away"):
            run_file(engine, blocks(), lambda _: None, realtime=False)
    finally:
        engine.stop()


def test_the_callback_plays_non_finite_input_as_silence_and_counts_it():
    engine = LiveEngine(RealtimeStreamer(Streamer(DelayConverter()), 24_000), 24_000, 256)
    block = np.full(256, 0.5, np.float32)
    block[10:20] = np.nan
    block[30] = np.inf
    engine.callback(block.tobytes(), 256)
    assert engine.stats.non_finite_input_samples == 11
    received = engine.in_ring.read(256)
    assert np.isfinite(received).all() and np.all(received[10:20] == 0) and received[0] == 0.5

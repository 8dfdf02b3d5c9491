"""Measured latency through a real audio server: JACK on its dummy backend, PortAudio, `voxflip live`.

The test starts its own JACK server (dummy backend, 48 kHz, 256-frame periods), runs
`voxflip live` on it, and plays clicks from a probe client of its own:

1. probe out -> probe in: the probe's own loop delay B;
2. probe out -> voxflip in, voxflip out -> probe in: the delay D through voxflip.

D - B is voxflip's input-to-output delay. It must equal the latency voxflip declares plus
the device buffering PortAudio reports for its stream, within one block. Skipped (with the
reason) where jackd or pyaudio is missing or the server does not start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

RATE = 48_000
PERIOD = 256

# real time on a real audio server: opt-in (`pytest -m live`), run by CI as its own step
pytestmark = pytest.mark.live


def _jack_ports(env) -> list[str]:
    done = subprocess.run(["jack_lsp"], capture_output=True, text=True, env=env, timeout=10)
    return done.stdout.split() if done.returncode == 0 else []


def _jack_connections(env) -> list[tuple[str, str]]:
    done = subprocess.run(["jack_lsp", "-c"], capture_output=True, text=True, env=env, timeout=10)
    pairs, current = [], None
    for line in done.stdout.splitlines():
        if line.startswith(" "):
            pairs.append((current, line.strip()))
        else:
            current = line.strip()
    return pairs


def _jack(cmd: str, a: str, b: str, env) -> None:
    subprocess.run([cmd, a, b], capture_output=True, env=env, timeout=10)


def _disconnect_all(env) -> None:
    for a, b in _jack_connections(env):
        _jack("jack_disconnect", a, b, env)


@pytest.fixture
def jack_env():
    if shutil.which("jackd") is None or shutil.which("jack_lsp") is None:
        pytest.skip("jackd / jack_lsp not installed (Debian package jackd2)")
    pytest.importorskip("pyaudio", reason="pyaudio not installed (the live extra)")
    name = f"voxflip-test-{os.getpid()}"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_AUDIO_RESERVATION="1")
    server = subprocess.Popen(
        ["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r", str(RATE), "-p", str(PERIOD)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _jack_ports(env):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.skip("the JACK dummy server did not start on this machine")
        time.sleep(0.2)
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name  # for the probe's PortAudio in this process
    try:
        yield env
    finally:
        if old is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = old
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()


class Probe:
    """A PortAudio client that plays a click every half second and records what comes back."""

    def __init__(self, seconds: float) -> None:
        import pyaudio

        from voxflip.live import _quiet_stderr

        self.n = int(seconds * RATE)
        self.play = np.zeros(self.n, np.float32)
        self.clicks = np.arange(RATE // 2, self.n - RATE // 2, RATE // 2)
        self.play[self.clicks] = 0.8
        self.record = np.zeros(self.n, np.float32)
        self.pos = 0
        self._pyaudio = pyaudio
        with _quiet_stderr():
            self.pa = pyaudio.PyAudio()
            self.stream = self.pa.open(format=pyaudio.paFloat32, channels=1, rate=RATE, input=True, output=True,
                                       frames_per_buffer=PERIOD, stream_callback=self._callback, start=False)

    def _callback(self, in_data, frames, time_info, status):
        p = self.pos
        if p + frames <= self.n:
            self.record[p : p + frames] = np.frombuffer(in_data, np.float32)
            out = self.play[p : p + frames]
        else:
            out = np.zeros(frames, np.float32)
        self.pos = p + frames
        return out.tobytes(), self._pyaudio.paContinue

    def run(self) -> None:
        self.pos = 0
        self.stream.start_stream()
        while self.pos < self.n:
            time.sleep(0.05)
        self.stream.stop_stream()

    def delays(self, energy_centre: bool = False) -> list[int]:
        found = []
        for c in self.clicks:
            seg = self.record[c : c + RATE // 2] ** 2
            if seg.max() < 1e-4:
                continue
            if energy_centre:
                window = slice(max(0, int(np.argmax(seg)) - 960), int(np.argmax(seg)) + 960)
                w = seg[window]
                found.append(int(round(window.start + np.sum(np.arange(w.shape[0]) * w) / np.sum(w))))
            else:
                found.append(int(np.argmax(seg > 0.25 * seg.max())))
        return found

    def close(self) -> None:
        self.stream.close()
        self.pa.terminate()


def _probe_and_client_ports(env) -> tuple[dict[str, str], dict[str, str]]:
    ports = _jack_ports(env)
    voxflip = {"in": next(p for p in ports if p.startswith("PortAudio:in")),
               "out": next(p for p in ports if p.startswith("PortAudio:out"))}
    probe = {"in": next(p for p in ports if p.startswith("PortAudio-01:in")),
             "out": next(p for p in ports if p.startswith("PortAudio-01:out"))}
    return voxflip, probe


@pytest.mark.parametrize(("method", "mix", "extra"),
                         [("world-nodur", 0.0, ()), ("world-nodur", 1.0, ()),
                          ("world-nodur", 1.0, ("--voice-floor", "100", "--chunk-ms", "5")), ("flow-nodur", 1.0, ())],
                         ids=["engine-path", "world-nodur", "world-nodur-low-latency", "flow-nodur"])
def test_click_delay_through_voxflip_live_equals_declared_latency_plus_device_buffers(jack_env, tmp_path: Path, method,
                                                                                      mix, extra):
    if method.startswith("flow"):
        pytest.importorskip("onnxruntime", reason="the flow converters need an ONNX runtime (the cpu extra)")
    stats_path = tmp_path / "stats.json"
    live = subprocess.Popen(
        [sys.executable, "-m", "voxflip", "live", "--to", "speech", "--method", method, "--seconds", "12", "--sample-rate", str(RATE),
         "--block-size", str(PERIOD), "--mix", str(mix), "--stats-json", str(stats_path), "-q", *extra],
        env=jack_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not any(p.startswith("PortAudio:") for p in _jack_ports(jack_env)):
            if live.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"voxflip live did not come up: {live.communicate()[1][-800:]}")
            time.sleep(0.2)
        probe = Probe(seconds=3.0)
        try:
            voxflip, ports = _probe_and_client_ports(jack_env)
            _disconnect_all(jack_env)
            _jack("jack_connect", ports["out"], ports["in"], jack_env)
            probe.run()
            loop = probe.delays()
            _disconnect_all(jack_env)
            _jack("jack_connect", ports["out"], voxflip["in"], jack_env)
            _jack("jack_connect", voxflip["out"], ports["in"], jack_env)
            probe.run()
            through = probe.delays(energy_centre=mix > 0)
        finally:
            probe.close()
        _, err = live.communicate(timeout=30)
        assert live.returncode == 0, err[-800:]
    finally:
        if live.poll() is None:
            live.kill()
    stats = json.loads(stats_path.read_text())
    assert len(set(loop)) == 1, f"the probe's own loop should be constant, got {loop}"
    device = round((stats["device_input_latency_s"] + stats["device_output_latency_s"]) * RATE)
    expected = stats["declared_latency_samples"] + device
    measured = [d - loop[0] for d in through]
    assert len(measured) >= 4, f"too few clicks came back: {through}"
    off = [m - expected for m in measured]
    print(f"\n{'engine path' if mix == 0 else method}: declared {stats['declared_latency_samples']} + device "
          f"{device} = {expected} samples; measured {measured}")
    assert all(abs(o) <= PERIOD for o in off), (
        f"measured {measured} vs declared {stats['declared_latency_samples']} + device {device} = {expected}"
    )
    if mix == 0.0:
        assert len(set(measured)) == 1, f"the engine path should not jitter: {measured}"

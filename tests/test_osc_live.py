"""OSC into a running `voxflip live` over real UDP: each address changes the sound as it should.

The engine runs as a real subprocess (`voxflip live --input-file ... --osc 127.0.0.1:PORT`),
paced in real time from a file; the test sends OSC datagrams from a UDP socket while it plays
and analyses the output file afterwards. The engine gets a 20 ms scheduling margin
(`--safety-ms 40`): this 2-core test machine also runs the sender, and the point here is
what OSC does, not how tight the margin can be (docs/live.md discusses that).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

RATE = 16_000
BLOCK = 160   # samples per device block of the engine under test

# real time on a real audio path: opt-in (`pytest -m live`), run by CI as its own step
pytestmark = pytest.mark.live


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _datagram(address: str, *args) -> bytes:
    builder = OscMessageBuilder(address=address)
    for a in args:
        builder.add_arg(a)
    return builder.build().dgram


class Live:
    """A `voxflip live` subprocess playing a file, with an OSC socket to talk to it."""

    def __init__(self, tmp: Path, audio: np.ndarray, *extra: str, safety_ms: float = 40.0) -> None:
        self.input = tmp / "in.wav"
        self.output = tmp / "out.wav"
        self.stats = tmp / "stats.json"
        sf.write(self.input, audio, RATE, subtype="FLOAT")
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voxflip", "live", "--input-file", str(self.input), "--output-file",
             str(self.output), "--osc", f"127.0.0.1:{self.port}", "--stats-json", str(self.stats),
             "--block-size", str(BLOCK), "--safety-ms", str(safety_ms), "-q", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        deadline = time.monotonic() + 20
        # The timeline starts when the engine started playing, not when its OSC server came up:
        # the server answers before the first block is converted (its real-time factors are -1
        # until then), and on a slow start the gap can be a second. Once it plays, the reply's
        # blocks_out says how long it has been playing.
        while (params := self.status()) is None or params[1] < 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"voxflip live did not start playing: {self.proc.communicate()[1][-800:]}")
            time.sleep(0.01)
        played = dict(zip(params[7::2], params[8::2], strict=True))["blocks_out"]
        self.t0 = time.monotonic() - played * BLOCK / RATE

    def status(self) -> list | None:
        """The engine's status reply (docs/osc.md), or None if none came within the socket timeout."""
        self.send("/voxflip/status")
        try:
            return OscMessage(self.sock.recv(4096)).params
        except TimeoutError:
            return None

    def send(self, address: str, *args) -> None:
        self.sock.sendto(_datagram(address, *args), ("127.0.0.1", self.port))

    def wait_until(self, seconds: float) -> None:
        """Sleep until ``seconds`` after the engine started playing (within a few blocks)."""
        delay = self.t0 + seconds - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def finish(self) -> tuple[np.ndarray, dict]:
        out, err = self.proc.communicate(timeout=60)
        self.sock.close()
        assert self.proc.returncode == 0, err[-800:]
        audio, rate = sf.read(self.output, dtype="float32")
        assert rate == RATE
        return audio, json.loads(self.stats.read_text())


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)


def test_gain_lowers_the_level_by_its_decibels_without_a_click(tmp_path: Path):
    x = tone(4.0)
    live = Live(tmp_path, x, "--to", "speech", "--method", "world-nodur", "--mix", "0")
    live.wait_until(1.5)
    live.send("/voxflip/gain", -20.0)
    y, stats = live.finish()
    lat = stats["declared_latency_samples"]
    assert stats["osc"]["accepted"] >= 1 and stats["xruns"] == 0
    before = y[lat + int(0.2 * RATE) : lat + int(1.0 * RATE)]
    after = y[lat + int(3.0 * RATE) : lat + int(3.8 * RATE)]
    assert rms_db(after) - rms_db(before) == pytest.approx(-20.0, abs=0.3)
    natural_step = np.max(np.abs(np.diff(x)))
    assert np.max(np.abs(np.diff(y))) <= natural_step * 1.01  # the 20 ms ramp adds no step larger than the tone's own


def test_bypass_makes_the_output_the_input_after_the_declared_latency(tmp_path: Path, example_speech):
    speech, _ = example_speech
    live = Live(tmp_path, speech, "--to", "speech", "--method", "world-nodur")
    live.wait_until(1.0)
    live.send("/voxflip/mode", "bypass")
    y, stats = live.finish()
    lat = stats["declared_latency_samples"]
    tail = slice(int(2.5 * RATE), speech.shape[0])  # well after the switch and its crossfade
    assert np.allclose(y[lat:][tail], speech[tail], atol=1e-6)
    early = slice(int(0.2 * RATE), int(0.8 * RATE))  # before it: converted, so different
    assert not np.allclose(y[lat:][early], speech[early], atol=1e-2)


def test_live_notes_make_the_output_follow_their_pitch(tmp_path: Path, example_speech):
    parselmouth = pytest.importorskip("parselmouth")
    speech, _ = example_speech
    live = Live(tmp_path, speech, "--to", "singing")
    live.wait_until(0.5)
    live.send("/voxflip/note", 57, 1.0)   # A3 220 Hz
    live.wait_until(1.6)
    live.send("/voxflip/note", 57, 0.0)
    live.wait_until(1.8)
    live.send("/voxflip/note", 64, 1.0)   # E4 329.6 Hz
    live.wait_until(3.0)
    live.send("/voxflip/note", 64, 0.0)
    y, stats = live.finish()
    assert stats["osc"]["accepted"] == 4
    pitch = parselmouth.Sound(y.astype(np.float64), RATE).to_pitch_ac(time_step=0.01, pitch_floor=75, pitch_ceiling=800)
    f0 = pitch.selected_array["frequency"]
    at = np.nonzero(f0 > 0)[0]
    assert at.size > 50, "the notes should have been sung"
    # Where each note lands in the output depends on when the engine started playing relative to
    # the sender's clock (a loaded machine moves it), so the frames are told apart by pitch: most
    # voiced frames are on one of the two notes, each note has a good run of them, in order.
    cents = lambda hz, ref: np.abs(1200 * np.log2(hz / ref))  # noqa: E731
    on_a3 = at[cents(f0[at], 220.0) < 50]
    on_e4 = at[cents(f0[at], 329.63) < 50]
    assert on_a3.size >= 15 and on_e4.size >= 15, (on_a3.size, on_e4.size, at.size)
    assert on_a3.size + on_e4.size >= 0.7 * at.size, (on_a3.size, on_e4.size, at.size)
    assert np.median(on_a3) < np.median(on_e4)


def test_a_flood_of_valid_and_malformed_messages_leaves_the_engine_running(tmp_path: Path):
    """10,000 datagrams in about 3.5 s: a quarter valid gain changes, the rest random bytes, out-of-range
    values and unknown addresses. The server takes at most 1000 per second (the rest are dropped unread
    and counted); the engine must not xrun and must end in the state of the last message.
    The sender runs on the same 2 cores as the engine, so the engine gets a 40 ms scheduling margin."""
    x = tone(8.0)
    live = Live(tmp_path, x, "--to", "speech", "--method", "world-nodur", "--mix", "0", safety_ms=40.0)
    live.wait_until(0.5)
    rng = np.random.default_rng(0)
    sent = 0
    started = time.monotonic()
    while sent < 10_000:
        for _ in range(200):
            kind = sent % 4
            if kind == 0:
                live.send("/voxflip/gain", float(rng.uniform(-30, 0)))
            elif kind == 1:
                live.sock.sendto(rng.bytes(int(rng.integers(1, 64))), ("127.0.0.1", live.port))
            elif kind == 2:
                live.send("/voxflip/mix", 5.0)  # out of range
            else:
                live.send("/voxflip/nothing", 1)
            sent += 1
        time.sleep(0.07)  # 10,000 messages in about 3.5 s
    flood_s = time.monotonic() - started
    time.sleep(0.3)
    live.send("/voxflip/gain", -12.0)  # the last word: must be the final state
    y, stats = live.finish()
    osc = stats["osc"]
    assert flood_s < 5.0
    assert stats["xruns"] == 0 and stats["worker_errors"] == 0
    assert osc["received"] == osc["accepted"] + osc["status_requests"] + osc["rejected"]
    assert osc["malformed"] > 0 and osc["out_of_range"] > 0 and osc["unknown_address"] > 0
    assert osc["datagrams"] > 9000  # UDP on loopback may drop a few under a flood; the server counts what it saw
    lat = stats["declared_latency_samples"]
    end = y[lat + int(7.0 * RATE) : lat + int(7.9 * RATE)]
    assert rms_db(end) == pytest.approx(rms_db(x[: int(0.9 * RATE)]) - 12.0, abs=0.3)


def test_the_python_example_sender_runs_against_voxflip_live(tmp_path: Path):
    live = Live(tmp_path, tone(4.0), "--to", "speech", "--method", "world-nodur")
    example = Path(__file__).resolve().parents[1] / "examples" / "osc_send.py"
    done = subprocess.run([sys.executable, str(example), "--port", str(live.port), "--note-s", "0.05"],
                          capture_output=True, text=True, timeout=30)
    y, stats = live.finish()
    assert done.returncode == 0, done.stderr
    assert "latency_ms" in done.stdout
    assert stats["osc"]["accepted"] == 8  # mix, gain, three notes on and off

"""OSC fuzzing against a running engine: arbitrary datagrams over real UDP, audio still flowing.

A real :class:`~voxflip.osc_control.server.OscServer` listens on a UDP port; the test plays
the part of ``voxflip live``'s worker -- it drains the server's queue into a real
:class:`~voxflip.streaming.live_control.LiveController` between blocks and streams audio
through it -- while a socket sends what Hypothesis draws: well-formed messages to real and
made-up addresses with arguments of every OSC type, the same with bytes mutated, bundles, and
plain noise. Whatever arrives, the server counts every datagram exactly once, nothing but a
:class:`~voxflip.engine.errors.ConfigError` comes out of ``apply``, every block comes back
finite and as long as it went in, and the server still answers ``/voxflip/status``.
"""

from __future__ import annotations

import queue
import socket
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from voxflip.engine.errors import ConfigError
from voxflip.engine.params import ParamChange
from voxflip.engine.registry import live_default_converter, make_converter
from voxflip.osc_control.address_space import REJECTION_REASONS
from voxflip.osc_control.server import OscServer
from voxflip.streaming.live_control import LiveController

RATE = 16_000
BLOCK = 256

ADDRESSES = ["/voxflip/mode", "/voxflip/mix", "/voxflip/gain", "/voxflip/note", "/voxflip/transpose",
             "/voxflip/s2s/duration", "/voxflip/fx/level/gain_db", "/voxflip/fx/verb/room_size", "/voxflip/preset",
             "/voxflip/status", "/voxflip", "/", "/voxflip/fx//", "/voxflip/fx/a/b/c", "/voxflip/*", "/voxflip/mix/",
             "//voxflip/mix", "/voxflip/preset/../../etc"]

args = st.one_of(
    st.integers(-(2 ** 31), 2 ** 31 - 1),
    st.integers(-(2 ** 63), 2 ** 63 - 1),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.sampled_from(["speech", "singing", "bypass", "hall", "radio", "../hall", "/etc/passwd", "x" * 300, ""]),
    st.binary(max_size=64),
    st.booleans(),
    st.none(),
)


def _built(address: str, values: list) -> OscMessage:
    """The message python-osc builds; arguments it cannot encode (an empty blob, a float32 overflow) are left out."""
    builder = OscMessageBuilder(address=address)
    for value in values:
        trial = OscMessageBuilder(address=address)
        trial.add_arg(value)
        try:
            trial.build()
        except Exception:   # what python-osc cannot write or read back (BuildError, OverflowError, ParseError, ...)
            continue
        builder.add_arg(value)
    try:
        return builder.build()
    except Exception:   # an address python-osc cannot read back (a NUL inside it, ...)
        return OscMessageBuilder(address="/voxflip/unreadable").build()


def _message(address: str, values: list) -> bytes:
    return _built(address, values).dgram


built = st.builds(_built, st.one_of(st.sampled_from(ADDRESSES), st.text(min_size=1, max_size=40).map(lambda s: "/" + s)),
                  st.lists(args, max_size=4))
messages = built.map(lambda message: message.dgram)


@st.composite
def mutated_message(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(messages))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(1, len(data))):]
    return bytes(data)


@st.composite
def bundles(draw: st.DrawFn) -> bytes:
    builder = OscBundleBuilder(IMMEDIATELY)
    for _ in range(draw(st.integers(0, 5))):
        builder.add_content(draw(built))
    data = bytearray(builder.build().dgram)
    if draw(st.booleans()) and len(data) > 16:   # corrupt an element size
        at = draw(st.integers(16, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    return bytes(data)


datagrams = st.one_of(messages, messages, mutated_message(), bundles(), st.binary(max_size=512))


@pytest.fixture(scope="module")
def engine():
    changes: queue.Queue[ParamChange] = queue.Queue(maxsize=256)
    converters = {d: make_converter(d, live_default_converter(d).name,
                                    **({"live_notes": True} if d == "singing" else {}))
                  for d in ("speech", "singing")}
    controller = LiveController(converters, "speech", RATE)
    with OscServer(changes, port=0, max_rate=1e6, burst=10_000) as server:
        yield server, changes, controller


def _drain_and_play(changes: queue.Queue[ParamChange], controller: LiveController, blocks: int) -> None:
    t = np.arange(blocks * BLOCK) / RATE
    x = (0.3 * np.sin(2 * np.pi * 200 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    for i in range(blocks):
        while True:
            try:
                change = changes.get_nowait()
            except queue.Empty:
                break
            try:
                controller.apply(change)
            except ConfigError as exc:
                assert "\n" not in str(exc)
        block = x[i * BLOCK:(i + 1) * BLOCK]
        y = controller.realtime.process(block)
        assert y.shape == block.shape and np.isfinite(y).all()


def _wait_for(server: OscServer, datagrams: int, timeout_s: float = 5.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counters = server.counters
        if counters["datagrams"] >= datagrams:
            return counters
        time.sleep(0.005)
    return server.counters


def _status_answered(server: OscServer, sock: socket.socket) -> bool:
    sock.sendto(_message("/voxflip/status", []), server.address)
    try:
        reply = OscMessage(sock.recv(65536))
    except TimeoutError:
        return False
    return reply.address == "/voxflip/status"


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(batch=st.lists(datagrams, min_size=1, max_size=25))
def test_fuzzed_datagrams_leave_the_engine_playing_and_counting(engine, batch: list[bytes]) -> None:
    server, changes, controller = engine
    before = server.counters
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2.0)
        sent = 0
        for data in batch:
            if len(data) <= 65_000:
                sock.sendto(data, server.address)
                sent += 1
        counters = _wait_for(server, before["datagrams"] + sent)
        _drain_and_play(changes, controller, blocks=8)
        assert counters["datagrams"] - before["datagrams"] == sent, (before, counters)
        assert counters["rejected"] == sum(counters[r] for r in REJECTION_REASONS), counters
        assert counters["received"] == counters["accepted"] + counters["status_requests"] + counters["rejected"]
        assert counters["internal_errors"] == 0, counters
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fresh:   # the batch's own status replies went to `sock`
        fresh.bind(("127.0.0.1", 0))
        fresh.settimeout(2.0)
        assert _status_answered(server, fresh)

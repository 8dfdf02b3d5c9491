"""OSC control: the address space, and the server over real UDP on 127.0.0.1 (port 0).

Every server test sends real datagrams to a real socket; nothing of the network is
mocked. Waits are bounded polls on the server's own counters, never fixed sleeps.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from voxflip.engine.params import PARAMETERS, ParamChange
from voxflip.osc_control import (
    ADDRESSES,
    REJECTION_REASONS,
    OscServer,
    Rejection,
    StatusRequest,
    parse_bind,
    parse_cidrs,
    parse_message,
)

REPO = Path(__file__).resolve().parents[1]
LOGGER = "voxflip.osc_control.server"
TIMEOUT_S = 5.0
STATUS = {"latency_ms": 51.0, "rtf_p50": 0.25, "rtf_p99": 0.75, "xruns": 3, "cpu_load": 0.5}


# --- helpers ---

def osc(address: str, *args: Any) -> bytes:
    """One OSC message; each arg is ``(type_tag, value)`` (``T``/``F``/``N`` take None) or a bare value."""
    builder = OscMessageBuilder(address)
    for arg in args:
        if isinstance(arg, tuple):
            tag, value = arg
            builder.add_arg(value, tag)
        else:
            builder.add_arg(arg)
    return builder.build().dgram


def bundle(*contents: bytes, timestamp: float = IMMEDIATELY) -> bytes:
    builder = OscBundleBuilder(timestamp)
    for content in contents:
        builder.add_content(OscMessage(content))
    return builder.build().dgram


def raw_bundle(*elements: bytes, sizes: list[int] | None = None) -> bytes:
    """A bundle built by hand, so that element sizes can lie."""
    data = b"#bundle\x00" + b"\x00" * 7 + b"\x01"
    for i, element in enumerate(elements):
        size = len(element) if sizes is None else sizes[i]
        data += size.to_bytes(4, "big", signed=True) + element
    return data


def send_and_wait(client: socket.socket, server: OscServer, data: bytes, items: int = 1) -> None:
    """Send one datagram and wait until the server has accounted for ``items`` more items."""
    before = server.counters["received"]
    client.sendto(data, server.address)
    assert wait_until(lambda: server.counters["received"] >= before + items), server.counters


def drain(changes: queue.Queue[ParamChange]) -> list[ParamChange]:
    out = []
    while True:
        try:
            out.append(changes.get_nowait())
        except queue.Empty:
            return out


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def udp_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(TIMEOUT_S)
    return sock


def assert_accounting_adds_up(counters: dict[str, int]) -> None:
    assert counters["rejected"] == sum(counters[reason] for reason in REJECTION_REASONS), counters
    assert counters["received"] == counters["accepted"] + counters["status_requests"] + counters["rejected"], counters
    assert counters["internal_errors"] == 0, counters


# --- fixtures ---

@pytest.fixture
def changes() -> queue.Queue[ParamChange]:
    return queue.Queue(maxsize=64)


@pytest.fixture
def server(changes: queue.Queue[ParamChange]) -> Iterator[OscServer]:
    with OscServer(changes, port=0, status=lambda: dict(STATUS)) as running:
        yield running


@pytest.fixture
def client() -> Iterator[socket.socket]:
    sock = udp_socket()
    yield sock
    sock.close()


# --- every address produces the right ParamChange ---

VALID = [
    ("mode-speech", osc("/voxflip/mode", "speech"), ("mode", "speech")),
    ("mode-singing", osc("/voxflip/mode", "singing"), ("mode", "singing")),
    ("mode-bypass", osc("/voxflip/mode", "bypass"), ("mode", "bypass")),
    ("mix-f", osc("/voxflip/mix", ("f", 0.25)), ("mix", 0.25)),
    ("mix-f-0", osc("/voxflip/mix", ("f", 0.0)), ("mix", 0.0)),
    ("mix-f-1", osc("/voxflip/mix", ("f", 1.0)), ("mix", 1.0)),
    ("mix-i-1", osc("/voxflip/mix", ("i", 1)), ("mix", 1.0)),
    ("mix-i-0", osc("/voxflip/mix", ("i", 0)), ("mix", 0.0)),
    ("mix-d", osc("/voxflip/mix", ("d", 0.3)), ("mix", 0.3)),
    ("gain-f", osc("/voxflip/gain", ("f", -6.0)), ("gain", -6.0)),
    ("gain-i-min", osc("/voxflip/gain", ("i", -60)), ("gain", -60.0)),
    ("gain-f-max", osc("/voxflip/gain", ("f", 24.0)), ("gain", 24.0)),
    ("note-i-f", osc("/voxflip/note", ("i", 60), ("f", 0.5)), ("note", (60, 0.5))),
    ("note-off-f", osc("/voxflip/note", ("i", 60), ("f", 0.0)), ("note", (60, 0.0))),
    ("note-i-i-127", osc("/voxflip/note", ("i", 72), ("i", 127)), ("note", (72, 1.0))),
    ("note-i-i-64", osc("/voxflip/note", ("i", 0), ("i", 64)), ("note", (0, 64 / 127))),
    ("note-off-i", osc("/voxflip/note", ("i", 127), ("i", 0)), ("note", (127, 0.0))),
    ("note-no-velocity", osc("/voxflip/note", ("i", 60)), ("note", (60, 1.0))),
    ("note-f-whole", osc("/voxflip/note", ("f", 61.0), ("f", 0.75)), ("note", (61, 0.75))),
    ("transpose-f", osc("/voxflip/transpose", ("f", -12.5)), ("transpose", -12.5)),
    ("transpose-i", osc("/voxflip/transpose", ("i", 24)), ("transpose", 24.0)),
    ("transpose-min", osc("/voxflip/transpose", ("f", -24.0)), ("transpose", -24.0)),
    ("duration-f", osc("/voxflip/s2s/duration", ("f", 0.5)), ("duration", 0.5)),
    ("duration-i", osc("/voxflip/s2s/duration", ("i", 1)), ("duration", 1.0)),
    ("fx-f", osc("/voxflip/fx/reverb/wet_db", ("f", -12.0)), ("fx", ("reverb", "wet_db", -12.0))),
    ("fx-i", osc("/voxflip/fx/comp-1/ratio", ("i", 4)), ("fx", ("comp-1", "ratio", 4.0))),
    ("fx-T", osc("/voxflip/fx/Chorus/bypass", ("T", None)), ("fx", ("Chorus", "bypass", True))),
    ("fx-F", osc("/voxflip/fx/Chorus/bypass", ("F", None)), ("fx", ("Chorus", "bypass", False))),
    ("preset", osc("/voxflip/preset", "vocal-clean"), ("preset", "vocal-clean")),
    ("preset-underscore", osc("/voxflip/preset", "My_Preset_2"), ("preset", "My_Preset_2")),
]


@pytest.mark.parametrize("data, expected", [case[1:] for case in VALID], ids=[case[0] for case in VALID])
def test_each_address_queues_the_right_param_change(server, client, changes, data, expected):
    client.sendto(data, server.address)
    change = changes.get(timeout=TIMEOUT_S)
    assert (change.name, change.value) == expected   # the values are exact in float32
    assert type(change.value) is type(expected[1])
    if change.name == "note":
        assert type(change.value[0]) is int and type(change.value[1]) is float
    assert change.source == f"osc 127.0.0.1:{client.getsockname()[1]}"
    assert changes.empty()
    assert server.counters["accepted"] == 1
    assert_accounting_adds_up(server.counters)


# --- every bad message is rejected, counted under its reason, queues nothing, logs once ---

BAD = [
    # unknown_address
    ("root", osc("/voxflip", ("f", 0.5)), "unknown_address"),
    ("trailing-slash", osc("/voxflip/", ("f", 0.5)), "unknown_address"),
    ("unknown-leaf", osc("/voxflip/volume", ("f", 0.5)), "unknown_address"),
    ("other-root", osc("/other/mix", ("f", 0.5)), "unknown_address"),
    ("too-deep", osc("/voxflip/mix/extra", ("f", 0.5)), "unknown_address"),
    ("wildcard-star", osc("/voxflip/*", ("f", 0.5)), "unknown_address"),
    ("wildcard-question", osc("/voxflip/m?x", ("f", 0.5)), "unknown_address"),
    ("wildcard-bracket", osc("/voxflip/[", ("f", 0.5)), "unknown_address"),
    ("upper-case", osc("/VOXFLIP/mix", ("f", 0.5)), "unknown_address"),
    ("fx-no-param", osc("/voxflip/fx/reverb", ("f", 0.5)), "unknown_address"),
    ("fx-too-deep", osc("/voxflip/fx/reverb/wet/db", ("f", 0.5)), "unknown_address"),
    ("fx-empty-name", osc("/voxflip/fx//wet", ("f", 0.5)), "unknown_address"),
    ("fx-dot-in-param", osc("/voxflip/fx/reverb/wet.db", ("f", 0.5)), "unknown_address"),
    ("fx-space-in-name", osc("/voxflip/fx/re verb/wet", ("f", 0.5)), "unknown_address"),
    ("fx-long-name", osc("/voxflip/fx/" + "r" * 65 + "/wet", ("f", 0.5)), "unknown_address"),
    # bad_args: count
    ("mix-no-args", osc("/voxflip/mix"), "bad_args"),
    ("mix-two-args", osc("/voxflip/mix", ("f", 0.5), ("f", 0.5)), "bad_args"),
    ("mode-no-args", osc("/voxflip/mode"), "bad_args"),
    ("note-no-args", osc("/voxflip/note"), "bad_args"),
    ("note-three-args", osc("/voxflip/note", ("i", 60), ("f", 0.5), ("f", 0.5)), "bad_args"),
    ("fx-no-args", osc("/voxflip/fx/reverb/wet_db"), "bad_args"),
    ("fx-two-args", osc("/voxflip/fx/reverb/wet_db", ("f", 1.0), ("f", 2.0)), "bad_args"),
    ("preset-no-args", osc("/voxflip/preset"), "bad_args"),
    ("status-with-arg", osc("/voxflip/status", ("f", 1.0)), "bad_args"),
    # bad_args: type
    ("mix-string", osc("/voxflip/mix", "0.5"), "bad_args"),
    ("mix-true", osc("/voxflip/mix", ("T", None)), "bad_args"),
    ("mix-nil", osc("/voxflip/mix", ("N", None)), "bad_args"),
    ("mix-blob", osc("/voxflip/mix", ("b", b"\x01\x02")), "bad_args"),
    ("mix-midi", osc("/voxflip/mix", ("m", (0, 0x90, 60, 100))), "bad_args"),
    ("mix-array", osc("/voxflip/mix", (["f"], [0.5])), "bad_args"),
    ("gain-string", osc("/voxflip/gain", "loud"), "bad_args"),
    ("mode-int", osc("/voxflip/mode", ("i", 1)), "bad_args"),
    ("note-string", osc("/voxflip/note", "C4"), "bad_args"),
    ("note-fraction", osc("/voxflip/note", ("f", 60.5)), "bad_args"),
    ("note-velocity-string", osc("/voxflip/note", ("i", 60), "loud"), "bad_args"),
    ("note-velocity-true", osc("/voxflip/note", ("i", 60), ("T", None)), "bad_args"),
    ("fx-string", osc("/voxflip/fx/reverb/wet_db", "-12"), "bad_args"),
    ("preset-int", osc("/voxflip/preset", ("i", 3)), "bad_args"),
    # bad_args: not finite
    ("mix-nan", osc("/voxflip/mix", ("f", math.nan)), "bad_args"),
    ("mix-inf", osc("/voxflip/mix", ("f", math.inf)), "bad_args"),
    ("gain-minus-inf-double", osc("/voxflip/gain", ("d", -math.inf)), "bad_args"),
    ("transpose-nan", osc("/voxflip/transpose", ("f", math.nan)), "bad_args"),
    ("note-velocity-nan", osc("/voxflip/note", ("i", 60), ("f", math.nan)), "bad_args"),
    ("fx-nan", osc("/voxflip/fx/reverb/wet_db", ("f", math.nan)), "bad_args"),
    ("duration-inf", osc("/voxflip/s2s/duration", ("f", math.inf)), "bad_args"),
    # out_of_range
    ("mix-above", osc("/voxflip/mix", ("f", 1.5)), "out_of_range"),
    ("mix-below", osc("/voxflip/mix", ("f", -0.01)), "out_of_range"),
    ("mix-int-2", osc("/voxflip/mix", ("i", 2)), "out_of_range"),
    ("gain-below", osc("/voxflip/gain", ("f", -61.0)), "out_of_range"),
    ("gain-above", osc("/voxflip/gain", ("f", 24.5)), "out_of_range"),
    ("transpose-above", osc("/voxflip/transpose", ("f", 24.5)), "out_of_range"),
    ("transpose-int-below", osc("/voxflip/transpose", ("i", -25)), "out_of_range"),
    ("duration-above", osc("/voxflip/s2s/duration", ("f", 1.01)), "out_of_range"),
    ("note-128", osc("/voxflip/note", ("i", 128), ("f", 0.5)), "out_of_range"),
    ("note-negative", osc("/voxflip/note", ("i", -1)), "out_of_range"),
    ("note-int64", osc("/voxflip/note", ("h", 2**40)), "out_of_range"),
    ("velocity-float-above", osc("/voxflip/note", ("i", 60), ("f", 1.5)), "out_of_range"),
    ("velocity-int-above", osc("/voxflip/note", ("i", 60), ("i", 128)), "out_of_range"),
    ("velocity-int-negative", osc("/voxflip/note", ("i", 60), ("i", -1)), "out_of_range"),
    ("mode-capitalised", osc("/voxflip/mode", "Speech"), "out_of_range"),
    ("mode-unknown", osc("/voxflip/mode", "talk"), "out_of_range"),
    ("mode-empty", osc("/voxflip/mode", ""), "out_of_range"),
    # not_allowed (preset names that are not plain names; more in the preset test below)
    ("preset-path", osc("/voxflip/preset", "../evil"), "not_allowed"),
]


@pytest.mark.parametrize("data, reason", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_message_is_rejected_counted_and_logged_once(server, client, changes, caplog, data, reason):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    send_and_wait(client, server, data)
    counters = server.counters
    assert counters[reason] == 1, counters
    assert counters["rejected"] == 1 and counters["accepted"] == 0, counters
    assert_accounting_adds_up(counters)
    assert changes.empty()
    lines = warnings_of(caplog)
    assert len(lines) == 1, lines
    assert f"({reason})" in lines[0] and f"127.0.0.1:{client.getsockname()[1]}" in lines[0]
    assert "\n" not in lines[0]


@pytest.mark.parametrize("name", [
    "../evil", "..", "a/b", "/etc/passwd", "presets/../../x", "a\\b", "C:\\presets\\x", ".hidden", ".",
    "ok.json", "", "x" * 65, "has space", "naïve", "tab\there", "nul\x01byte",
])
def test_preset_names_that_are_paths_or_not_plain_are_refused(server, client, changes, caplog, name):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    send_and_wait(client, server, osc("/voxflip/preset", name))
    assert server.counters["not_allowed"] == 1, server.counters
    assert changes.empty()
    assert len(warnings_of(caplog)) == 1


def test_a_burst_of_the_same_bad_message_logs_a_bounded_number_of_lines(changes, client, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    burst = 300
    # the datagram rate limit (1000/s after a 200-datagram burst) is not what this tests: a fast
    # sender could trip it and see some of the 300 counted as rate_limited instead
    with OscServer(changes, port=0, log_interval_s=1.0, max_rate=1e6, burst=burst) as server:
        started = time.monotonic()
        for _ in range(burst):
            client.sendto(osc("/voxflip/mix", ("f", 7.0)), server.address)
            time.sleep(0.0002)   # keep the burst within the socket buffer: every one must arrive
        assert wait_until(lambda: server.counters["received"] >= burst), server.counters
        elapsed_s = time.monotonic() - started
        during = warnings_of(caplog)
        assert server.counters["out_of_range"] == burst
    # one line per reason per second (+1 for a burst that straddles a boundary)
    assert 1 <= len(during) <= 2 + int(elapsed_s), during
    # the suppressed ones are accounted for: in the next line, or by stop()
    lines = warnings_of(caplog)
    skipped = sum(int(n) for line in lines for n in re.findall(r"(\d+) more 'out_of_range' not logged", line))
    assert len(during) + skipped == burst, lines


# --- malformed datagrams ---

_MIX = osc("/voxflip/mix", ("f", 0.5))
_RANDOM = random.Random(1234).randbytes(96)

MALFORMED = [
    ("empty", b""),
    ("random-bytes", _RANDOM),
    ("text", b"hello voxflip"),
    ("truncated-address", _MIX[:6]),
    ("truncated-argument", _MIX[:-4]),
    ("no-type-tag-comma", b"/voxflip/mix\x00\x00\x00\x00f\x00\x00\x00?\x00\x00\x00"),
    ("unknown-type-tag", b"/voxflip/mix\x00\x00\x00\x00,x\x00\x00\x00\x00\x00\x01"),
    ("unclosed-array", b"/voxflip/mix\x00\x00\x00\x00,[f\x00?\x00\x00\x00"),
    ("non-utf8-string", b"/voxflip/mode\x00\x00\x00,s\x00\x00\xff\xfe\x00\x00"),
    ("non-utf8-address", b"/vox\xff\x00\x00\x00,f\x00\x00?\x00\x00\x00"),
    ("bundle-header-only-half", b"#bundle\x00\x00\x00"),
    ("bundle-negative-size", raw_bundle(_MIX, sizes=[-4])),
    ("bundle-zero-size", raw_bundle(_MIX, sizes=[0])),
    ("bundle-size-too-big", raw_bundle(_MIX, sizes=[len(_MIX) + 4])),
    ("bundle-truncated", bundle(_MIX, _MIX)[:-3]),
    ("bundle-element-not-osc", raw_bundle(b"abcd")),
    ("bundle-nested-too-deep", raw_bundle(raw_bundle(raw_bundle(raw_bundle(raw_bundle(raw_bundle(raw_bundle(
        raw_bundle(raw_bundle(raw_bundle(_MIX))))))))))),
]


@pytest.mark.parametrize("data", [case[1] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_datagrams_are_counted_and_the_server_keeps_serving(server, client, changes, caplog, data):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    send_and_wait(client, server, data)
    assert server.counters["malformed"] == 1, server.counters
    assert changes.empty()
    assert len(warnings_of(caplog)) == 1 and "(malformed)" in warnings_of(caplog)[0]
    # still serving (the negative bundle size loops forever in python-osc's own parser)
    client.sendto(osc("/voxflip/mix", ("f", 0.25)), server.address)
    assert changes.get(timeout=TIMEOUT_S).value == 0.25
    assert_accounting_adds_up(server.counters)


# --- bundles ---

def test_a_bundle_with_two_messages_queues_both_in_order(server, client, changes):
    send_and_wait(client, server, bundle(osc("/voxflip/mix", ("f", 0.25)), osc("/voxflip/gain", ("f", -3.0))), items=2)
    assert [(c.name, c.value) for c in drain(changes)] == [("mix", 0.25), ("gain", -3.0)]
    counters = server.counters
    assert counters["datagrams"] == 1 and counters["accepted"] == 2
    assert_accounting_adds_up(counters)


def test_a_nested_bundle_and_a_bad_message_inside_are_handled_one_by_one(server, client, changes):
    inner = OscBundleBuilder(IMMEDIATELY)
    inner.add_content(OscMessage(osc("/voxflip/transpose", ("f", 2.0))))
    outer = OscBundleBuilder(IMMEDIATELY)
    outer.add_content(inner.build())
    outer.add_content(OscMessage(osc("/voxflip/mix", ("f", 9.0))))
    send_and_wait(client, server, outer.build().dgram, items=2)
    assert [(c.name, c.value) for c in drain(changes)] == [("transpose", 2.0)]
    assert server.counters["out_of_range"] == 1


def test_a_future_dated_bundle_is_handled_at_once(server, client, changes):
    client.sendto(bundle(osc("/voxflip/mix", ("f", 0.75)), osc("/voxflip/mode", "bypass"),
                         timestamp=time.time() + 3600), server.address)
    got = [changes.get(timeout=TIMEOUT_S), changes.get(timeout=TIMEOUT_S)]   # within seconds, not an hour
    assert [(c.name, c.value) for c in got] == [("mix", 0.75), ("mode", "bypass")]
    # and the server thread is not asleep: the next message goes through at once
    client.sendto(osc("/voxflip/gain", ("f", 0.0)), server.address)
    assert changes.get(timeout=1.0).name == "gain"


# --- status replies ---

def _status_reply(sock: socket.socket) -> OscMessage:
    data, _ = sock.recvfrom(65535)
    return OscMessage(data)


def test_status_request_gets_a_reply_with_the_status_values(server, client, changes):
    client.sendto(osc("/voxflip/mix", ("f", 0.5)), server.address)
    changes.get(timeout=TIMEOUT_S)
    client.sendto(osc("/voxflip/mix", ("f", 5.0)), server.address)
    client.sendto(osc("/voxflip/status"), server.address)
    reply = _status_reply(client)
    assert reply.address == "/voxflip/status"
    assert reply.dgram[16:].split(b"\x00")[0] == b",fffiiiisf"
    assert reply.params == [51.0, 0.25, 0.75, 3, 1, 1, 0, "cpu_load", 0.5]
    assert server.counters["status_requests"] == 1
    # the reply is counted after sendto returns, so the client can read it first
    assert wait_until(lambda: server.counters["replies_sent"] == 1), server.counters
    assert changes.empty()


def test_status_reply_goes_to_the_port_the_request_came_from(server, changes):
    one, two = udp_socket(), udp_socket()
    try:
        two.sendto(osc("/voxflip/status"), server.address)
        assert _status_reply(two).params[0] == 51.0
        one.settimeout(0.2)
        with pytest.raises(TimeoutError):
            one.recvfrom(65535)
    finally:
        one.close()
        two.close()


@pytest.mark.parametrize("status, logs", [
    (None, False), (lambda: {}, False), (lambda: 1 / 0, True), (lambda: {"latency_ms": math.nan, "xruns": "x"}, False),
], ids=["no-callable", "empty", "raises", "garbage"])
def test_status_reply_sends_minus_one_for_unknown_values(changes, client, caplog, status, logs):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with OscServer(changes, port=0, status=status) as server:
        client.sendto(osc("/voxflip/status"), server.address)
        assert _status_reply(client).params == [-1.0, -1.0, -1.0, -1, 0, 0, 0]
        assert server.running and server.counters["internal_errors"] == 0
    assert any("status callable failed" in line for line in warnings_of(caplog)) == logs


def test_status_is_pushed_periodically_to_reply_to(changes):
    listener = udp_socket()
    interval_s, window_s = 0.1, 1.0
    try:
        with OscServer(changes, port=0, status=lambda: dict(STATUS), reply_to=listener.getsockname(),
                       reply_interval_s=interval_s):
            started = time.monotonic()
            pushes = []
            while (left := started + window_s - time.monotonic()) > 0:
                listener.settimeout(left)
                try:
                    pushes.append(_status_reply(listener))
                except TimeoutError:
                    break
    finally:
        listener.close()
    expected = window_s / interval_s
    assert 0.7 * expected <= len(pushes) <= 1.2 * expected, len(pushes)
    assert all(p.address == "/voxflip/status" and p.params[0] == 51.0 for p in pushes)


# --- allowlist ---

def test_allowlist_drops_other_senders_before_parsing(changes, client, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with OscServer(changes, host="127.0.0.1", port=0, allow=["127.0.0.2/32"]) as server:
        send_and_wait(client, server, osc("/voxflip/mix", ("f", 0.5)))
        send_and_wait(client, server, b"not even osc")
        client.sendto(osc("/voxflip/status"), server.address)
        assert wait_until(lambda: server.counters["not_allowed"] == 3)
        counters = server.counters
    assert counters["malformed"] == 0 and counters["accepted"] == 0 and counters["status_requests"] == 0
    assert_accounting_adds_up(counters)
    assert changes.empty()
    assert "outside the allowlist" in warnings_of(caplog)[0]


def test_allowlist_lets_an_allowed_sender_through(changes):
    try:
        allowed = udp_socket("127.0.0.2")
    except OSError:
        pytest.skip("cannot bind 127.0.0.2 here (the whole 127/8 is loopback on Linux only)")
    try:
        with OscServer(changes, host="127.0.0.1", port=0, allow=["127.0.0.2/32", "10.0.0.0/8"]) as server:
            allowed.sendto(osc("/voxflip/mix", ("f", 0.5)), server.address)
            assert changes.get(timeout=TIMEOUT_S).source.startswith("osc 127.0.0.2:")
            allowed.sendto(osc("/voxflip/status"), server.address)
            assert _status_reply(allowed).address == "/voxflip/status"
            assert server.counters["not_allowed"] == 0
    finally:
        allowed.close()


# --- queue full ---

def test_a_full_queue_drops_and_counts_without_blocking(client, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    small: queue.Queue[ParamChange] = queue.Queue(maxsize=1)
    with OscServer(small, port=0) as server:
        send_and_wait(client, server, osc("/voxflip/mix", ("f", 0.25)))
        send_and_wait(client, server, osc("/voxflip/mix", ("f", 0.75)))
        client.sendto(osc("/voxflip/status"), server.address)
        assert _status_reply(client).params[4:7] == [1, 1, 1]   # accepted, rejected, queue depth
        counters = server.counters
    assert counters["accepted"] == 1 and counters["queue_full"] == 1
    assert small.get_nowait().value == 0.25
    assert any("(queue_full)" in line for line in warnings_of(caplog))


# --- flood ---

def test_a_flood_from_two_senders_leaves_the_server_serving_and_its_books_balanced(caplog):
    """UDP may drop datagrams under a flood (the socket buffer overflows), so the test
    checks the server's own accounting of what it saw, not what was sent."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    changes: queue.Queue[ParamChange] = queue.Queue(maxsize=256)
    got: list[ParamChange] = []
    done = threading.Event()

    def consume() -> None:   # the live worker's role: take changes off the queue
        while not done.is_set():
            try:
                got.append(changes.get(timeout=0.05))
            except queue.Empty:
                pass

    valid = [osc("/voxflip/mix", ("f", 0.25)), osc("/voxflip/mix", ("f", 0.75))]
    malformed = [random.Random(7).randbytes(40), _MIX[:-4], raw_bundle(_MIX, sizes=[-4])]
    per_sender = 6_000
    sent = [0, 0]

    with OscServer(changes, port=0, status=lambda: dict(STATUS)) as server:
        def flood(index: int) -> None:
            sock = udp_socket()
            for i in range(per_sender):
                data = malformed[i % 3] if i % 3 == 2 else valid[i % 2]
                sock.sendto(data, server.address)
                sent[index] += 1
            sock.close()

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        senders = [threading.Thread(target=flood, args=(i,)) for i in range(2)]
        started = time.monotonic()
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join()
        flood_s = time.monotonic() - started
        assert sum(sent) >= 10_000 and flood_s < 10.0

        # let the server drain its socket: its count stops moving
        last = -1
        while (now := server.counters["received"]) != last:
            last = now
            time.sleep(0.2)
        assert server.running

        # after the flood, a few values sent slowly: the last one sent is the last one queued
        with udp_socket() as sock:
            for value in (0.5, 0.375, 0.125):
                sock.sendto(osc("/voxflip/mix", ("f", value)), server.address)
                time.sleep(0.05)
            assert wait_until(lambda: bool(got) and got[-1].value == 0.125 and changes.empty())
            time.sleep(0.1)
            assert got[-1].name == "mix" and got[-1].value == 0.125

            sock.sendto(osc("/voxflip/status"), server.address)
            reply = _status_reply(sock)
        assert reply.params[:4] == [51.0, 0.25, 0.75, 3]
        counters = server.counters
    done.set()
    consumer.join()

    assert_accounting_adds_up(counters)
    assert counters["received"] <= sum(sent) + 4          # 3 slow values + 1 status request
    assert counters["datagrams"] == counters["received"]  # no bundles were decoded, one item each
    assert counters["malformed"] > 0 and counters["accepted"] > 0
    assert counters["accepted"] == len(got)               # every accepted change reached the consumer
    assert counters["status_requests"] == 1
    assert len(warnings_of(caplog)) < 30                   # logging stayed bounded


# --- the Python example ---

def test_the_python_example_sends_what_it_says(server, changes):
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "osc_send.py"), "--port", str(server.address[1]), "--note-s", "0.01"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "latency_ms" in result.stdout and "51" in result.stdout
    got = [(c.name, c.value) for c in drain(changes)]
    expected = [("mix", 0.75), ("gain", -6.0)]
    for note in (60, 64, 67):
        expected += [("note", (note, pytest.approx(0.8))), ("note", (note, 0.0))]
    assert got == expected
    assert server.counters["status_requests"] == 1


# --- server construction, bind and CIDR strings ---

@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9000", ("127.0.0.1", 9000)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),
    ("localhost:57120", ("localhost", 57120)),
    ("studio-pc.local:9000", ("studio-pc.local", 9000)),
    ("[::1]:9000", ("::1", 9000)),
])
def test_parse_bind_accepts_host_port(text, expected):
    assert parse_bind(text) == expected


@pytest.mark.parametrize("text, match", [
    ("9000", "missing HOST"),
    (":9000", "missing HOST"),
    ("127.0.0.1", "port '1' is not|missing HOST"),
    ("127.0.0.1:", "port '' is not"),
    ("127.0.0.1:65536", "0..65535"),
    ("127.0.0.1:-1", "0..65535"),
    ("127.0.0.1:90a", "0..65535"),
    ("256.1.1.1:9000", "not an IPv4 address"),
    ("::1:9000", "IPv6 host in brackets"),
    ("[::1]9000", r"\]:PORT"),
    ("[127.0.0.1]:9000", "not an IPv6 address"),
    ("bad host:9000", "not an IP address or host name"),
    ("-x:9000", "not an IP address or host name"),
])
def test_parse_bind_rejects_with_one_line_naming_the_string(text, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_bind(text)
    message = str(info.value)
    assert message.startswith(f"bind {text!r}:") and "HOST:PORT" in message and "\n" not in message


@pytest.mark.parametrize("parse, text, default", [
    (parse_bind, "9000", "bind '9000'"),
    (parse_cidrs, "10.0.0.1/8", "allow '10.0.0.1/8'"),
    (parse_cidrs, "", "allow ''"),
])
def test_parse_errors_name_the_parameter_unless_given_a_cli_flag(parse, text, default):
    with pytest.raises(ValueError, match=f"^{re.escape(default)}"):
        parse(text)
    with pytest.raises(ValueError, match=f"^--osc-x {re.escape(repr(text))}"):
        parse(text, option="--osc-x")


def test_parse_cidrs_normalizes_and_rejects():
    assert parse_cidrs("127.0.0.1/32, 192.168.1.0/24,10.0.0.7,::1") == [
        "127.0.0.1/32", "192.168.1.0/24", "10.0.0.7/32", "::1/128"]
    for text, match in [("", "empty"), ("10.0.0.0/8,", "empty entry"), ("192.168.1.5/24", "did you mean 192.168.1.0/24"),
                        ("10.0.0.0/33", "not an address or network"), ("example.com", "not an address or network")]:
        with pytest.raises(ValueError, match=match) as info:
            parse_cidrs(text)
        assert "\n" not in str(info.value) and str(info.value).startswith("allow")


@pytest.mark.parametrize("kwargs, match", [
    ({"port": 70000}, "0..65535"),
    ({"port": "9000"}, "0..65535"),
    ({"allow": []}, "drop every sender"),
    ({"allow": "127.0.0.1/32"}, "list of CIDRs"),
    ({"allow": ["10.0.0.1/8"]}, "did you mean"),
    ({"reply_to": ("127.0.0.1", 0)}, "port 1..65535"),
    ({"reply_to": "127.0.0.1:9001"}, "parse_bind"),
    ({"reply_interval_s": 0}, ">= 0.01"),
    ({"reply_interval_s": math.nan}, ">= 0.01"),
])
def test_server_rejects_bad_settings(changes, kwargs, match):
    with pytest.raises(ValueError, match=match):
        OscServer(changes, **kwargs)


def test_a_port_in_use_is_a_one_line_os_error(changes):
    with OscServer(changes, port=0) as first:
        second = OscServer(changes, port=first.address[1])
        with pytest.raises(OSError, match="cannot listen for OSC on 127.0.0.1:"):
            second.start()
        assert first.running


def test_start_twice_raises_and_stop_is_idempotent(changes):
    server = OscServer(changes, port=0)
    with pytest.raises(RuntimeError, match="start"):
        server.address  # noqa: B018
    server.start()
    with pytest.raises(RuntimeError, match="already"):
        server.start()
    server.stop()
    server.stop()
    assert not server.running


# --- the address space as a pure function and as data ---

def test_parse_message_is_total_on_odd_input():
    for address, args in [(None, []), (b"/voxflip/mix", [0.5]), ("/voxflip/mix", None), ("/voxflip/mix", [[0.5]]),
                          ("/voxflip/note", [10**30]), ("/voxflip/fx/a/b", [object()]), ("", []), ("/" * 5000, [])]:
        outcome = parse_message(address, args)  # type: ignore[arg-type]
        assert isinstance(outcome, Rejection) and outcome.reason in REJECTION_REASONS
        assert "\n" not in outcome.detail and len(outcome.detail) < 400


def test_parse_message_treats_bool_as_neither_int_nor_float():
    assert parse_message("/voxflip/mix", [True]).reason == "bad_args"
    assert parse_message("/voxflip/note", [60, False]).reason == "bad_args"
    assert parse_message("/voxflip/fx/eq/on", [True]) == ParamChange("fx", ("eq", "on", True))


def test_status_request_carries_its_source():
    assert parse_message("/voxflip/status", [], source="osc 1.2.3.4:5") == StatusRequest("osc 1.2.3.4:5")


def test_address_table_covers_every_engine_parameter_and_the_docs():
    assert {spec.param for spec in ADDRESSES} - {None} == set(PARAMETERS)
    docs = (REPO / "docs" / "osc.md").read_text()
    for spec in ADDRESSES:
        assert f"`{spec.address}`" in docs, spec.address
    for reason in REJECTION_REASONS:
        assert f"`{reason}`" in docs, reason

"""The OSC server of ``voxflip live``: UDP datagrams in, validated ParamChanges out.

Threads:

* the **server thread** (python-osc's :class:`BlockingOSCUDPServer`, one datagram at a
  time, so changes are queued in the order they arrived) checks the sender against the
  allowlist (parsed by :mod:`~voxflip.osc_control.binding`), then that sender's own rate
  limit (a token bucket per sender address, so a flood from one sender -- allowed or
  not -- never uses up another's share), checks the datagram's
  structure (:func:`~voxflip.osc_control.datagram.check_datagram`), decodes it, validates
  each message with :func:`~voxflip.osc_control.address_space.parse_message` and puts
  (``put_nowait``) the :class:`~voxflip.engine.params.ParamChange` on the engine's
  bounded queue. It answers
  ``/voxflip/status`` from its own socket. It never blocks on the queue and never raises:
  every datagram ends up counted in :attr:`OscServer.counters`.
* the **push thread** (only with ``reply_to``) sends a ``/voxflip/status`` message to
  ``reply_to`` every ``reply_interval_s`` seconds, from the same socket.

Rejections are logged (logger ``voxflip.osc_control.server``, WARNING) with the sender
and the reason, at most one line per reason per ``log_interval_s``; the next line of a
reason says how many were not logged in between, and :meth:`OscServer.stop` logs what is
left.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import queue
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_server import BlockingOSCUDPServer

from voxflip.engine.params import ParamChange

from .address_space import REJECTION_REASONS, Rejection, StatusRequest, parse_message
from .binding import parse_network
from .datagram import check_datagram

log = logging.getLogger(__name__)

REPLY_ADDRESS = "/voxflip/status"
#: the first arguments of every status reply, in order: (name, OSC type tag); -1 = unknown
STATUS_FIELDS: tuple[tuple[str, str], ...] = (
    ("latency_ms", "f"),     # declared end-to-end latency of the engine, ms
    ("rtf_p50", "f"),        # per-block real-time factor, median
    ("rtf_p99", "f"),        # per-block real-time factor, 99th percentile
    ("xruns", "i"),          # output blocks the device had to fill with silence
    ("osc_accepted", "i"),   # this server's counters["accepted"]
    ("osc_rejected", "i"),   # this server's counters["rejected"]
    ("queue_depth", "i"),    # ParamChanges waiting in the engine's queue
)
#: every key of :attr:`OscServer.counters`
COUNTER_NAMES: tuple[str, ...] = (
    "datagrams", "received", "accepted", "status_requests", "rejected", *REJECTION_REASONS,
    "replies_sent", "reply_errors", "internal_errors",
)

#: senders whose rate-limit buckets are remembered; the least recently heard is forgotten first
MAX_TRACKED_SENDERS = 1024
_POLL_INTERVAL_S = 0.05                         # how quickly serve_forever notices stop()
_RECEIVE_BUFFER_BYTES = 1 << 20                 # asked of the OS; it may grant less
_INT32 = (-(2**31), 2**31 - 1)
_FLOAT32_MAX = 3.4028234e38


class OscServer:
    """Receive OSC over UDP and queue validated parameter changes for the live engine.

    Args:
        queue: the engine's bounded queue; the server only ever calls ``put_nowait``.
        host: the address to bind (default loopback: only this machine can send). Binding
            anything else is the caller's explicit decision.
        port: the UDP port; 0 lets the OS pick one (see :attr:`address`).
        allow: CIDRs of the senders to accept (e.g. ``["192.168.1.0/24"]``); datagrams from
            others are dropped before parsing and counted as ``not_allowed``. ``None``
            accepts everyone who can reach ``host``.
        status: called (from the server and push threads, serialized) for each status
            reply; returns ``latency_ms``, ``rtf_p50``, ``rtf_p99``, ``xruns`` and
            optionally more numbers (sent as name/value pairs). Must be quick and never block.
        reply_to: ``(host, port)`` to push a status message to every ``reply_interval_s``.
        reply_interval_s: seconds between pushes, >= 0.01.
        log_interval_s: at most one warning per rejection reason per this many seconds.
        max_rate: datagrams per second taken on average from each sender address (checked
            after the allowlist); those over it are dropped unread and counted as ``rate_limited``.
        burst: datagrams taken at once from one sender above ``max_rate`` (its token bucket's
            size), >= 1. The last :data:`MAX_TRACKED_SENDERS` senders' buckets are kept.

    Raises:
        ValueError: a bad port, CIDR, ``reply_to``, interval or rate (one line each).
    """

    def __init__(self, queue: queue.Queue[ParamChange], *, host: str = "127.0.0.1", port: int = 9000,
                 allow: Sequence[str] | None = None,
                 status: Callable[[], dict[str, float]] | None = None,
                 reply_to: tuple[str, int] | None = None, reply_interval_s: float = 1.0,
                 log_interval_s: float = 1.0, max_rate: float = 1000.0, burst: int = 200) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError(f"OSC host {host!r} must be a non-empty address or host name, e.g. '127.0.0.1'")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"OSC port {port!r} must be an int 0..65535 (0: let the OS pick)")
        if allow is not None:
            if isinstance(allow, str):
                raise ValueError(f"allow={allow!r} must be a list of CIDRs; parse a string with parse_cidrs()")
            if not allow:
                raise ValueError("allow=[] would drop every sender; pass None to accept everyone who can "
                                 "reach the bound address, or list CIDRs such as '127.0.0.1/32'")
        self._networks = None if allow is None else [parse_network(str(item).strip()) for item in allow]
        if reply_to is not None:
            if (not isinstance(reply_to, tuple) or len(reply_to) != 2 or not isinstance(reply_to[0], str)
                    or isinstance(reply_to[1], bool) or not isinstance(reply_to[1], int)
                    or not 1 <= reply_to[1] <= 65535):
                raise ValueError(f"reply_to={reply_to!r} must be (host, port) with port 1..65535; "
                                 "parse 'HOST:PORT' with parse_bind()")
        if not (isinstance(reply_interval_s, int | float) and math.isfinite(reply_interval_s)
                and reply_interval_s >= 0.01):
            raise ValueError(f"reply_interval_s={reply_interval_s!r} must be a number of seconds >= 0.01")
        if not (isinstance(log_interval_s, int | float) and math.isfinite(log_interval_s) and log_interval_s >= 0):
            raise ValueError(f"log_interval_s={log_interval_s!r} must be a number of seconds >= 0")
        if not (isinstance(max_rate, int | float) and max_rate > 0 and isinstance(burst, int) and burst >= 1):
            raise ValueError(f"max_rate={max_rate!r} must be > 0 datagrams per second and burst={burst!r} >= 1")
        # A token bucket per sender address, after the allowlist: a flood must not take the
        # interpreter from the audio worker, nor one sender's flood the share of another.
        # Datagrams over the rate are dropped unread (counted as rate_limited).
        self._max_rate = float(max_rate)
        self._burst = float(burst)
        self._buckets: OrderedDict[Any, tuple[float, float]] = OrderedDict()   # sender -> (tokens, at)
        self._queue = queue
        self._host = host
        self._port = port
        self._status = status
        self._reply_to = reply_to
        self._reply_interval_s = float(reply_interval_s)
        self._counters = dict.fromkeys(COUNTER_NAMES, 0)
        self._counter_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._limiter = _RateLimitedLog(log, float(log_interval_s))
        self._stopping = threading.Event()
        self._server: _UDPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopped = False

    # --- public ---

    def start(self) -> None:
        """Bind the socket and serve in daemon threads; returns at once.

        Raises:
            OSError: the address cannot be bound (one line: address, reason, what to do).
            RuntimeError: called twice.
        """
        if self._server is not None or self._stopped:
            raise RuntimeError("OscServer.start() was already called; create a new OscServer")
        try:
            server = _UDPServer((self._host, self._port), _Dispatcher(self._on_datagram), self)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen for OSC on {self._host}:{self._port}: "
                          f"{exc.strerror or exc}; is another program using the port? "
                          "Pick another with --osc HOST:PORT") from exc
        try:
            server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER_BYTES)
        except OSError:
            pass   # the default buffer works; a larger one only loses fewer datagrams in a burst
        self._server = server
        serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": _POLL_INTERVAL_S},
                                 name="voxflip-osc", daemon=True)
        self._threads = [serve]
        if self._reply_to is not None:
            self._threads.append(threading.Thread(target=self._push_loop, name="voxflip-osc-push", daemon=True))
        for thread in self._threads:
            thread.start()
        log.info("OSC listening on %s:%d%s", *self.address[:2],
                 "" if self._networks is None else f" for {', '.join(map(str, self._networks))}")

    def stop(self) -> None:
        """Stop serving, close the socket and log the rejections not logged yet. Idempotent."""
        server, self._server = self._server, None
        self._stopped = True
        self._stopping.set()
        if server is None:
            return
        server.shutdown()
        for thread in self._threads:
            thread.join()
        server.server_close()
        self._limiter.flush()

    def __enter__(self) -> OscServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``; with ``port=0`` the port the OS picked."""
        if self._server is None:
            raise RuntimeError("OscServer.address is known once start() has bound the socket")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._server is not None and bool(self._threads) and self._threads[0].is_alive()

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot of the counters (:data:`COUNTER_NAMES`).

        ``datagrams`` counts every UDP datagram; ``received`` counts items: each message
        of a decoded datagram (a bundle holds several), or a whole datagram refused before
        decoding (``not_allowed`` sender, ``malformed``). Always
        ``received == accepted + status_requests + rejected``, and ``rejected`` is the sum
        of the :data:`~voxflip.osc_control.address_space.REJECTION_REASONS` counters.
        """
        with self._counter_lock:
            return dict(self._counters)

    # --- server thread ---

    def _admit(self, client_address: Any) -> bool:
        """The allowlist, then the sender's rate limit, before any parsing (called by the socket server)."""
        self._count("datagrams")
        try:
            ip: Any = ipaddress.ip_address(client_address[0])
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
        except (ValueError, TypeError, IndexError):
            ip = None
        if self._networks is not None and not (ip is not None and any(ip in net for net in self._networks)):
            allowed = ", ".join(map(str, self._networks))
            self._reject(Rejection("not_allowed", f"sender {client_address if ip is None else ip} is outside "
                                   f"the allowlist ({allowed}); datagram dropped"), _sender(client_address))
            return False
        if not self._take_token(ip if ip is not None else repr(client_address)):
            self._reject(Rejection("rate_limited", f"more than {self._max_rate:g} datagrams per second from this "
                                   "sender; dropped unread"), _sender(client_address))
            return False
        return True

    def _take_token(self, sender: Any) -> bool:
        """One datagram from ``sender`` (an address, any port): whether its bucket had a token."""
        now = time.monotonic()
        buckets = self._buckets
        tokens, at = buckets.pop(sender, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._max_rate)
        taken = tokens >= 1.0
        buckets[sender] = (tokens - 1.0 if taken else tokens, now)   # now the most recently heard
        while len(buckets) > MAX_TRACKED_SENDERS:
            buckets.popitem(last=False)
        return taken

    def _on_datagram(self, data: bytes, client_address: Any) -> None:
        try:
            self._handle_datagram(data, client_address)
        finally:
            time.sleep(0)  # hand the interpreter to the audio worker between datagrams (matters in a flood)

    def _handle_datagram(self, data: bytes, client_address: Any) -> None:
        sender = _sender(client_address)
        try:
            problem = check_datagram(data)
            if problem is None:
                try:
                    messages = [timed.message for timed in OscPacket(data).messages]
                except Exception as exc:  # python-osc raises more than ParseError (e.g. UnicodeDecodeError)
                    problem = f"cannot be decoded ({type(exc).__name__}: {exc})"
            if problem is not None:
                start = f"; starts {data[:24]!r}" if data else ""
                self._reject(Rejection("malformed", f"{len(data)}-byte datagram {problem}{start}"), sender)
                return
            for message in messages:
                self._on_message(message.address, message.params, client_address, sender)
        except Exception as exc:   # a bug here must not stop the server; say so, loudly but bounded
            self._count("internal_errors")
            self._limiter.warning("internal_error", f"OSC from {sender}: internal error "
                                  f"{type(exc).__name__}: {exc} (please report it)")

    def _on_message(self, address: str, args: list[Any], client_address: Any, sender: str) -> None:
        outcome = parse_message(address, args, source=f"osc {sender}")
        if isinstance(outcome, Rejection):
            self._reject(outcome, sender)
        elif isinstance(outcome, StatusRequest):
            self._count("received", "status_requests")   # before the reply: a sender that got it sees it counted
            self._send_status(client_address)
        else:
            try:
                self._queue.put_nowait(outcome)
            except queue.Full:
                self._reject(Rejection("queue_full", f"{address}: the engine's parameter queue is full "
                                       f"({self._queue.maxsize} changes waiting); dropped {outcome.name}="
                                       f"{outcome.value!r}", address), sender)
                return
            self._count("received", "accepted")

    def _reject(self, rejection: Rejection, sender: str) -> None:
        self._limiter.warning(rejection.reason, f"OSC from {sender} rejected ({rejection.reason}): {rejection.detail}")
        self._count("received", "rejected", rejection.reason)

    def _count(self, *names: str) -> None:
        with self._counter_lock:
            for name in names:
                self._counters[name] += 1

    # --- status replies ---

    def _push_loop(self) -> None:
        assert self._reply_to is not None
        due = time.monotonic()
        while True:
            due += self._reply_interval_s
            if self._stopping.wait(max(0.0, due - time.monotonic())):
                return
            self._send_status(self._reply_to)
            if time.monotonic() - due > self._reply_interval_s:   # fell behind: skip, never burst
                due = time.monotonic()

    def _send_status(self, destination: Any) -> None:
        server = self._server
        if server is None:
            return
        try:
            server.socket.sendto(self._status_datagram(), destination)
        except OSError as exc:
            self._count("reply_errors")
            self._limiter.warning("reply_error", f"OSC status to {_sender(destination)} failed: {exc}")
            return
        self._count("replies_sent")

    def _status_datagram(self) -> bytes:
        values: dict[Any, Any] = {}
        with self._status_lock:
            if self._status is not None:
                try:
                    values = dict(self._status())
                except Exception as exc:
                    self._limiter.warning("status_error", f"OSC status callable failed ({type(exc).__name__}: "
                                          f"{exc}); its fields are sent as -1")
        counters = self.counters
        values["osc_accepted"] = counters["accepted"]
        values["osc_rejected"] = counters["rejected"]
        values["queue_depth"] = self._queue.qsize()
        builder = OscMessageBuilder(REPLY_ADDRESS)
        for name, tag in STATUS_FIELDS:
            builder.add_arg(_as_float(values.get(name)) if tag == "f" else _as_int(values.get(name)), tag)
        fixed = {name for name, _ in STATUS_FIELDS}
        for name in sorted(key for key in values if isinstance(key, str) and key not in fixed):
            builder.add_arg(name, "s")
            builder.add_arg(_as_float(values[name]), "f")
        return builder.build().dgram


class _Dispatcher(Dispatcher):
    """python-osc's dispatcher, with every datagram handed to one callback.

    The stock ``call_handlers_for_packet`` swallows parse errors silently, expands OSC
    address patterns (``/voxflip/*`` would hit every handler) and drops addresses that
    are not valid patterns without calling any handler. Here each datagram goes to
    ``on_datagram`` whole, which accounts for it. ``strict_timing=False``: bundle
    timetags are ignored, so a future-dated bundle is handled at once (in timetag
    order) and never sleeps the server thread.
    """

    def __init__(self, on_datagram: Callable[[bytes, Any], None]) -> None:
        super().__init__(strict_timing=False)
        self._on_datagram = on_datagram

    def call_handlers_for_packet(self, data: bytes, client_address: tuple[str, int]) -> list[Any]:
        self._on_datagram(data, client_address)
        return []   # replies are sent by OscServer itself, with explicit OSC types


class _UDPServer(BlockingOSCUDPServer):
    """One thread, one datagram at a time; every datagram reaches the dispatcher."""

    max_packet_size = 65535   # socketserver's default (8192) would truncate large bundles

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher, owner: OscServer) -> None:
        self._owner = owner
        super().__init__(address, dispatcher)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        # python-osc's check drops non-OSC datagrams silently; ours applies the allowlist
        # and lets everything else through to be decoded (and counted if malformed).
        return self._owner._admit(client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print a traceback to stderr; the dispatcher already catches
        # everything, so this only runs on a bug in the reply path.
        self._owner._count("internal_errors")
        self._owner._limiter.warning("internal_error", f"OSC from {_sender(client_address)}: internal error "
                                     "while handling a datagram (please report it)")


class _RateLimitedLog:
    """At most one warning per key per ``interval_s``; the next one says how many were skipped."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warning(self, key: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                self._skipped[key] = self._skipped.get(key, 0) + 1
                return
            self._last[key] = now
            skipped = self._skipped.pop(key, 0)
        if skipped:
            message += f" ({skipped} more '{key}' not logged since the previous line)"
        self._logger.warning(message)

    def flush(self) -> None:
        with self._lock:
            skipped, self._skipped = self._skipped, {}
        for key, count in sorted(skipped.items()):
            self._logger.warning("OSC: %d more '%s' not logged since the previous line", count, key)


def _sender(client_address: Any) -> str:
    try:
        host, port = client_address[0], client_address[1]
    except (TypeError, IndexError):
        return repr(client_address)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _as_float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return -1.0
    return number if math.isfinite(number) and abs(number) <= _FLOAT32_MAX else -1.0


def _as_int(value: Any) -> int:
    return int(min(max(round(_as_float(value)), _INT32[0]), _INT32[1]))

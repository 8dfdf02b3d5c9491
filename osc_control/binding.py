"""Addresses and allowlists of the OSC server, as strings: ``HOST:PORT`` and CIDR lists.

Pure parsing, no I/O: nothing here resolves a host name or opens a socket. Every error is a
one-line :class:`ValueError` that names the value received and the allowed form. The value
is called by its parameter name (``bind``, ``allow``) unless the caller passes ``option``,
as the CLI does with its flags (``--osc``, ``--osc-allow``, ``--osc-reply``).
"""

from __future__ import annotations

import ipaddress
import re

_BIND_FORM = "HOST:PORT, e.g. 127.0.0.1:9000, 0.0.0.0:9000, [::1]:9000 or localhost:9000 (PORT 0..65535)"
_CIDR_FORM = "comma-separated addresses or networks, e.g. 127.0.0.1/32,192.168.1.0/24"
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")


def parse_bind(text: str, *, option: str = "bind") -> tuple[str, int]:
    """Parse ``HOST:PORT`` (where to listen, or where to send replies) without resolving anything.

    Args:
        text: e.g. ``"127.0.0.1:9000"``, ``"[::1]:9000"`` or ``"localhost:9000"``.
        option: what the error message calls ``text``; the CLI passes its flag
            (``"--osc"``, ``"--osc-reply"``).

    Returns:
        ``(host, port)``; an IPv6 host is returned without brackets.

    Raises:
        ValueError: one line naming ``option``, ``text`` and the allowed form.
    """
    def fail(why: str) -> ValueError:
        return ValueError(f"{option} {text!r}: {why}; use {_BIND_FORM}")

    if not isinstance(text, str):
        raise fail("not a string")
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise fail("an IPv6 host needs ']:PORT' after it")
        try:
            if ipaddress.ip_address(host).version != 6:
                raise fail(f"{host!r} in brackets is not an IPv6 address")
        except ValueError as exc:
            raise fail(f"{host!r} is not an IPv6 address") from exc
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise fail("missing HOST or ':PORT'")
        if ":" in host:
            raise fail("write an IPv6 host in brackets")
        if re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError as exc:
                raise fail(f"{host!r} is not an IPv4 address") from exc
        elif len(host) > 253 or not _HOSTNAME.fullmatch(host):
            raise fail(f"{host!r} is not an IP address or host name")
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
        raise fail(f"port {port_text!r} is not a number 0..65535")
    return host, int(port_text)


def parse_cidrs(text: str, *, option: str = "allow") -> list[str]:
    """Parse an allowlist ``"a,b,..."`` into normalized network strings.

    A bare address means that address alone (``/32`` or ``/128``).

    Args:
        text: e.g. ``"127.0.0.1/32,192.168.1.0/24"``.
        option: what the error message calls ``text``; the CLI passes its flag (``"--osc-allow"``).

    Returns:
        e.g. ``["127.0.0.1/32", "192.168.1.0/24"]``.

    Raises:
        ValueError: one line naming ``option``, the entry and the allowed form.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{option} {text!r}: empty; use {_CIDR_FORM}")
    return [str(parse_network(item.strip(), option=option)) for item in text.split(",")]


def parse_network(item: str, *, option: str = "allow") -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse one allowlist entry (``"192.168.1.0/24"``, or a bare address) strictly.

    Args:
        item: one address or network, already stripped.
        option: what the error message calls the list the entry belongs to.

    Returns:
        The network; a bare address is a ``/32`` or ``/128`` network.

    Raises:
        ValueError: one line naming ``option`` and the entry; for an address with host bits
            set (``192.168.1.5/24``) it suggests the network meant.
    """
    if not item:
        raise ValueError(f"{option}: empty entry in the list; use {_CIDR_FORM}")
    try:
        return ipaddress.ip_network(item, strict=True)
    except ValueError as exc:
        hint = ""
        try:
            hint = f" (did you mean {ipaddress.ip_network(item, strict=False)}?)"
        except ValueError:
            pass
        raise ValueError(f"{option} {item!r} is not an address or network{hint}: {exc}; use {_CIDR_FORM}") from exc


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (an IP literal or ``localhost``) can only be reached from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

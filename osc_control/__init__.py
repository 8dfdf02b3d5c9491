"""OSC control of a running engine: server, address space, parameter store."""

from __future__ import annotations

from typing import Any

from .address_space import (
    ADDRESSES,
    REJECTION_REASONS,
    AddressSpec,
    Rejection,
    StatusRequest,
    format_addresses,
    parse_message,
)

_SERVER_NAMES = ("OscServer", "parse_bind", "parse_cidrs", "is_loopback_host", "COUNTER_NAMES", "STATUS_FIELDS")

__all__ = [
    "ADDRESSES", "REJECTION_REASONS", "AddressSpec", "Rejection", "StatusRequest", "format_addresses",
    "parse_message", *_SERVER_NAMES,
]


def __getattr__(name: str) -> Any:
    # The server needs python-osc (the "osc" extra); import it only when asked for.
    if name in _SERVER_NAMES:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

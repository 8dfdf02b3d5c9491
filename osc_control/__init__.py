"""OSC control of a running engine: OSC datagrams in, validated ParamChanges out.

- :mod:`.address_space`: what each ``/voxflip/...`` address accepts and the
  :class:`~voxflip.engine.params.ParamChange` it becomes (:func:`parse_message`, a pure function).
- :mod:`.server`: :class:`OscServer`, the UDP server that checks, decodes and validates
  datagrams, queues the changes and answers ``/voxflip/status``.
- :mod:`.binding`: ``HOST:PORT`` addresses and sender allowlists (:func:`parse_bind`,
  :func:`parse_cidrs`, :func:`is_loopback_host`).
- :mod:`.datagram`: structural checks of raw datagrams before python-osc decodes them.

Nothing here touches audio; docs/osc.md describes the addresses, counters and logging.
"""

from __future__ import annotations

from .address_space import (
    ADDRESSES,
    REJECTION_REASONS,
    AddressSpec,
    Rejection,
    StatusRequest,
    format_addresses,
    parse_message,
)
from .binding import is_loopback_host, parse_bind, parse_cidrs
from .server import COUNTER_NAMES, STATUS_FIELDS, OscServer

__all__ = [
    "ADDRESSES", "COUNTER_NAMES", "REJECTION_REASONS", "STATUS_FIELDS", "AddressSpec", "OscServer", "Rejection",
    "StatusRequest", "format_addresses", "is_loopback_host", "parse_bind", "parse_cidrs", "parse_message",
]

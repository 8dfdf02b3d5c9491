"""Structural checks of raw OSC datagrams, before python-osc decodes them.

python-osc mishandles some malformed input rather than refusing it: it skips unknown type
tags (so later arguments are read from the wrong bytes), reads a missing float as 0.0, logs a
root-logger warning for a bundle element that is neither message nor bundle, loops forever on
a non-positive bundle element size and recurses without bound into nested bundles.
:func:`check_datagram` finds all of these first, so the server can count and log the datagram
as ``malformed`` instead. It is a pure function: bytes in, a one-line reason (or ``None``) out.
"""

from __future__ import annotations

#: the type tags python-osc decodes; others it would skip silently
OSC_TYPE_TAGS = frozenset("ihfdsbrmtTFN[]")
#: bundles nested deeper than this are refused (python-osc would recurse without bound)
MAX_BUNDLE_DEPTH = 8


def check_datagram(data: bytes, depth: int = 0) -> str | None:
    """What is structurally wrong with an OSC datagram, or ``None`` if python-osc can decode it.

    Args:
        data: one UDP datagram: an OSC message (starts with ``/``) or bundle (``#bundle``).
        depth: how many bundles ``data`` is nested in (the recursion into bundle elements).

    Returns:
        ``None``, or a one-line reason that reads after "N-byte datagram", e.g.
        ``"ends inside argument 2 ('f': 0 of 4 bytes)"``.
    """
    if not data:
        return "is empty"
    if data.startswith(b"#bundle\x00"):
        if depth >= MAX_BUNDLE_DEPTH:
            return f"nests bundles deeper than {MAX_BUNDLE_DEPTH}"
        if len(data) < 16:
            return "is a bundle shorter than its 16-byte header"
        index = 16
        while index < len(data):
            if len(data) - index < 4:
                return f"has a truncated bundle element size at byte {index}"
            size = int.from_bytes(data[index:index + 4], "big", signed=True)
            if size <= 0 or index + 4 + size > len(data):
                return f"has a bundle element size {size} at byte {index} outside 1..{len(data) - index - 4}"
            index += 4
            problem = check_datagram(data[index:index + size], depth + 1)
            if problem is not None:
                return problem
            index += size
        return None
    if not data.startswith(b"/"):
        return "is neither an OSC message (starts with '/') nor a bundle ('#bundle')" + (
            " inside a bundle" if depth else "")
    address_end = data.find(b"\x00")
    if address_end < 0:
        return "has an address with no NUL terminator"
    tags_start = (address_end // 4 + 1) * 4
    if tags_start >= len(data):
        return None   # no type tag string: a message without arguments
    tags_end = data.find(b"\x00", tags_start)
    if data[tags_start:tags_start + 1] != b"," or tags_end < 0:
        return "has no ',' type tag string"
    tags = data[tags_start + 1:tags_end].decode("latin-1")
    unknown = set(tags) - OSC_TYPE_TAGS
    if unknown:
        return f"uses OSC type tags {''.join(sorted(unknown))!r} (supported: {''.join(sorted(OSC_TYPE_TAGS))})"
    return _arguments_problem(data, (tags_end // 4 + 1) * 4, tags)


def _arguments_problem(data: bytes, index: int, tags: str) -> str | None:
    """Whether every argument the type tags announce is there (python-osc would read a
    missing float as 0.0). As in python-osc, a last float may lack trailing zero bytes."""
    for position, tag in enumerate(tags, start=1):
        if tag in "TFN[]":
            continue
        remaining = len(data) - index
        if tag in "ifrm":
            size = 4
        elif tag in "hdt":
            size = 8
        elif tag == "s":
            end = data.find(b"\x00", index)
            if end < 0:
                return f"has string argument {position} with no NUL terminator"
            size = ((end - index) // 4 + 1) * 4
        else:   # "b": int32 length, then the bytes, padded to 4
            length = int.from_bytes(data[index:index + 4], "big", signed=True) if remaining >= 4 else -1
            if length < 0:
                return f"has blob argument {position} with no valid length"
            size = 4 + (length + 3) // 4 * 4
        if remaining < size and not (tag == "f" and position == len(tags) and remaining > 0):
            return f"ends inside argument {position} ('{tag}': {max(remaining, 0)} of {size} bytes)"
        index += size
    return None

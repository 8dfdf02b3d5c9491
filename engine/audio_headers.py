"""Container headers of audio files: does the file hold as much audio as its header declares?

libsndfile reads a truncated WAV or AIFF without complaint (it just returns fewer samples), so
:func:`_check_container` walks the RIFF/RIFX/RF64/BW64 and AIFF/AIFC chunks itself and compares
the data size the header declares with the bytes actually present; for Ogg it checks that the
stream ends with its end-of-stream page. A truncated file raises one :class:`AudioInputError`
line (built by :func:`_truncation_message`, which :mod:`.audio_io` also uses when decoding stops
early); a header too mangled to measure is left to libsndfile to judge.

Used by :mod:`.audio_io`; nothing here decodes audio.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import AudioInputError

# WAV format tags whose bytes per frame is block_align: PCM, IEEE float, A-law, mu-law, extensible
_WAV_LINEAR_TAGS = (0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE)
# AIFC compression types stored as plain samples: bytes per sample (0: the COMM sample size decides)
_AIFC_SAMPLE_BYTES = {
    b"in24": 3,
    b"42ni": 3,
    b"in32": 4,
    b"23ni": 4,
    b"fl32": 4,
    b"FL32": 4,
    b"fl64": 8,
    b"FL64": 8,
}
_AIFC_SAMPLE_BYTES.update(dict.fromkeys((b"ulaw", b"ULAW", b"alaw", b"ALAW"), 1))
_AIFC_SAMPLE_BYTES.update(dict.fromkeys((b"NONE", b"twos", b"sowt", b"raw "), 0))


def _truncation_message(
    path: Path, kind: str, declared: int, present: int, sample_rate: float, found: str = "are present"
) -> str:
    rate = max(sample_rate, 1.0)
    return (
        f"audio input {str(path)!r} is truncated: its {kind} header declares {declared} samples "
        f"({declared / rate:.3f} s) but only {present} samples ({present / rate:.3f} s) {found}; "
        f"re-export or copy the file again"
    )


def _chunks(f: BinaryIO, start: int, file_size: int, endian: str) -> Iterator[tuple[bytes, int, int]]:
    """Yield ``(chunk_id, body_offset, declared_size)`` of IFF-style chunks; stops at the end of the file."""
    pos = start
    for _ in range(10_000):  # a bound against pathological files
        if pos + 8 > file_size:
            return
        f.seek(pos)
        chunk_id, size = struct.unpack(endian + "4sI", f.read(8))
        yield chunk_id, pos + 8, size
        pos += 8 + size + (size & 1)


def _check_wav(f: BinaryIO, path: Path, file_size: int, magic: bytes) -> None:
    endian = ">" if magic == b"RIFX" else "<"
    ds64_data_size = None
    fmt = None  # (format_tag, sample_rate, byte_rate, block_align)
    fact_frames = None
    for chunk_id, body, size in _chunks(f, 12, file_size, endian):
        if chunk_id == b"ds64" and size >= 16 and body + 16 <= file_size:
            f.seek(body)
            ds64_data_size = struct.unpack("<QQ", f.read(16))[1]
        elif chunk_id == b"fmt " and size >= 16 and body + 16 <= file_size:
            f.seek(body)
            tag, _channels, rate, byte_rate, block_align = struct.unpack(endian + "HHIIH", f.read(14))
            fmt = (tag, rate, byte_rate, block_align)
        elif chunk_id == b"fact" and size >= 4 and body + 4 <= file_size:
            f.seek(body)
            fact_frames = struct.unpack(endian + "I", f.read(4))[0]
        elif chunk_id == b"data":
            if size == 0xFFFFFFFF and ds64_data_size is not None:
                size = ds64_data_size
            elif size in (0, 0xFFFFFFFF):
                return  # length left open by a streaming writer: nothing declared to check against
            present = file_size - body
            if fmt is None or present >= size:
                return
            tag, rate, byte_rate, block_align = fmt
            if tag in _WAV_LINEAR_TAGS and block_align > 0:
                declared_frames, present_frames = size // block_align, present // block_align
            else:  # compressed: estimate from the byte rate, prefer the exact count of a fact chunk
                per_byte = rate / byte_rate if byte_rate else 0.0
                declared_frames = fact_frames if fact_frames is not None else int(size * per_byte)
                present_frames = int(declared_frames * present / size)
            if present_frames < declared_frames:
                kind = "RF64" if magic in (b"RF64", b"BW64") else "WAV"
                raise AudioInputError(_truncation_message(path, kind, declared_frames, present_frames, rate))
            return
        if body + size > file_size:
            raise AudioInputError(
                f"audio input {str(path)!r} is truncated: its WAV chunk {chunk_id.decode('latin-1')!r} declares {size} "
                f"bytes but the file ends after {file_size - body}; re-export or copy the file again"
            )


def _extended_to_float(raw: bytes) -> float:
    """Decode the 80-bit IEEE extended float that AIFF uses for its sample rate."""
    exponent = ((raw[0] & 0x7F) << 8 | raw[1]) - 16383
    mantissa = int.from_bytes(raw[2:10], "big")
    if not mantissa:
        return 0.0
    try:
        return math.ldexp(mantissa, exponent - 63)
    except OverflowError:   # a corrupt header: no real rate is this large; the rate check refuses it
        return math.inf


def _check_aiff(f: BinaryIO, path: Path, file_size: int, is_aifc: bool) -> None:
    comm = None  # (channels, declared_frames, sample_size_bits, sample_rate, compression)
    ssnd = None  # (data_offset, declared_bytes)
    for chunk_id, body, size in _chunks(f, 12, file_size, ">"):
        if chunk_id == b"COMM" and size >= 18 and body + 18 <= file_size:
            f.seek(body)
            raw = f.read(min(size, 22))
            channels, frames, bits = struct.unpack(">hIh", raw[:8])
            compression = raw[18:22] if is_aifc and len(raw) >= 22 else b"NONE"
            comm = (channels, frames, bits, _extended_to_float(raw[8:18]), compression)
        elif chunk_id == b"SSND" and size >= 8 and body + 8 <= file_size:
            f.seek(body)
            offset = struct.unpack(">I", f.read(4))[0]
            ssnd = (body + 8 + offset, size - 8 - offset)
    if comm is None or ssnd is None:
        return  # libsndfile decides whether this is readable at all
    channels, declared_frames, bits, rate, compression = comm
    data_offset, declared_bytes = ssnd
    present_bytes = max(0, min(file_size - data_offset, declared_bytes))
    per_sample = (_AIFC_SAMPLE_BYTES.get(compression) or (bits + 7) // 8) if compression in _AIFC_SAMPLE_BYTES else 0
    if per_sample > 0 and channels > 0:
        present_frames = present_bytes // (per_sample * channels)
    elif declared_bytes > 0:  # compressed AIFC: assume a constant bit rate
        present_frames = int(declared_frames * present_bytes / declared_bytes)
    else:
        return
    if present_frames < declared_frames:
        raise AudioInputError(_truncation_message(path, "AIFF", declared_frames, present_frames, rate))


def _check_ogg(f: BinaryIO, path: Path, file_size: int) -> None:
    """A complete Ogg stream ends with a whole page that carries the end-of-stream flag."""
    tail_start = max(0, file_size - 140_000)  # a page is at most 65,307 bytes: room for the last two
    f.seek(tail_start)
    tail = f.read()
    pos = tail.rfind(b"OggS")
    while pos >= 0:  # the last complete page; a page cut off by the end of the file is skipped
        if pos + 27 <= len(tail) and tail[pos + 4] == 0:  # stream structure version 0
            n_segments = tail[pos + 26]
            lacing = tail[pos + 27 : pos + 27 + n_segments]
            if len(lacing) == n_segments and pos + 27 + n_segments + sum(lacing) <= len(tail):
                if tail[pos + 5] & 0x04:  # end-of-stream flag
                    return
                break
        pos = tail.rfind(b"OggS", 0, pos)
    raise AudioInputError(
        f"audio input {str(path)!r} is truncated: the Ogg stream ends without its end-of-stream page; "
        f"re-export or copy the file again"
    )


def _check_container(path: Path) -> None:
    """Raise AudioInputError when a WAV/RF64/AIFF/Ogg header promises more audio than the file holds."""
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) < 12:
            return
        try:
            if head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and head[8:12] == b"WAVE":
                _check_wav(f, path, file_size, head[:4])
            elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                _check_aiff(f, path, file_size, head[8:12] == b"AIFC")
            elif head[:4] == b"OggS":
                _check_ogg(f, path, file_size)
        except struct.error:
            return  # a header too mangled to measure: libsndfile decides whether it is audio at all

"""Keep freed memory mapped, so that every block does not fault its temporaries in again.

glibc's allocator serves a request above its mmap threshold (128 KiB to start, raised as such
blocks are freed) with fresh pages from the kernel and gives them back on ``free``; it also gives
back the top of the heap once more than the trim threshold is free there. A converter works in
blocks: each one allocates and frees the same few hundred kilobytes to megabytes of numpy
temporaries (frames of samples, spectra, pulse responses), so with the defaults each block's first
write to each of those pages is a page fault. A 60 s render through ``world-nodur`` took about
290,000 of them, and half or more of its system CPU time (docs/performance.md, "Freed memory kept
mapped": 1-4% of the wall time of a whole command on the development machine).

:func:`keep_freed_memory` sets the mmap threshold to 32 MiB (glibc's largest) and the trim
threshold to 256 MiB: blocks of the sizes the engine uses come from the heap and stay mapped after
they are freed, and the next block reuses them (the same render then takes about 18,000 faults,
with the same peak RSS). The output does not change; only where memory comes from.

For the live path it is also the real-time rule: once the first blocks have run, the processor
makes no more memory system calls per block (counted with strace). The command line calls it at
start, for every command; a program that embeds the engine may call it once itself. It does
nothing where the C library is not glibc, or when the environment sets ``VOXFLIP_HEAP=default``
(glibc's own settings: to compare, or to hand memory back sooner).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's largest mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024

#: the environment variable that turns it off (value ``default``)
HEAP_ENV = "VOXFLIP_HEAP"

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (and the processes it forks).

    Returns:
        True when both were set (glibc on Linux, ``VOXFLIP_HEAP`` unset), False otherwise; calling
        it again returns the first call's result and does nothing more.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or os.environ.get(HEAP_ENV, "").strip().lower() == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # musl and others: no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done

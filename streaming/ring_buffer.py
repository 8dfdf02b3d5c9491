"""RingBuffer: a fixed-size, lock-free single-producer/single-consumer ring of mono float32 samples.

The live path uses two of them. The PortAudio callback thread writes each microphone block into the
input ring (``write``) and fills each speaker block from the output ring (``read_into``); a Python
worker thread reads the input ring (``read``/``peek``/``skip``), converts, and writes the output ring.
The ring itself is C++ (``streaming/_ringbuffer.cpp``, built by ``pip install``); this module is its
documented Python face.

Semantics:
    * Capacity is in mono samples, fixed at construction; the storage is allocated and zeroed then
      (rounded up internally to a power of two; ``capacity`` reports what was asked for).
    * ``write(samples, channels=1)`` takes interleaved frames from a C-contiguous float32 buffer
      (a 1-D numpy array, a ``(frames, channels)`` array, a ``memoryview(...).cast("f")``, ...),
      averages each frame to one mono sample, and stores as many whole frames as fit. If some did
      not fit it counts one overrun and adds the frames left out to ``dropped_samples``. It returns
      the mono samples written and never blocks.
    * ``read(n)`` pops up to ``n`` samples into a new float32 array (fewer when fewer are there).
    * ``read_into(out, channels=1, fill=0.0)`` fills the writable float32 buffer ``out`` (interleaved
      frames, ``len(out) // channels`` of them) with the next samples, each copied to every channel;
      on a shortfall the rest is ``fill``, one underrun is counted and the shortfall (in frames) is
      added to ``missing_samples``. It returns the frames taken and never blocks.
    * ``peek(n, offset=0)`` copies ``n`` samples starting ``offset`` after the read position without
      consuming them (``ValueError`` if fewer than ``offset + n`` are available); ``skip(n)`` drops
      up to ``n`` without copying and returns how many.
    * ``available`` / ``free``: samples readable / writable now. Counters: ``overruns``,
      ``dropped_samples``, ``underruns``, ``missing_samples``.
    * Buffers are never converted: anything but native float32, C-contiguous memory raises
      ``TypeError`` (``read_into`` also refuses read-only buffers); a length that is not a multiple
      of ``channels``, ``channels < 1``, or a 2-D+ array whose last axis is not ``channels`` (a planar
      ``(channels, samples)`` array, for instance) raises ``ValueError``.

Thread-safety:
    Exactly one producer thread (``write``) and one consumer thread (``read``, ``read_into``, ``peek``,
    ``skip``) may use a ring at the same time, with no lock: each side owns one atomic index and
    publishes it with release ordering after copying. ``capacity``, ``available``, ``free`` and the
    counters may be read from any thread; ``free`` is exact for the producer and ``available`` for
    the consumer, and from elsewhere they are a snapshot. Two producers, or two consumers, at once
    corrupt the ring. ``reset()`` (empty it and zero the counters) is safe only while neither thread
    is using the ring, e.g. with the stream stopped.

    ``write``, ``read_into``, ``read`` and ``peek`` check their arguments while holding the GIL. A copy
    that touches ``GIL_RELEASE_MIN_SAMPLES`` (65536) caller samples or more then runs with the GIL
    released, so other Python threads keep running during it. Smaller copies, such as device blocks,
    keep the GIL: they take microseconds, whereas a thread that gives the GIL away while another
    thread is running Python has to wait for that thread to hand it back (the 5 ms switch
    interval or longer). With a worker busy in Python, releasing on every callback-sized call
    stalled up to 3% of the callback's calls for 4-320 ms; keeping the GIL, none took over 2 ms.
    The copy itself never allocates; ``read`` and ``peek`` allocate only the array they return,
    before the copy.
"""

from __future__ import annotations

try:
    from ._ringbuffer import GIL_RELEASE_MIN_SAMPLES, RingBuffer
except ImportError as exc:  # pragma: no cover - depends on how the package was installed
    raise ImportError(
        "voxflip.streaming.ring_buffer needs the compiled extension voxflip.streaming._ringbuffer, "
        f"which could not be imported ({exc}). Rebuild it with: pip install -e . "
        "(from the voxflip checkout; needs a C++17 compiler and the Python headers)"
    ) from exc

__all__ = ["GIL_RELEASE_MIN_SAMPLES", "RingBuffer"]

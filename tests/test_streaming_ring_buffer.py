"""RingBuffer: FIFO order across wrap-around, channel mixing, xrun counters, errors, two threads, GIL, memory."""

from __future__ import annotations

import array
import collections
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest

from voxflip.streaming.ring_buffer import GIL_RELEASE_MIN_SAMPLES, RingBuffer


def counting(start: int, n: int) -> np.ndarray:
    """start, start+1, ... as float32 (exact below 2**24)."""
    return np.arange(start, start + n, dtype=np.float32)


READ_ONLY_PROPERTIES = "capacity available free overruns dropped_samples underruns missing_samples".split()


FLOAT32 = "a C-contiguous float32"


def counters(rb: RingBuffer) -> tuple[int, int, int, int]:
    return rb.overruns, rb.dropped_samples, rb.underruns, rb.missing_samples


# -- order and wrap-around -------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [1, 7, 64, 65, 1000])
def test_fifo_order_matches_a_deque_model_across_wrap_around(capacity):
    rng = np.random.default_rng(capacity)
    rb = RingBuffer(capacity)
    model: collections.deque[float] = collections.deque()
    next_value = 0
    overruns = dropped = underruns = missing = 0
    for step in range(3000):
        op = rng.integers(5)
        size = int(rng.integers(0, 2 * capacity + 2))
        label = f"capacity={capacity} step={step} op={op} size={size}"
        if op == 0:  # write
            fits = min(size, capacity - len(model))
            assert rb.write(counting(next_value, size)) == fits, label
            model.extend(range(next_value, next_value + fits))
            if fits < size:
                overruns += 1
                dropped += size - fits
            next_value += size
        elif op == 1:  # read
            want = [model.popleft() for _ in range(min(size, len(model)))]
            got = rb.read(size)
            assert got.dtype == np.float32 and got.tolist() == want, label
        elif op == 2:  # read_into
            out = np.full(size, np.nan, np.float32)
            want = [model.popleft() for _ in range(min(size, len(model)))]
            assert rb.read_into(out, fill=-1.0) == len(want), label
            assert out.tolist() == want + [-1.0] * (size - len(want)), label
            if len(want) < size:
                underruns += 1
                missing += size - len(want)
        elif op == 3:  # peek
            n = min(size, len(model))
            offset = int(rng.integers(0, len(model) - n + 1))
            assert rb.peek(n, offset).tolist() == list(model)[offset : offset + n], label
        else:  # skip
            taken = min(size, len(model))
            assert rb.skip(size) == taken, label
            for _ in range(taken):
                model.popleft()
        assert (rb.available, rb.free) == (len(model), capacity - len(model)), label
    assert counters(rb) == (overruns, dropped, underruns, missing)


# -- channels --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [2, 3])
def test_write_averages_each_interleaved_frame_to_one_sample(channels):
    frames = np.random.default_rng(channels).uniform(-1, 1, (1000, channels)).astype(np.float32)
    rb = RingBuffer(1000)
    assert rb.write(frames[:600], channels) == 600  # (frames, channels) array
    assert rb.write(frames[600:].reshape(-1), channels) == 400  # the same frames, flat and interleaved
    np.testing.assert_allclose(rb.read(1000), frames.mean(axis=1), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_read_into_copies_each_sample_to_every_channel(channels):
    rb = RingBuffer(16)
    rb.write(counting(1, 5))
    out = np.zeros(4 * channels, np.float32)
    assert rb.read_into(out, channels) == 4
    assert out.tolist() == np.repeat(counting(1, 4), channels).tolist()
    frames = np.zeros((2, channels), np.float32)  # a (frames, channels) output block works too
    assert rb.read_into(frames, channels) == 1
    assert frames.tolist() == [[5.0] * channels, [0.0] * channels]


def test_accepts_any_c_contiguous_float32_buffer():
    rb = RingBuffer(32)
    assert rb.write(array.array("f", [1.0, 2.0])) == 2
    assert rb.write(memoryview(np.float32([3.0, 4.0]).tobytes()).cast("f")) == 2
    assert rb.write(np.float32([[5.0, 6.0]])) == 2  # (1, samples) mono
    assert rb.write(np.float32([[7.0], [8.0]])) == 2  # (frames, 1)
    out = array.array("f", [0.0] * 8)
    assert rb.read_into(out) == 8
    assert list(out) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]


# -- overruns and underruns ------------------------------------------------------------------------------


def test_overrun_writes_the_frames_that_fit_and_counts_the_rest():
    rb = RingBuffer(10)
    assert rb.write(counting(0, 4)) == 4
    stereo = np.repeat(counting(10, 8), 2)  # 8 frames, each (v, v)
    assert rb.write(stereo, 2) == 6
    assert (rb.overruns, rb.dropped_samples, rb.available, rb.free) == (1, 2, 10, 0)
    assert rb.write(counting(0, 3)) == 0
    assert (rb.overruns, rb.dropped_samples) == (2, 5)
    assert rb.write(np.zeros(0, np.float32)) == 0  # nothing offered, nothing dropped
    assert (rb.overruns, rb.dropped_samples) == (2, 5)
    assert rb.read(10).tolist() == [0, 1, 2, 3, 10, 11, 12, 13, 14, 15]


def test_underrun_fills_the_rest_with_fill_and_counts_the_shortfall():
    rb = RingBuffer(10)
    rb.write(counting(1, 3))
    out = np.zeros(10, np.float32)  # 5 stereo frames
    assert rb.read_into(out, 2, fill=-0.5) == 3
    assert out.tolist() == [1, 1, 2, 2, 3, 3, -0.5, -0.5, -0.5, -0.5]
    assert (rb.underruns, rb.missing_samples) == (1, 2)
    rb.write(counting(1, 5))
    assert rb.read_into(out, 2) == 5  # exactly enough: no underrun
    assert (rb.underruns, rb.missing_samples) == (1, 2)
    assert rb.read_into(out) == 0
    assert not out.any()
    assert (rb.underruns, rb.missing_samples) == (2, 12)


# -- peek, skip, reset, capacity ---------------------------------------------------------------------------


def test_peek_does_not_consume_and_skip_does():
    rb = RingBuffer(8)
    rb.write(counting(0, 6))
    assert rb.peek(3).tolist() == [0, 1, 2]
    assert rb.peek(2, offset=4).tolist() == [4, 5]
    assert rb.peek(0, offset=6).size == 0
    assert rb.available == 6
    assert rb.skip(4) == 4
    assert rb.peek(2).tolist() == [4, 5]
    assert rb.skip(100) == 2
    assert rb.available == 0 and rb.read(5).size == 0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda rb: rb.peek(6), r"peek\(n=6, offset=0\) needs 6 samples but only 5 are available"),
        (lambda rb: rb.peek(2, offset=4), r"needs 6 samples but only 5"),
        (lambda rb: rb.peek(-1), "n must be >= 0 samples, got -1"),
        (lambda rb: rb.peek(1, offset=-2), "offset must be >= 0 samples, got -2"),
        (lambda rb: rb.read(-3), "n must be >= 0 samples, got -3"),
        (lambda rb: rb.skip(-4), "n must be >= 0 samples, got -4"),
    ],
)
def test_peek_read_and_skip_reject_bad_counts(call, match):
    rb = RingBuffer(8)
    rb.write(counting(0, 5))
    with pytest.raises(ValueError, match=match):
        call(rb)
    assert rb.available == 5


def test_reset_empties_the_ring_and_zeroes_the_counters():
    rb = RingBuffer(4)
    rb.write(counting(0, 6))
    rb.read_into(np.zeros(8, np.float32))
    rb.write(counting(0, 3))
    assert counters(rb) == (1, 2, 1, 4) and rb.available == 3
    rb.reset()
    assert counters(rb) == (0, 0, 0, 0) and (rb.available, rb.free) == (0, 4)
    rb.write(counting(7, 4))
    assert rb.read(4).tolist() == [7, 8, 9, 10]


@pytest.mark.parametrize("capacity", [0, -5])
def test_rejects_a_capacity_below_one_sample(capacity):
    with pytest.raises(ValueError, match=f"capacity must be > 0.*got {capacity}"):
        RingBuffer(capacity)


def test_capacity_is_what_was_asked_for_and_read_only():
    rb = RingBuffer(1000)  # stored in 1024 slots
    assert rb.capacity == 1000 and rb.free == 1000
    assert rb.write(np.zeros(1024, np.float32)) == 1000
    assert "capacity=1000" in repr(rb)
    for name in READ_ONLY_PROPERTIES:
        with pytest.raises(AttributeError):
            setattr(rb, name, 0)


# -- bad buffers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "samples, channels, exc, match",
    [
        (np.zeros(8, np.int16), 1, TypeError, f"^samples must be {FLOAT32} array, got dtype int16$"),
        (np.zeros(8, np.float64), 1, TypeError, "got dtype float64"),
        (np.zeros(8, ">f4"), 1, TypeError, "got dtype >f4"),
        ([0.0] * 8, 1, TypeError, "got a list"),
        (b"\0" * 32, 1, TypeError, "buffer format 'B'"),
        (np.zeros(16, np.float32)[::2], 1, TypeError, "non-contiguous"),
        (np.zeros((8, 2), np.float32).T, 1, TypeError, "non-contiguous"),
        (np.zeros(7, np.float32), 2, ValueError, "holds 7 samples.*multiple of channels"),
        (np.zeros(8, np.float32), 0, ValueError, "channels must be >= 1.*got 0"),
        (np.zeros((2, 480), np.float32), 2, ValueError, r"shape \(2, 480\).*\(channels, samples\)"),
        (np.zeros((2, 480), np.float32), 1, ValueError, r"\(frames, channels\) with channels=1"),
    ],
)
def test_write_rejects_bad_buffers_without_writing(samples, channels, exc, match):
    rb = RingBuffer(1024)
    with pytest.raises(exc, match=match):
        rb.write(samples, channels)
    assert (rb.available, rb.overruns) == (0, 0)


@pytest.mark.parametrize(
    "out, channels, exc, match",
    [
        (np.frombuffer(bytes(32), np.float32), 1, TypeError, "out must be a writable .* got a read-only"),
        (np.zeros(8, np.float64), 1, TypeError, "got dtype float64"),
        (np.zeros(16, np.float32)[::2], 1, TypeError, "non-contiguous"),
        (np.zeros(9, np.float32), 2, ValueError, "holds 9 samples"),
        (np.zeros(8, np.float32), -1, ValueError, "channels must be >= 1"),
    ],
)
def test_read_into_rejects_bad_buffers_without_reading(out, channels, exc, match):
    rb = RingBuffer(16)
    rb.write(counting(0, 4))
    with pytest.raises(exc, match=match):
        rb.read_into(out, channels)
    assert (rb.available, rb.underruns) == (4, 0)


# -- two threads -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_block", [4096, 4 * GIL_RELEASE_MIN_SAMPLES], ids=["small", "gil-free"])
def test_two_threads_pass_two_million_samples_in_order_without_loss(max_block):
    """Producer and consumer in their own threads, random block sizes; the producer retries what did not fit.

    With blocks above GIL_RELEASE_MIN_SAMPLES the copies of both sides run at the same time, GIL-free."""
    total = 2_000_000
    sequence = counting(0, total)
    received = np.full(total, -1.0, np.float32)
    rb = RingBuffer(max_block + 1001)
    errors: list[BaseException] = []

    def sizes(seed: int):
        rng = np.random.default_rng(seed)
        while True:  # log-uniform: many small blocks, some large
            yield int(np.exp(rng.uniform(0, np.log(max_block))))

    def produce() -> None:
        try:
            position = 0
            for size in sizes(1):
                if position >= total:
                    return
                position += rb.write(sequence[position : position + size])
                if rb.free == 0:
                    time.sleep(0)
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)

    def consume() -> None:
        try:
            position = 0
            for index, size in enumerate(sizes(2)):
                if position >= total:
                    return
                size = min(size, total - position)
                if index % 2:
                    block = rb.read(size)
                    received[position : position + block.size] = block
                    position += block.size
                else:  # read_into writes straight into the result; a short read pads, then gets overwritten
                    position += rb.read_into(received[position : position + size], fill=-2.0)
                if rb.available == 0:
                    time.sleep(0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "producer/consumer still running after 60 s"
    assert not errors, errors
    mismatch = np.flatnonzero(received != sequence)
    assert mismatch.size == 0, f"first mismatch at {mismatch[0]}: got {received[mismatch[0]]}"
    assert rb.available == 0


def test_large_copies_let_other_python_threads_run():
    """While write/read_into/read/peek copy 16-32 M samples, a ticker thread keeps running Python code.

    A ticker timestamp in the middle half of a call proves the GIL was released: with the GIL held for
    the whole call, the ticker could run at most one switch interval (0.5 ms here) after the call's
    start. One is proof enough; asking for more would test how busy the machine is."""
    size = 1 << 24  # mono samples per call; 64 MiB of ring
    rb = RingBuffer(size)
    block = np.ones(2 * size, np.float32)  # stereo frames, reused as read_into's output
    ticks: list[float] = []
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())

    calls = {
        "write": lambda: rb.write(block, 2),
        "peek": lambda: rb.peek(size),
        "read_into": lambda: rb.read_into(block, 2),
        "refill": lambda: rb.write(block[:size]),
        "read": lambda: rb.read(size),
    }
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    try:
        intervals = {}
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            intervals[name] = (t0, time.perf_counter())
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old_interval)
    stamps = np.array(ticks)
    for name in ("write", "peek", "read_into", "read"):
        t0, t1 = intervals[name]
        quarter = (t1 - t0) / 4
        inside = int(np.count_nonzero((stamps > t0 + quarter) & (stamps < t1 - quarter)))
        assert t1 - t0 > 0.004, f"{name} took only {1e3 * (t1 - t0):.1f} ms: too short to tell"
        assert inside >= 1, f"{name}: the ticker never ran mid-call ({1e3 * (t1 - t0):.0f} ms)"


# -- memory ----------------------------------------------------------------------------------------------


def test_steady_streaming_does_not_grow_traced_memory():
    rb = RingBuffer(4800)
    mic = np.random.default_rng(0).uniform(-1, 1, 2 * 480).astype(np.float32)  # stereo device block
    speaker = np.zeros(2 * 480, np.float32)

    def one_period() -> None:
        rb.write(mic, 2)
        rb.peek(100, 10)
        rb.read(240)
        rb.skip(40)
        rb.read_into(speaker, 2)  # runs short every time: exercises the fill and the counters

    for _ in range(100):
        one_period()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(20_000):
            one_period()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 4096, f"traced memory grew by {after - before} bytes over 20000 periods"
    # the largest transient is the array read() returns (240 samples, 960 bytes, plus its header)
    assert peak - before < 16 * 1024, f"peak grew by {peak - before} bytes"
    assert rb.underruns == 20_100

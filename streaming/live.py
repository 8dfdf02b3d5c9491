"""Live conversion: a device (or a file played in real time) through the converter.

Threads and what they do:

* the **audio callback** (PortAudio's thread, or the file pacer) only copies: the
  input block into the input ring, the output ring into the output block. When
  the output ring is short it plays silence (or the dry input, if asked) and
  counts an xrun. It never blocks, never waits for Python work, never raises.
  The output that missed its turn is dropped when it arrives, so an xrun
  never adds latency (it cannot creep up over a long session). Non-finite
  input samples (NaN, Inf) become silence before they reach the ring, and
  are counted.
* the **worker** takes blocks from the input ring, runs the
  :class:`~voxflip.streaming.realtime.RealtimeStreamer` (converter + effects),
  applies queued parameter changes between blocks, and writes the result to
  the output ring. An exception is logged once and turns into silence (with
  ``stop_on_error``, it is kept in :attr:`LiveEngine.failure` instead, for the
  caller to end the run with); non-finite output samples become silence and
  are counted. If the worker's loop itself dies, :attr:`LiveEngine.failure`
  says why, and :func:`run_file` raises it.

Latency: the output ring starts with one block of silence (the callback reads
block ``k``'s output one callback after it wrote block ``k``'s input), so the
engine's declared latency is the converter's (plus resampling) plus one block.
The device adds its own input and output buffering, which PortAudio reports.
"""

from __future__ import annotations

import logging
import math
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from voxflip.engine.errors import EngineError
from voxflip.engine.params import ParamChange

from .realtime import RealtimeStreamer
from .ring_buffer import RingBuffer

log = logging.getLogger(__name__)

OVERLOAD_MODES = ("silence", "dry")


class LiveRunError(EngineError):
    """A live run cannot go on: its worker or its file pacer failed (the message says where and why)."""


@dataclass
class LiveStats:
    """Counters and timings of a live run (read from any thread; written by one)."""

    blocks_in: int = 0
    blocks_out: int = 0
    xruns: int = 0                 # callbacks that found the output ring short
    device_flags: int = 0          # callbacks PortAudio flagged with an under/overflow
    input_overruns: int = 0        # input blocks the ring had no room for
    worker_errors: int = 0
    non_finite_input_samples: int = 0   # NaN/Inf samples from the device or file, played as silence
    non_finite_output_samples: int = 0  # NaN/Inf samples from the processor, played as silence
    late_samples_dropped: int = 0  # output that arrived after its xrun, dropped to keep the latency fixed
    chunk_rtf: deque[float] = field(default_factory=lambda: deque(maxlen=4096))

    def rtf_percentiles(self) -> tuple[float, float]:
        """p50 and p99 of the recent per-block real-time factors (safe to call from any thread);
        NaN before the first block is timed (no factor to give yet)."""
        for _ in range(3):
            try:
                values = np.array(tuple(self.chunk_rtf), dtype=np.float64)
                break
            except RuntimeError:  # the worker appended while we copied
                continue
        else:
            return float("nan"), float("nan")
        if values.size == 0:
            return float("nan"), float("nan")
        return float(np.percentile(values, 50)), float(np.percentile(values, 99))


class LiveEngine:
    """The device-independent core of live conversion (see the module docstring).

    Args:
        processor: the constant-rate processor (converter, resampling, effects).
        sample_rate: the device rate.
        block_size: frames per callback.
        channels_in, channels_out: device channel counts (input is mixed down, output duplicated).
        on_overload: ``"silence"`` or ``"dry"``: what an xrun plays.
        apply_param: called by the worker for each queued :class:`ParamChange`.
        ring_seconds: capacity of each ring.
        prefill_blocks: blocks of silence the output ring starts with: the time the worker may
            take for one block. A converter computes a whole chunk in the block that completes
            it, so this should cover one chunk (see :func:`prefill_blocks_for`).
        stop_on_error: a processor exception is not logged but kept in :attr:`failure` (the
            first one), so that the caller can end the run (a file run: its output would have
            a silent hole); the block still plays as silence.

    Attributes:
        failure: the exception that ended the worker's loop, or with ``stop_on_error`` the first
            processor exception; None while all is well.
    """

    def __init__(
        self,
        processor: RealtimeStreamer,
        sample_rate: int,
        block_size: int,
        *,
        channels_in: int = 1,
        channels_out: int = 1,
        on_overload: str = "silence",
        apply_param: Callable[[ParamChange], None] | None = None,
        ring_seconds: float = 2.0,
        prefill_blocks: int = 1,
        stop_on_error: bool = False,
    ) -> None:
        if on_overload not in OVERLOAD_MODES:
            raise ValueError(f"on_overload={on_overload!r} is not one of {', '.join(OVERLOAD_MODES)}")
        if block_size < 1:
            raise ValueError(f"block_size={block_size!r} must be >= 1 frame")
        self.processor = processor
        self.sample_rate = int(sample_rate)
        self.block_size = int(block_size)
        self.channels_in = channels_in
        self.channels_out = channels_out
        self.on_overload = on_overload
        self.apply_param = apply_param
        capacity = max(int(ring_seconds * sample_rate), 8 * block_size)
        self.in_ring = RingBuffer(capacity)
        self.out_ring = RingBuffer(capacity)
        self.params: queue.Queue[ParamChange] = queue.Queue(maxsize=1024)
        self.stats = LiveStats()
        self._out_block = np.zeros(block_size * channels_out, np.float32)
        self._finite = np.zeros(block_size * channels_in, bool)  # the callback's NaN/Inf check, preallocated
        self.stop_on_error = stop_on_error
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._error_logged = False
        self._debt = 0  # frames of output owed since the last xrun (dropped when they arrive)
        if prefill_blocks < 1:
            raise ValueError(f"prefill_blocks={prefill_blocks!r} must be >= 1")
        self.prefill_blocks = prefill_blocks
        self.out_ring.write(np.zeros(prefill_blocks * block_size, np.float32))

    # -- latency ------------------------------------------------------------------------------------
    @property
    def latency_samples(self) -> int:
        """Declared latency in device frames: the processor's plus the worker's prefill."""
        return self.processor.latency_samples + self.prefill_blocks * self.block_size

    @property
    def latency_s(self) -> float:
        return self.latency_samples / self.sample_rate

    # -- the audio callback ---------------------------------------------------------------------------
    def callback(self, in_data: bytes | None, frame_count: int) -> bytes:
        """Copy one device block in and one out. Never blocks, never raises."""
        try:
            stats = self.stats
            samples = None
            if in_data is not None:
                samples = np.frombuffer(in_data, dtype=np.float32)
                finite = np.isfinite(samples, out=self._finite) if samples.shape == self._finite.shape else np.isfinite(samples)
                if not finite.all():  # NaN/Inf would poison the converter's state: play them as silence
                    stats.non_finite_input_samples += int(finite.size - np.count_nonzero(finite))
                    samples = np.where(finite, samples, np.float32(0.0))
                written = self.in_ring.write(samples, self.channels_in)
                if written < frame_count:
                    stats.input_overruns += 1
                stats.blocks_in += 1
            out = self._out_block if frame_count == self.block_size else np.zeros(frame_count * self.channels_out, np.float32)
            if self._debt and self.out_ring.available >= frame_count + self._debt:
                # Output that missed its callback (an xrun) has arrived since: drop it, so the delay
                # from input to output stays what was declared instead of growing by a block per xrun.
                stats.late_samples_dropped += self.out_ring.skip(self._debt)
                self._debt = 0
            if self.out_ring.available >= frame_count:
                self.out_ring.read_into(out, self.channels_out)
            else:
                stats.xruns += 1
                self._debt += frame_count
                if self.on_overload == "dry" and samples is not None:
                    mono = samples.reshape(-1, self.channels_in).mean(axis=1)
                    out[:] = np.repeat(mono, self.channels_out)
                else:
                    out[:] = 0.0
            stats.blocks_out += 1
            return out.tobytes()
        except Exception:  # the audio thread must never raise
            return bytes(frame_count * self.channels_out * 4)

    def pyaudio_callback(self, in_data, frame_count, time_info, status):  # PortAudio's signature
        import pyaudio

        if status:
            self.stats.device_flags += 1
        return self.callback(in_data, frame_count), pyaudio.paContinue

    # -- the worker ------------------------------------------------------------------------------------
    def warm_up(self, seconds: float = 0.3) -> None:
        """Run silence through the processor once and reset it, so the first real blocks are not slow."""
        block = np.zeros(self.block_size, np.float32)
        for _ in range(max(1, int(seconds * self.sample_rate / self.block_size))):
            self.processor.process(block)
        self.processor.reset()

    def start(self) -> None:
        if self._worker is not None:
            raise RuntimeError("the engine is already running")
        self._stop.clear()
        self.failure = None
        # The callback needs the GIL; by default a waiting thread gets it only after 5 ms, longer
        # than a 256-frame block. Ask the worker to hand it over every 0.5 ms while live.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, 0.0005))
        self._worker = threading.Thread(target=self._work, name="voxflip-worker", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
            self._worker = None
            sys.setswitchinterval(self._switch_interval)

    @property
    def running(self) -> bool:
        """True while the worker thread is alive (started and neither stopped nor dead)."""
        return self._worker is not None and self._worker.is_alive()

    def _work(self) -> None:
        idle = min(0.002, self.block_size / self.sample_rate / 4)
        try:
            while not self._stop.is_set():
                if not self.work_once():
                    time.sleep(idle)
        except BaseException as exc:  # the loop itself broke: say why instead of going quiet
            self.failure = exc
            if not self.stop_on_error:
                log.error("the live worker stopped: %s: %s", type(exc).__name__, exc)

    def work_once(self) -> bool:
        """Apply queued parameters and convert one block if a whole one is waiting; True if it did."""
        self._apply_params()
        block = self.block_size
        if self.in_ring.available < block:
            return False
        x = self.in_ring.read(block)
        started = time.perf_counter()
        try:
            y = self.processor.process(x)
        except Exception as exc:
            self.stats.worker_errors += 1
            if self.stop_on_error:
                if self.failure is None:
                    self.failure = exc
            elif not self._error_logged:
                log.exception("live conversion failed; playing silence (further errors are counted, not logged)")
                self._error_logged = True
            y = np.zeros(block, np.float32)
        finite = np.isfinite(y)
        if not finite.all():
            self.stats.non_finite_output_samples += int(finite.size - np.count_nonzero(finite))
            y = np.where(finite, y, np.float32(0.0)).astype(np.float32, copy=False)
        self.stats.chunk_rtf.append((time.perf_counter() - started) * self.sample_rate / block)
        self.out_ring.write(y)
        return True

    def _apply_params(self) -> None:
        while True:
            try:
                change = self.params.get_nowait()
            except queue.Empty:
                return
            if self.apply_param is None:
                continue
            try:
                self.apply_param(change)
            except Exception as exc:  # a bad value must not stop the audio
                log.warning("ignored parameter change %s=%r: %s", change.name, change.value, exc)

    # -- reporting -------------------------------------------------------------------------------------
    def status_line(self) -> str:
        p50, p99 = self.stats.rtf_percentiles()
        s = self.stats
        return (
            f"latency {1000 * self.latency_s:.1f} ms | RTF p50 {p50:.2f} p99 {p99:.2f} | "
            f"xruns {s.xruns} | in-overruns {s.input_overruns} | blocks {s.blocks_out}"
        )


def prefill_blocks_for(chunk_s: float, sample_rate: int, block_size: int, margin_s: float = 0.005) -> int:
    """Blocks of output prefill: the worker may spend one converter chunk plus ``margin_s`` on one block.

    The margin absorbs scheduling jitter (thread wake-ups, the interpreter lock): with none,
    a file-paced 10 ms-block run on this project's 2-core machine saw 1-5 xruns in 4 s.
    """
    if margin_s < 0:
        raise ValueError(f"margin_s={margin_s!r} must be >= 0 s")
    return max(1, math.ceil((chunk_s + margin_s) * sample_rate / block_size - 1e-9))


def run_file(
    engine: LiveEngine,
    blocks,
    write: Callable[[np.ndarray], None],
    *,
    realtime: bool = True,
    on_block: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Drive ``engine`` from an iterable of mono float32 blocks instead of a device.

    The pacer thread plays the device: it calls :meth:`LiveEngine.callback` every
    ``block_size / sample_rate`` seconds (``realtime=True``), or as soon as the
    worker has produced the previous block (``realtime=False``: as fast as
    possible, in lockstep). Output blocks go to ``write`` from the calling thread.
    After the input ends the pacer feeds silence until the engine's latency has
    played out: the output is exactly the input's length plus
    :attr:`LiveEngine.latency_samples`, what a listener would have heard.

    The engine must be started (:meth:`LiveEngine.start`). Setting ``stop`` ends the run early.

    Raises:
        LiveRunError: the worker died, or (``engine.stop_on_error``) a block failed to convert;
            or the pacer failed for another reason (``on_block`` raised, a bug).
        EngineError: what reading ``blocks`` raised (an ``AudioInputError`` for a corrupt file),
            raised here, in the calling thread.
        BaseException: what ``write`` raised, or an interruption (Ctrl-C) while waiting.
        In every case the pacer has been told to stop first.
    """
    block = engine.block_size
    period = block / engine.sample_rate
    out_q: queue.Queue[np.ndarray | None] = queue.Queue()
    stop = stop or threading.Event()
    failed: list[BaseException] = []  # what ended the pacer, raised again in the calling thread

    def check_engine(index: int) -> None:
        if engine.failure is not None:
            exc = engine.failure
            raise LiveRunError(
                f"live conversion failed about {index * period:.2f} s into the input: "
                f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            ) from exc
        if not engine.running:
            raise LiveRunError("the live engine's worker is not running; call LiveEngine.start() before run_file")

    def pace() -> None:
        index = 0
        try:
            deadline = time.perf_counter()
            pending = np.zeros(0, np.float32)
            source = iter(blocks)
            exhausted = False
            samples_in = 0
            owed: int | None = None  # output samples still to emit, known once the input ends
            check_engine(index)
            while not stop.is_set():
                while pending.shape[0] < block and not exhausted:
                    try:
                        more = np.asarray(next(source), np.float32)
                    except StopIteration:
                        exhausted = True
                        break
                    samples_in += more.shape[0]
                    pending = np.concatenate([pending, more])
                if exhausted and owed is None:
                    owed = samples_in + engine.latency_samples - index * block
                if owed is not None and owed <= 0:
                    break
                chunk = np.zeros(block, np.float32)
                take = min(block, pending.shape[0])
                chunk[:take] = pending[:take]
                pending = pending[take:]
                if realtime:
                    deadline += period
                    delay = deadline - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                elif index > 0:
                    while engine.out_ring.available < block and not stop.is_set():
                        check_engine(index)  # a dead worker would leave this waiting for ever
                        time.sleep(0.0002)
                out = engine.callback(chunk.tobytes(), block)
                mono = np.frombuffer(out, dtype=np.float32).reshape(-1, engine.channels_out)[:, 0].copy()
                if owed is not None:
                    mono = mono[:owed]
                    owed -= mono.shape[0]
                out_q.put(mono)
                index += 1
                check_engine(index)
                if on_block is not None:
                    on_block(index)
        except EngineError as exc:
            failed.append(exc)
        except Exception as exc:
            error = LiveRunError(f"the live file pacer failed about {index * period:.2f} s into the input: "
                                 f"{type(exc).__name__}: {' '.join(str(exc).split())}")
            error.__cause__ = exc
            failed.append(error)
        finally:
            out_q.put(None)

    pacer = threading.Thread(target=pace, name="voxflip-pacer", daemon=True)
    pacer.start()
    try:
        while True:
            item = out_q.get()
            if item is None:
                break
            write(item)
    except BaseException:  # write failed, or Ctrl-C/SIGTERM arrived: stop the pacer before leaving
        stop.set()
        pacer.join(timeout=2.0)
        raise
    pacer.join()
    if failed:
        raise failed[0]

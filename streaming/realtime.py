"""Constant-rate streaming for devices: every block in gives exactly one block out.

A :class:`~voxflip.streaming.streamer.Streamer` returns whatever output is ready,
which at the start of a stream is less than came in (the converter waits for its
lookahead). A sound card needs exactly one block back for every block it hands
over, so :class:`RealtimeStreamer` puts the Streamer's output in a FIFO that
starts with ``latency_samples`` of silence. Because ``latency_samples`` is the
Streamer's worst-case delay, the FIFO always holds a full block for a
time-preserving converter: the output is the converted input delayed by
exactly ``latency_samples``.

A converter that shortens time (``world-dur``) sometimes returns less than a
block: the FIFO runs low and silence fills the gap (counted in ``gap_samples``),
so the output stays aligned with the input and no sound is ever later than
``latency_samples``. A converter that produces more than it takes in (a melody
longer than the speech) fills the FIFO; beyond ``max_backlog_s`` the oldest
output is dropped (counted in ``dropped_samples``) so the delay stays bounded.

The dry input runs through a delay line of the same ``latency_samples``, so
``mix`` (dry/wet), ``bypass`` and the output ``gain`` never move the timing.
Changes of mix and gain ramp linearly over ``smoothing_ms`` (no clicks);
switching bypass crossfades over the same time.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from voxflip.engine.errors import ConfigError

from .ring_buffer import RingBuffer


class BlockProcessor(Protocol):
    """What :class:`RealtimeStreamer` drives: a Streamer or an effect Chain."""

    @property
    def latency_s(self) -> float: ...

    def process(self, block: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


class _Ramp:
    """A parameter that moves linearly to its target over a fixed number of samples."""

    def __init__(self, value: float, ramp_samples: int) -> None:
        self.value = value
        self.target = value
        self.ramp_samples = max(1, ramp_samples)
        self._step = 0.0

    def set(self, target: float) -> None:
        self.target = target
        self._step = (target - self.value) / self.ramp_samples

    def render(self, n: int) -> np.ndarray | float:
        """The next ``n`` values (a scalar when steady)."""
        if self.value == self.target:
            return self.value
        values = self.value + self._step * np.arange(1, n + 1)
        if self._step > 0:
            values = np.minimum(values, self.target)
        else:
            values = np.maximum(values, self.target)
        self.value = float(values[-1])
        return values


class RealtimeStreamer:
    """Constant-rate adapter around a Streamer or Chain (see the module docstring).

    Args:
        processor: anything with ``process(block)``, ``reset()`` and ``latency_s``.
        sample_rate: the rate of blocks in and out (the processor's input and output rate).
        max_backlog_s: most converted audio to keep queued before dropping the oldest.
        smoothing_ms: ramp time of mix, gain and bypass changes.
    """

    def __init__(self, processor: BlockProcessor, sample_rate: int, max_backlog_s: float = 5.0,
                 smoothing_ms: float = 20.0) -> None:
        self.processor = processor
        self.sample_rate = int(sample_rate)
        self.latency_samples = int(np.ceil(processor.latency_s * self.sample_rate - 1e-9))
        self.max_backlog = self.latency_samples + int(max_backlog_s * self.sample_rate)
        self._fifo = RingBuffer(self.max_backlog + (1 << 16))
        self._dry = RingBuffer(self.latency_samples + (1 << 16))
        self._ramp_samples = max(1, round(smoothing_ms * self.sample_rate / 1000))
        self.reset()

    @property
    def latency_s(self) -> float:
        return self.latency_samples / self.sample_rate

    def reset(self) -> None:
        self.processor.reset()
        self._fifo.reset()
        self._dry.reset()
        silence = np.zeros(self.latency_samples, np.float32)
        self._fifo.write(silence)
        self._dry.write(silence)
        self.gap_samples = 0
        self.dropped_samples = 0
        self._mix = _Ramp(1.0, self._ramp_samples)
        self._gain = _Ramp(1.0, self._ramp_samples)
        self._bypass = _Ramp(0.0, self._ramp_samples)
        self.bypass = False

    # -- run-time parameters (the worker calls these between blocks) ---------------------------------
    def set_mix(self, mix: float) -> None:
        """Dry/wet: 0 = only the (delayed) input, 1 = only the converted output."""
        if not (isinstance(mix, int | float) and 0.0 <= mix <= 1.0):
            raise ConfigError(f"mix={mix!r} is outside 0..1 (0 = dry input, 1 = converted)")
        self._mix.set(float(mix))

    def set_gain_db(self, gain_db: float) -> None:
        """Output gain in dB, -60..+24."""
        if not (isinstance(gain_db, int | float) and math.isfinite(gain_db) and -60.0 <= gain_db <= 24.0):
            raise ConfigError(f"gain={gain_db!r} dB is outside -60..24 dB")
        self._gain.set(10.0 ** (gain_db / 20.0))

    def set_bypass(self, bypass: bool) -> None:
        """Bypass: the input delayed by ``latency_samples`` (the timing does not change)."""
        self.bypass = bool(bypass)
        self._bypass.set(1.0 if bypass else 0.0)

    def reset_ramps(self) -> None:
        """Jump mix, gain and bypass to their targets (before a stream starts: nothing to smooth)."""
        for ramp in (self._mix, self._gain, self._bypass):
            ramp.value = ramp.target

    @property
    def mix(self) -> float:
        return self._mix.target

    @property
    def gain_db(self) -> float:
        return 20.0 * math.log10(max(self._gain.target, 1e-12))

    @property
    def queued_samples(self) -> int:
        return self._fifo.available

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed ``n`` samples (mono float32); return exactly ``n`` samples of output."""
        block = np.ascontiguousarray(block, dtype=np.float32)
        n = int(block.shape[-1])
        y = self.processor.process(block)
        if y.shape[0]:
            excess = self._fifo.available + y.shape[0] - self.max_backlog
            if excess > 0:
                self.dropped_samples += self._fifo.skip(excess)
            self._fifo.write(np.ascontiguousarray(y, dtype=np.float32))
        wet = self._fifo.read(n)
        if wet.shape[0] < n:
            self.gap_samples += n - wet.shape[0]
            wet = np.concatenate([wet, np.zeros(n - wet.shape[0], np.float32)])
        self._dry.write(block if block.ndim == 1 else block.mean(axis=0).astype(np.float32))
        dry = self._dry.read(n)
        wet_share = self._mix.render(n) * (1.0 - self._bypass.render(n))
        out = (wet * wet_share + dry * (1.0 - wet_share)) * self._gain.render(n)
        return np.asarray(out, dtype=np.float32)

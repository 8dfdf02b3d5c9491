"""The Streamer: resample in, chunk, convert, resample out -- one object, all the state.

``Streamer.process(block)`` takes mono float samples at the input rate, in
blocks of any size, and returns whatever converted output is ready at the
output rate. ``flush()`` ends the stream and returns the rest; ``reset()``
starts a new one. Offline rendering is this same path driven by a file, so
streamed and offline output are identical whatever the block size.

Resampling (:class:`MonoResampler`: a polyphase filter of ours for an integer ratio, pedalboard's
``StreamResampler`` otherwise) does not depend on block sizes either and is aligned
with its input (its delay shows up as output held back until enough input has
arrived; that delay is part of :attr:`Streamer.latency_s`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from voxflip.engine.converters.base import Converter, ConverterReport
from voxflip.engine.features.levels import OUTPUT_CEILING
from voxflip.engine.features.resample import PedalboardResampler

from .chunker import Chunker

#: the rate a resampling between a high rate (96, 192 kHz) and a low one goes through
MID_RATE = 48_000

#: output samples :meth:`Streamer.flush_chunks` holds back until the end, where the output is cut or
#: padded to its exact length (the resamplers are off from it by a few samples at most)
HOLD_BACK_SAMPLES = 4096


def validate_block(block: Any) -> np.ndarray:
    """Check one block of audio and return it as 1-D float32.

    Accepts 1-D ``(samples,)`` or 2-D ``(channels, samples)`` float32/float64
    arrays (2-D is downmixed to the channel mean).

    Raises:
        TypeError: not a float array.
        ValueError: wrong number of dimensions, or NaN/Inf samples.
    """
    if not isinstance(block, np.ndarray):
        raise TypeError(f"audio must be a numpy float32 array, got {type(block).__name__}")
    if block.dtype not in (np.float32, np.float64):
        raise TypeError(f"audio must be float32 (or float64) in [-1, 1], got dtype {block.dtype}")
    if block.ndim == 2:
        block = block.mean(axis=0)
    elif block.ndim != 1:
        raise ValueError(f"audio must be 1-D or 2-D: (samples,) or (channels, samples); got shape {block.shape}")
    if block.size and not np.isfinite(block).all():
        bad = int(np.argmax(~np.isfinite(block)))
        kind = "NaN" if np.isnan(block[bad]) else "Inf"
        raise ValueError(f"audio contains {kind} at sample {bad} of this block")
    return block.astype(np.float32, copy=False)


#: the filter of a resampling by an integer ratio R: a Nyquist low-pass h[-N..N] at the higher rate,
#: N = R * FIR_TAPS_PER_PHASE - 1, Kaiser window of this beta. Flat within 0.0001 dB to 0.45 of the
#: lower rate, images and aliases at least 91 dB down from 0.55 of it; FIR_TAPS_PER_PHASE input samples
#: of delay up and N down (by 2: 2.6 ms from 48 kHz to 24 kHz and back, where pedalboard's 32-tap
#: windowed sinc, -84 dB, delays 4.0 ms; by 3: 3.6 ms from 48 kHz to 16 kHz and back, against 5.3 ms).
FIR_TAPS_PER_PHASE = 32
FIR_BETA = 9.75


def nyquist_prototype(ratio: int, taps_per_phase: int = FIR_TAPS_PER_PHASE, beta: float = FIR_BETA) -> np.ndarray:
    """h[-N..N] of a Kaiser-windowed low-pass at the higher rate cutting off at half the lower one,
    ``N = ratio * taps_per_phase - 1``: h[0] = 1 / ratio and zero at the other multiples of the ratio
    (a Nyquist filter: up by ``ratio`` the input samples come back unchanged). Every other phase's taps
    are scaled to sum to 1 / ratio, so DC passes exactly both ways."""
    reach = ratio * taps_per_phase - 1
    n = np.arange(-reach, reach + 1)
    h = np.sinc(n / ratio) / ratio * np.kaiser(2 * reach + 1, beta)
    for phase in range(1, ratio):
        members = n % ratio == phase
        h[members] *= (1.0 / ratio) / h[members].sum()
    h[n % ratio == 0] = 0.0
    h[reach] = 1.0 / ratio
    return h


def _stage(source_rate: int, target_rate: int) -> Any:
    low, high = sorted((source_rate, target_rate))
    if high % low == 0:
        from ._polyphase import Polyphase

        return Polyphase(nyquist_prototype(high // low), high // low, target_rate > source_rate)
    return PedalboardResampler(source_rate, target_rate)


class MonoResampler:
    """Streamed resampling of mono audio, or nothing when the rates match.

    By an integer ratio (48 <-> 24 kHz, 48 <-> 16 kHz, 44.1 <-> 22.05 kHz, ...) a polyphase Nyquist
    filter does it (``_polyphase.cpp``, :func:`nyquist_prototype`): a fraction of the work and about
    two thirds of the delay of a general resampler of the same quality. Other ratios go to
    pedalboard's ``StreamResampler``.
    Between a rate above :data:`MID_RATE` and one at or below it, the conversion goes through
    ``MID_RATE`` in two stages: pedalboard's resampler keeps a flat passband (within 0.05 dB to
    0.45 of the lower rate) up to a ratio of about 3, but from 96 or 192 kHz to 16 kHz its
    passband ripples by +-0.6 dB and rolls off from 0.4 of the lower rate (-0.9 dB at 7.2 kHz),
    which is enough to move a trained model's durations (flow-dur: 4 frames of a 4.2 s sentence).
    Either way the output is aligned with the input and does not depend on block sizes.
    """

    def __init__(self, source_rate: int, target_rate: int) -> None:
        self.source_rate = source_rate
        self.target_rate = target_rate
        self._stages: list = []
        self._rates: list[int] = []   # the input rate of each stage
        self._fed = False  # pedalboard's StreamResampler cannot flush before it has seen a sample
        if source_rate != target_rate:
            low, high = sorted((source_rate, target_rate))
            path = [source_rate, MID_RATE, target_rate] if low < MID_RATE < high else [source_rate, target_rate]
            self._stages = [_stage(a, b) for a, b in itertools.pairwise(path)]
            self._rates = path[:-1]

    @property
    def delay_s(self) -> float:
        return sum(stage.latency / rate for stage, rate in zip(self._stages, self._rates, strict=True))

    def process(self, x: np.ndarray) -> np.ndarray:
        if not self._stages or x.shape[0] == 0:
            return x.astype(np.float32, copy=False)
        self._fed = True
        x = x.astype(np.float32, copy=False)
        if not np.abs(x).max() <= OUTPUT_CEILING:   # near float32's maximum the filter itself overflows to inf
            x = np.clip(x, -OUTPUT_CEILING, OUTPUT_CEILING)
        for stage in self._stages:
            x = stage.process(x) if x.shape[0] else x
        return x

    def flush(self) -> np.ndarray:
        if not self._stages or not self._fed:
            return np.zeros(0, np.float32)
        first, *rest = self._stages
        y = first.flush()
        for stage in rest:
            y = np.concatenate([stage.process(y) if y.shape[0] else y, stage.flush()])
        return y

    def reset(self) -> None:
        self._fed = False
        for stage in self._stages:
            stage.reset()


class Streamer:
    """Drive a converter over a stream of arbitrary blocks (see the module docstring).

    Args:
        converter: any :class:`Converter`.
        input_sample_rate: rate of the blocks given to :meth:`process`
            (defaults to the converter's rate).
        output_sample_rate: rate of what comes back (defaults to the input rate).
    """

    def __init__(
        self, converter: Converter, input_sample_rate: int | None = None, output_sample_rate: int | None = None
    ) -> None:
        self.converter = converter
        self.input_sample_rate = int(input_sample_rate or converter.sample_rate)
        self.output_sample_rate = int(output_sample_rate or self.input_sample_rate)
        self._in = MonoResampler(self.input_sample_rate, converter.sample_rate)
        self._out = MonoResampler(converter.sample_rate, self.output_sample_rate)
        self._chunker = Chunker(converter.chunk_samples, converter.context_samples, converter.lookahead_samples)
        self._aside: Any = None       # the resampling thread of overlap_resampling()
        self._pending: list = []      # its queued work: ("in" | "out", future), oldest first
        self.reset()

    # -- public -------------------------------------------------------------------------------------
    @property
    def latency_s(self) -> float:
        """Worst-case algorithmic delay: converter latency plus both resamplers."""
        c = self.converter
        return c.latency_samples / c.sample_rate + self._in.delay_s + self._out.delay_s

    @property
    def latency_samples(self) -> int:
        """:attr:`latency_s` in samples at the output rate (rounded up)."""
        return int(np.ceil(self.latency_s * self.output_sample_rate - 1e-9))

    @property
    def samples_in(self) -> int:
        return self._samples_in

    @property
    def samples_out(self) -> int:
        return self._samples_out

    @property
    def state(self) -> Any:
        """The converter state (for run-time parameters and reports)."""
        return self._state

    def overlap_resampling(self) -> None:
        """Offline, with a spare core: resample on a thread of its own, one block behind the
        converter. :meth:`process` converts the previous block's input while this block's is
        resampled, and returns the previous block's output while this block's is resampled; the
        resamplers get the same pieces in the same order, so the output is the same samples, only
        later (:meth:`flush_chunks` returns the rest). Never on the live path. Ends with :meth:`close`."""
        if self._aside is None:
            from concurrent.futures import ThreadPoolExecutor

            self._aside = ThreadPoolExecutor(1, thread_name_prefix="voxflip-resample")

    def close(self) -> None:
        """Stop the thread of :meth:`overlap_resampling`, if any (the stream stays usable, without it)."""
        aside, self._aside = self._aside, None
        if aside is not None:
            self._settle()
            aside.shutdown(wait=True)

    def _settle(self) -> None:
        """Wait for the resampling thread's queued work (after an error: the stream is reset anyway)."""
        pending, self._pending = self._pending, []
        for _, future in pending:
            future.cancel() or future.exception()

    def reset(self) -> None:
        self._settle()
        self._in.reset()
        self._out.reset()
        self._chunker.reset()
        self._state = self.converter.init_state()
        self._samples_in = 0
        self._samples_out = 0
        self._model_out = 0
        self._flushed = False

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed one block (see :func:`validate_block`); return the output now ready."""
        if self._flushed:
            raise RuntimeError("this stream was flushed; call reset() before processing more audio")
        x = validate_block(block)
        self._samples_in += x.shape[0]
        if self._aside is None:
            self._chunker.push(self._in.process(x))
            y = self._run_chunks(input_end=None)
            return self._emit(self._out.process(y))
        # One block behind: the thread resamples this block's input and the last block's output while
        # the previous block's input, resampled while the last block converted, converts here.
        ready = self._take("in")
        self._pending.append(("in", self._aside.submit(self._in.process, x.copy())))
        for piece in ready:
            self._chunker.push(piece)
        y = self._run_chunks(input_end=None)
        self._pending.append(("out", self._aside.submit(self._out.process, y)))
        done = self._take("out", but_last=True)
        return self._emit(np.concatenate(done) if done else np.zeros(0, np.float32))

    def _take(self, kind: str, *, but_last: bool = False) -> list[np.ndarray]:
        """The results of the resampling thread's queued work of ``kind``, oldest first (waiting for
        them; the thread runs its work in the order it was queued), all or all but the newest."""
        mine = [i for i, (k, _) in enumerate(self._pending) if k == kind]
        if but_last:
            mine = mine[:-1]
        taken = [self._pending[i][1].result() for i in mine]
        gone = set(mine)
        self._pending = [item for i, item in enumerate(self._pending) if i not in gone]
        return taken

    def flush(self) -> np.ndarray:
        """End the stream: return everything still owed. A second call returns nothing."""
        pieces = list(self.flush_chunks())
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def flush_chunks(self) -> Iterator[np.ndarray]:
        """End the stream: yield everything still owed, in pieces of bounded size.

        The pieces concatenate to what :meth:`flush` returns; a singing converter's tail (the rest of
        a melody once the speech has ended) comes out a converter piece at a time, so a caller that
        writes each piece before asking for the next holds about one piece, whatever the tail's
        length. The last ``HOLD_BACK_SAMPLES`` are held until the end, where the output is padded
        or cut to its exact length. A second call yields nothing.
        """
        if self._flushed:
            return
        self._flushed = True
        if self._aside is not None:   # the thread's queued work first, in order; the rest here
            for piece in self._take("in"):
                self._chunker.push(piece)
            done = self._take("out")
            if done:
                yield self._emit(np.concatenate(done))
        tail = self._in.flush()
        if tail.shape[0]:
            self._chunker.push(tail)
        end = self._chunker.samples_in
        self._chunker.pad_to_end()
        y = self._run_chunks(input_end=end)
        if self.converter.time_preserving:
            # Chunks padded past the end produced output for the padding: drop it (a time-preserving
            # converter owes at most a few chunks at the end, so its tail is taken at once).
            pieces = list(self.converter.finish_chunks(self._state))
            tail = np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)
            self._model_out += tail.shape[0]
            y = np.concatenate([y, tail])
            surplus = self._model_out - end
            if surplus > 0:
                y = y[: max(0, y.shape[0] - surplus)]
                self._model_out -= surplus
            converted: Iterator[np.ndarray] = iter([y])
        else:
            converted = itertools.chain([y], self._tail_pieces())
        held = np.zeros(0, np.float32)
        for piece in converted:
            held = np.concatenate([held, self._out.process(piece)])
            if held.shape[0] > HOLD_BACK_SAMPLES:
                yield self._emit(held[: held.shape[0] - HOLD_BACK_SAMPLES])
                held = held[held.shape[0] - HOLD_BACK_SAMPLES :]
        out = np.concatenate([held, self._out.flush()])
        if self.converter.time_preserving:
            expected = round(self._samples_in * self.output_sample_rate / self.input_sample_rate)
        else:
            expected = round(self._model_out * self.output_sample_rate / self.converter.sample_rate)
        missing = expected - (self._samples_out + out.shape[0])
        if missing > 0:
            out = np.concatenate([out, np.zeros(missing, np.float32)])
        elif missing < 0:
            out = out[: out.shape[0] + missing]
        yield self._emit(out)

    def _tail_pieces(self) -> Iterator[np.ndarray]:
        for piece in self.converter.finish_chunks(self._state):
            self._model_out += piece.shape[0]
            yield piece.astype(np.float32, copy=False)

    def report(self) -> ConverterReport:
        return self.converter.report(self._state)

    # -- internals ----------------------------------------------------------------------------------
    def _run_chunks(self, input_end: int | None) -> np.ndarray:
        windows = list(self._chunker.windows())
        if len(windows) > 1:
            self.converter.prefetch(windows)
        outs = [self.converter.step(window, self._state, input_end=input_end) for _, window in windows]
        y = np.concatenate(outs).astype(np.float32, copy=False) if outs else np.zeros(0, np.float32)
        self._model_out += y.shape[0]
        return y

    def _emit(self, y: np.ndarray) -> np.ndarray:
        self._samples_out += y.shape[0]
        return y.astype(np.float32, copy=False)

"""Offline rendering: a file through the streaming engine into another file.

The file is read and converted block by block (bounded memory whatever its
length) through the same :class:`~voxflip.streaming.Streamer` the live path
uses, and written atomically: a failure leaves no output file behind.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxflip.engine.audio_io import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioReader
from voxflip.engine.audio_write import AtomicAudioWriter
from voxflip.engine.converters.base import Converter, ConverterReport
from voxflip.engine.errors import AudioInputError, ConfigError, EngineError
from voxflip.streaming.streamer import MonoResampler, Streamer

#: the block size offline rendering reads by default (samples at the input rate)
DEFAULT_BLOCK_SIZE = 65_536
#: peak level below which an input counts as silent
SILENCE_PEAK_DBFS = -80.0
#: shortest input worth converting: one 5 ms analysis frame
MIN_INPUT_S = 0.005


@dataclass
class RenderResult:
    """What a render did, for the summary line and for tests."""

    input_path: Path
    output_path: Path
    converter: str
    input_seconds: float
    output_seconds: float
    input_sample_rate: int
    output_sample_rate: int
    wall_seconds: float
    latency_ms: float
    warnings: list[str] = field(default_factory=list)
    whole_input: bool = False      # the converter sings or speaks once the whole input has ended

    @property
    def speed(self) -> float:
        """Times faster than real time."""
        return self.input_seconds / self.wall_seconds if self.wall_seconds > 0 else math.inf

    def summary(self) -> str:
        return (
            f"{self.converter}: {self.input_path.name} ({self.input_seconds:.2f} s) -> {self.output_path} "
            f"({self.output_seconds:.2f} s, {self.output_sample_rate} Hz) in {self.wall_seconds:.2f} s, "
            f"{self.speed:.1f}x real time, "
            + ("output after the whole input" if self.whole_input else f"latency {self.latency_ms:.1f} ms")
        )


#: the shortest input (s) a render shares between cores by default (``cores=None``)
PARALLEL_MIN_S = 20.0
#: seconds read per block when a render uses several cores (the output does not depend on it)
PARALLEL_BLOCK_S = 8


def available_cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def _closing(converter: Converter, streamer: Streamer | None) -> Iterator[None]:
    try:
        yield
    finally:
        if streamer is not None:
            streamer.close()
        converter.close()


def render_file(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    converter: Converter,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    output_sample_rate: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    gain_db: float = 0.0,
    fx_preset: str | os.PathLike[str] | None = None,
    allow_plugins: bool = False,
    cores: int | None = None,
) -> RenderResult:
    """Convert one file.

    Args:
        input_path: any file :mod:`voxflip.engine.audio_io` reads.
        output_path: where to write; the extension picks the format.
        converter: from :func:`voxflip.engine.registry.make_converter`.
        block_size: samples per read (the streaming block size); the output does not depend on it.
        output_sample_rate: defaults to the input's rate.
        progress: called with ``(samples_done, samples_total)`` after each block.
        gain_db: output gain in dB, -60..+24.
        fx_preset: an effect preset (JSON): its pre-effects run before the converter and its
            post-effects after it, at the input's rate; their tails are rendered at the end.
        allow_plugins: let the preset load VST3/AU plugin files (code; off by default).
        cores: CPU cores the converter may use for this one file (:meth:`Converter.use_cores`; the
            output is the same), at most the cores this process may run on. ``None``: all of those
            for an input of ``PARALLEL_MIN_S`` or more (the workers take time to start), else one.

    Returns:
        A :class:`RenderResult`.

    Raises:
        AudioInputError, AudioOutputError, ConfigError: bad input, output or options.
    """
    if not isinstance(block_size, int) or block_size < 1:
        raise ConfigError(f"--block-size {block_size!r} must be a whole number of samples >= 1")
    if not -60.0 <= gain_db <= 24.0:
        raise ConfigError(f"--gain {gain_db!r} dB is outside -60..24 dB")
    gain = 10.0 ** (gain_db / 20.0)
    in_path = Path(input_path)
    out_path = Path(output_path)
    started = time.perf_counter()
    with AudioReader(in_path, block_frames=block_size) as reader:
        info = reader.info
        if info.frames / info.sample_rate < MIN_INPUT_S:
            raise AudioInputError(
                f"audio input {str(in_path)!r} is {1000 * info.frames / info.sample_rate:.2f} ms long "
                f"({info.frames} samples); voxflip needs at least {1000 * MIN_INPUT_S:.0f} ms (one analysis frame)"
            )
        rate_out = int(output_sample_rate or info.sample_rate)
        if not MIN_SAMPLE_RATE <= rate_out <= MAX_SAMPLE_RATE:
            raise ConfigError(f"--sample-rate {rate_out} is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
        if out_path.resolve() == in_path.resolve():
            raise ConfigError(f"output {str(out_path)!r} is the input file; write to another path")
        streamer: Streamer | None = None
        if fx_preset is None:
            streamer = Streamer(converter, info.sample_rate, rate_out)
            process, flush, latency_s = streamer.process, streamer.flush_chunks, streamer.latency_s
            report = streamer.report
        else:
            from voxflip.streaming.presets import load_preset

            chain = load_preset(fx_preset, converter=converter, allow_plugins=allow_plugins)
            chain.sample_rate = info.sample_rate
            resample = MonoResampler(info.sample_rate, rate_out)
            latency_s = chain.latency_s + resample.delay_s

            def process(block: np.ndarray) -> np.ndarray:
                return resample.process(chain.process(block))

            def flush() -> Iterator[np.ndarray]:
                for piece in chain.flush_chunks():
                    yield resample.process(piece)
                yield resample.flush()

            def report() -> ConverterReport:
                return chain.streamer.report() if chain.streamer is not None else ConverterReport()

        if cores is None:
            cores = available_cores() if info.frames >= PARALLEL_MIN_S * info.sample_rate else 1
        cores = max(1, min(int(cores), available_cores()))   # more workers than cores only contend
        if converter.use_cores(cores) > 1:   # several chunks per block: the workers start on the next ones
            reader.block_frames = max(reader.block_frames, PARALLEL_BLOCK_S * info.sample_rate)
            if streamer is not None:     # and the resamplers run beside the converter, a block behind
                streamer.overlap_resampling()
        warnings: list[str] = []
        if reader.downmixed:
            warnings.append(f"{in_path.name} has {info.channels} channels; they were mixed down to mono")
        peak = 0.0
        with AtomicAudioWriter(out_path, rate_out, 1) as writer, _closing(converter, streamer):
            done = 0
            for block in reader.blocks():
                peak = max(peak, float(np.max(np.abs(block))) if block.size else 0.0)
                writer.write(gain * process(block))
                done += block.shape[0]
                if progress is not None:
                    progress(done, info.frames)
            # the tail in pieces, each written as it comes: a melody can leave minutes of singing after the speech
            for piece in flush():
                writer.write(gain * piece)
            out_frames = writer.frames_written
            clipped = writer.clipped_samples
        peak_db = 20.0 * math.log10(peak) if peak > 0 else -math.inf
        if peak_db < SILENCE_PEAK_DBFS:
            warnings.append(
                f"{in_path.name} is silent (peak {peak_db:.0f} dBFS, below {SILENCE_PEAK_DBFS:.0f}); the output is silent too"
            )
        if clipped:
            warnings.append(f"{clipped} output samples were clipped to [-1, 1]; lower the level with --gain, e.g. --gain -6")
        warnings.extend(report().warnings)
    wall = time.perf_counter() - started
    return RenderResult(
        input_path=in_path,
        output_path=out_path,
        converter=converter.name,
        input_seconds=info.frames / info.sample_rate,
        output_seconds=out_frames / rate_out,
        input_sample_rate=info.sample_rate,
        output_sample_rate=rate_out,
        wall_seconds=wall,
        latency_ms=1000.0 * latency_s,
        warnings=warnings,
        whole_input=_whole_input(converter),
    )


def _whole_input(converter) -> bool:
    from voxflip.engine.registry import spec_of

    try:
        return spec_of(converter).whole_input
    except EngineError:      # a converter built outside the registry
        return False


def print_warnings(warnings: list[str]) -> None:
    for w in warnings:
        print(f"voxflip: warning: {w}", file=sys.stderr)

"""`voxflip live` and `voxflip devices`: the live path's front door.

Builds the converter (and effect chain), wraps it for constant-rate device I/O,
and runs it full duplex through PortAudio (pyaudio, callback mode) or paced
from a file. The live path imports no torch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from voxflip.engine.errors import AudioInputError, ConfigError, EngineError, install_hint
from voxflip.streaming.live import LiveEngine, LiveRunError, run_file

DEFAULT_BLOCK = 256


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the C libraries' chatter (ALSA probing every card) while PortAudio starts."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def open_pyaudio():
    try:
        import pyaudio
    except ImportError:
        raise EngineError(
            f"live audio needs pyaudio (and Debian's portaudio19-dev): {install_hint('live')}"
        ) from None
    with _quiet_stderr():
        return pyaudio, pyaudio.PyAudio()


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate: float
    low_input_latency_s: float
    low_output_latency_s: float


def list_devices() -> list[Device]:
    _, pa = open_pyaudio()
    try:
        devices = []
        for i in range(pa.get_device_count()):
            d = pa.get_device_info_by_index(i)
            api = pa.get_host_api_info_by_index(d["hostApi"])["name"]
            devices.append(Device(i, d["name"], api, d["maxInputChannels"], d["maxOutputChannels"],
                                  d["defaultSampleRate"], d["defaultLowInputLatency"], d["defaultLowOutputLatency"]))
        return devices
    finally:
        pa.terminate()


def format_devices(devices: list[Device]) -> str:
    if not devices:
        return "no audio devices found (no sound card, or no audio server such as JACK or PulseAudio running)"
    lines = [f"{'id':>3}  {'in':>3} {'out':>3}  {'rate':>7}  {'host API':<28} name"]
    for d in devices:
        lines.append(f"{d.index:>3}  {d.max_input_channels:>3} {d.max_output_channels:>3}  {d.default_sample_rate:>7.0f}  "
                     f"{d.host_api:<28} {d.name}")
    return "\n".join(lines)


def build_controller(converters: dict, mode: str, sample_rate: int, fx_preset: str | None = None,
                     preset_dir: str | None = None, *, allow_plugins: bool = False):
    """The live chain: a converter per mode (``"speech"``, ``"singing"``; the active one by ``mode``) and effects."""
    from voxflip.streaming.live_control import LiveController

    return LiveController(converters, mode, sample_rate, preset=fx_preset, preset_dir=preset_dir,
                          allow_plugins=allow_plugins)


def run_live_devices(
    engine: LiveEngine,
    *,
    input_device: int | None,
    output_device: int | None,
    status_interval_s: float = 0.5,
    duration_s: float | None = None,
    quiet: bool = False,
) -> dict[str, float]:
    """Run ``engine`` full duplex on PortAudio devices until Ctrl-C (or ``duration_s``).

    Ctrl-C (SIGINT) is the normal way to stop: it returns like the end of ``duration_s``.
    Another stop signal turned into a ``KeyboardInterrupt`` by the CLI (SIGTERM, SIGHUP: one
    with a ``signum`` other than SIGINT's) stops the devices and is raised again.

    Raises:
        EngineError: the devices cannot be opened.
        LiveRunError: the worker thread died.
    """
    pyaudio, pa = open_pyaudio()
    stream = None
    try:
        kwargs = dict(format=pyaudio.paFloat32, channels=engine.channels_in, rate=engine.sample_rate, input=True,
                      output=True, frames_per_buffer=engine.block_size, stream_callback=engine.pyaudio_callback)
        if input_device is not None:
            kwargs["input_device_index"] = input_device
        if output_device is not None:
            kwargs["output_device_index"] = output_device
        engine.start()
        try:
            with _quiet_stderr():
                stream = pa.open(**kwargs)
        except (OSError, ValueError) as exc:
            raise EngineError(
                f"cannot open the audio device(s) (input {input_device}, output {output_device}) at "
                f"{engine.sample_rate} Hz, {engine.channels_in} channel(s), {engine.block_size}-frame blocks: {exc}; "
                "see `voxflip devices`"
            ) from None
        device_in = stream.get_input_latency()
        device_out = stream.get_output_latency()
        if not quiet:
            print(f"voxflip live: declared latency {1000 * engine.latency_s:.1f} ms + device buffers "
                  f"{1000 * device_in:.1f} ms in / {1000 * device_out:.1f} ms out; Ctrl-C stops", file=sys.stderr)
        started = time.monotonic()
        try:
            while stream.is_active():
                time.sleep(status_interval_s)
                if not quiet:
                    print("\r" + engine.status_line(), end="", file=sys.stderr, flush=True)
                if engine.failure is not None:
                    exc = engine.failure
                    raise LiveRunError(f"the live worker stopped after {time.monotonic() - started:.1f} s: "
                                       f"{type(exc).__name__}: {' '.join(str(exc).split())}") from exc
                if duration_s is not None and time.monotonic() - started >= duration_s:
                    break
        except KeyboardInterrupt as exc:
            if getattr(exc, "signum", signal.SIGINT) != signal.SIGINT:
                raise
        return {"device_input_latency_s": device_in, "device_output_latency_s": device_out,
                "seconds": time.monotonic() - started}
    finally:
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.stop_stream()
                stream.close()
        engine.stop()
        pa.terminate()


def run_live_file(engine: LiveEngine, input_path: str, output_path: str, *, realtime: bool = True,
                  quiet: bool = False) -> dict[str, float]:
    """Play ``input_path`` through the live engine in real time (or as fast as possible) into ``output_path``.

    The output is written only when the whole input has played: an error, Ctrl-C or a stop
    signal leaves no file (and no temporary file). NaN/Inf input samples play as silence and
    are counted in ``engine.stats.non_finite_input_samples``. A block that fails to convert
    ends the run (the engine is switched to ``stop_on_error``): the output would have a hole.

    Raises:
        AudioInputError: the input cannot be read, or is not at the engine's rate.
        AudioOutputError: the output cannot be written (disk full, ...).
        LiveRunError: the conversion failed.
        KeyboardInterrupt: Ctrl-C or a stop signal (the output is not written).
    """
    from voxflip.engine.audio_io import AudioReader
    from voxflip.engine.audio_write import AtomicAudioWriter

    engine.stop_on_error = True
    with AudioReader(input_path, block_frames=engine.block_size * 16, check_finite=False) as reader:
        if reader.info.sample_rate != engine.sample_rate:
            raise AudioInputError(
                f"audio input {input_path!r} is at {reader.info.sample_rate} Hz but the live engine runs at "
                f"{engine.sample_rate} Hz; pass --sample-rate {reader.info.sample_rate}"
            )
        stop = threading.Event()
        started = time.monotonic()
        last = [started]

        def status(index: int) -> None:
            now = time.monotonic()
            if not quiet and now - last[0] >= 0.5:
                last[0] = now
                print("\r" + engine.status_line(), end="", file=sys.stderr, flush=True)

        engine.start()
        try:
            with AtomicAudioWriter(output_path, engine.sample_rate, 1) as writer:  # on error: "... was not written"
                run_file(engine, reader.blocks(), writer.write, realtime=realtime, on_block=status, stop=stop)
        finally:
            engine.stop()
        return {"seconds": time.monotonic() - started}


def summary(engine: LiveEngine, extra: dict[str, float], stopped_by: str | None = None) -> str:
    """The one-line report of a live run; ``stopped_by`` names the signal that cut it short, if one did."""
    p50, p99 = engine.stats.rtf_percentiles()
    s = engine.stats
    text = (
        f"voxflip live{f' (stopped by {stopped_by})' if stopped_by else ''}: {s.blocks_out} blocks "
        f"({s.blocks_out * engine.block_size / engine.sample_rate:.1f} s) at "
        f"{engine.sample_rate} Hz, declared latency {1000 * engine.latency_s:.1f} ms, RTF p50 {p50:.2f} p99 {p99:.2f}, "
        f"xruns {s.xruns}, input overruns {s.input_overruns}, device flags {s.device_flags}, "
        f"worker errors {s.worker_errors}, silence inserted {engine.processor.gap_samples / engine.sample_rate:.2f} s, "
        f"late output dropped {s.late_samples_dropped / engine.sample_rate:.2f} s"
    )
    if s.non_finite_input_samples:
        text += f", non-finite input {s.non_finite_input_samples} samples (played as silence)"
    if s.non_finite_output_samples:
        text += f", non-finite output {s.non_finite_output_samples} samples (played as silence)"
    return text


def check_block_size(block_size: int) -> int:
    if not 16 <= block_size <= 16384:
        raise ConfigError(f"--block-size {block_size} is outside 16..16384 frames")
    return block_size

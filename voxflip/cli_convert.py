"""``voxflip render``, ``demo``, ``live``, ``devices`` and ``bench``: the commands that convert audio.

Every converter is built through the registry (:mod:`voxflip.engine.registry`) from the
options the user gave; an option a converter does not take, or a bad value, comes back as
an :class:`~voxflip.engine.errors.OptionError` that :func:`voxflip.cli.main` rewords with the
flag the user typed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from voxflip.engine.errors import EngineError

#: CLI flag -> converter option (the registry's names), for the options a user can give
CONVERTER_FLAGS: dict[str, str] = {
    "chunk_ms": "chunk_ms",
    "transpose": "transpose_semitones",
    "duration": "duration",
    "model": "model_path",
    "melody": "melody",
    "tempo": "tempo",
    "vibrato_cents": "vibrato_cents",
    "portamento_ms": "portamento_ms",
    "max_output_s": "max_output_s",
    "melody_pitch": "melody_pitch",
    "melody_octave": "melody_octave",
    "singers_formant_db": "singers_formant_db",
    "brightness_db": "brightness_db",
    "voice_floor": "voice_floor_hz",
    "vocoder": "vocoder",
    "seed": "seed",
    "content_model": "content_model",
    "pace": "pace",
}


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The converter options the user gave on the command line (flags left out are not passed)."""
    return {option: getattr(args, flag) for flag, option in CONVERTER_FLAGS.items()
            if getattr(args, flag, None) is not None}


#: the flags of a corpus render (--manifest / --input-dir), refused with a single file
CORPUS_FLAGS = ("out", "ray")


class ProgressBar:
    """A ``progress(done, total)`` callback that opens a tqdm bar on stderr at its first call
    (none with ``quiet``); ``close()`` ends it. Keyword arguments go to tqdm."""

    def __init__(self, quiet: bool, **tqdm_options: Any) -> None:
        self.quiet = quiet
        self.options = tqdm_options
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=sys.stderr, leave=False,
                            mininterval=0.1 if sys.stderr.isatty() else 10.0, **self.options)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_render(args: argparse.Namespace) -> int:
    sources = [f for f, v in (("IN", args.input), ("--manifest", args.manifest), ("--input-dir", args.input_dir)) if v]
    if len(sources) != 1:
        raise EngineError(f"render takes one of: an input file IN, --manifest M or --input-dir D; got "
                          f"{' and '.join(sources) if sources else 'none'}")
    if args.input is None:
        return cmd_render_corpus(args)
    given = [f"--{f.replace('_', '-')}" for f in CORPUS_FLAGS if getattr(args, f) is not None]
    if given:
        raise EngineError(f"{', '.join(given)} go with --manifest or --input-dir; a single file takes -o OUT")
    if args.output is None:
        raise EngineError("render IN needs -o OUT (the output file)")
    return cmd_render_file(args)


def cmd_render_corpus(args: argparse.Namespace) -> int:
    """``voxflip render --manifest M | --input-dir D --out DIR``: exit 1 when any file failed."""
    import os

    from voxflip.engine.registry import make_converter

    from .corpus import RenderSettings, jobs_from_folder, jobs_from_manifest, print_failures, render_corpus
    from .render import DEFAULT_BLOCK_SIZE

    flag = "--manifest" if args.manifest else "--input-dir"
    if args.output is not None:
        raise EngineError(f"{flag} writes into a folder: give --out DIR instead of -o")
    if args.out is None:
        raise EngineError(f"{flag} needs --out DIR (the output folder)")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise EngineError(f"--out {args.out!r} is a file; give a folder")
    def absolute(value):   # files named by options reach every worker (and Ray node) by the same path
        return os.path.abspath(value) if isinstance(value, str) and os.path.isfile(value) else value

    options = {name: absolute(value) for name, value in given_options(args).items()}
    settings = RenderSettings(to=args.to, method=args.method, options=options,
                              block_size=args.block_size or DEFAULT_BLOCK_SIZE, sample_rate=args.sample_rate,
                              gain_db=args.gain, fx=absolute(args.fx), allow_plugins=args.allow_plugins)
    if args.ray is not None:
        from .corpus_ray import import_ray

        import_ray()    # missing: one line before any work
    if args.manifest:
        jobs = jobs_from_manifest(args.manifest, args.to, args.out, has_melody=args.melody is not None)
    else:
        jobs = jobs_from_folder(args.input_dir, args.out)
    if args.manifest is None or args.to != "singing" or args.melody is not None:
        make_converter(args.to, args.method, **settings.options)   # bad options or melody: exit 2, before any file
    if not -60.0 <= args.gain <= 24.0:
        raise EngineError(f"--gain {args.gain!r} dB is outside -60..24 dB")
    workers = args.workers or os.cpu_count() or 1
    progress = ProgressBar(args.quiet, desc="render", unit="file")

    runner = None
    where = f"{workers} worker{'s' if workers > 1 else ''}"
    if args.ray is not None:
        import functools

        from .corpus_ray import run_ray

        runner = functools.partial(run_ray, address=args.ray, workers=workers)
        where = f"on Ray ({args.ray})"
    try:
        result = render_corpus(jobs, settings, args.out, workers=workers, runner=runner,
                               progress=progress)
    finally:
        progress.close()
    print_failures(result.records)
    from .corpus import summary

    print(summary(result, args.out, where))
    return 1 if result.failed else 0


def cmd_render_file(args: argparse.Namespace) -> int:
    from voxflip.engine.registry import make_converter

    from .render import DEFAULT_BLOCK_SIZE, print_warnings, render_file

    converter = make_converter(args.to, args.method, **given_options(args))
    progress = ProgressBar(args.quiet, desc=converter.name, unit="smp", unit_scale=True, delay=1.0)

    try:
        result = render_file(
            args.input,
            args.output,
            converter,
            block_size=args.block_size or DEFAULT_BLOCK_SIZE,
            output_sample_rate=args.sample_rate,
            progress=progress,
            gain_db=args.gain,
            fx_preset=args.fx,
            allow_plugins=args.allow_plugins,
            cores=args.workers,
        )
    finally:
        progress.close()
    print_warnings(result.warnings)
    print(result.summary())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Sing the bundled sentence on the bundled tune, and speak that singing again, each with the default."""
    from importlib.resources import files
    from pathlib import Path

    from voxflip.engine.registry import Direction, make_converter

    from .render import print_warnings, render_file

    data = files("voxflip") / "data"
    speech = Path(str(data / "arctic_a0007.wav"))
    tune = Path(str(data / "tune.mid"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sung = out / "arctic_a0007_sung.wav"
    spoken = out / "arctic_a0007_sung_spoken.wav"
    steps = [
        ("speech -> singing", speech, sung, make_converter(Direction.TO_SINGING, melody=tune)),
        ("singing -> speech", sung, spoken, make_converter(Direction.TO_SPEECH)),
    ]
    for label, src, dst, converter in steps:
        result = render_file(src, dst, converter)
        print_warnings(result.warnings)
        print(f"{label}: {result.summary()}")
    print(f"Listen: {speech} (input), {sung} (sung on {tune.name}), {spoken} (sung, then spoken again)")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from .live import format_devices, list_devices

    print(format_devices(list_devices()))
    return 0


def live_converters(args: argparse.Namespace) -> dict[str, Any]:
    """The converters of both modes for ``voxflip live``: ``--to``'s with ``--method``, else each
    direction's live default (the default converter's live form).

    Each option goes to the converter(s) that take it (``--melody`` to the singing one,
    ``--duration`` to the speech one); an option neither takes is refused by the ``--to``
    converter. Without ``--melody`` the singing converter follows live notes. A converter
    without ``--chunk-ms`` streams at its live chunk, and so does the other mode's when
    ``--chunk-ms`` is not on its grid.
    """
    from voxflip.engine.registry import (
        Direction,
        get_converter,
        live_default_converter,
        make_converter,
        names,
    )

    given = given_options(args)
    primary = Direction.parse(args.to)
    specs = {d: get_converter(args.method, d) if d is primary and args.method else live_default_converter(d)
             for d in Direction}
    if specs[primary].whole_input:
        stream = f"{specs[primary].name}-stream"
        also = f" or its streaming form {stream}" if stream in names(primary) else ""
        raise EngineError(f"--method {specs[primary].name} converts once the whole input has ended, so live it would "
                          f"play only silence: render files with it (voxflip render), or play "
                          f"{live_default_converter(primary).name}{also} live")
    built = {}
    for direction, spec in specs.items():
        others = {k for d, s in specs.items() if d is not direction for k in s.option_names}
        if direction is primary:    # it also gets what no converter takes, and refuses it
            options = {k: v for k, v in given.items() if k in spec.option_names or k not in others}
        else:
            options = {k: v for k, v in given.items() if k in spec.option_names}
        chunk_ms = options.get("chunk_ms")
        if chunk_ms is None or (direction is not primary and not spec.grid.accepts(chunk_ms)):
            options["chunk_ms"] = spec.grid.live_ms
        if direction is Direction.TO_SINGING and "melody" not in options:
            options["live_notes"] = True
        built[direction.value] = make_converter(direction, spec.name, **options)
    return built


def cmd_live(args: argparse.Namespace) -> int:
    from voxflip.streaming.live import LiveEngine, prefill_blocks_for

    from .live import build_controller, check_block_size, run_live_devices, run_live_file, summary

    if (args.input_file is None) != (args.output_file is None):
        raise EngineError("--input-file and --output-file go together")
    if args.fast and args.input_file is None:
        raise EngineError("--fast only applies to --input-file")
    if args.stats_json:   # checked before the run, not after an hour of it
        import os

        folder = os.path.dirname(args.stats_json) or "."
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            raise EngineError(f"--stats-json {args.stats_json!r}: folder {folder!r} does not exist or is not writable")
    converters = live_converters(args)
    rate = args.sample_rate
    if rate is None and args.input_file is not None:
        from voxflip.engine.audio_io import probe

        rate = probe(args.input_file).sample_rate
    rate = rate or 48_000
    block = check_block_size(args.block_size)
    controller = build_controller(converters, args.to, rate, args.fx, allow_plugins=args.allow_plugins)
    processor = controller.realtime
    chunk_s = max(c.chunk_samples / c.sample_rate for c in converters.values())
    prefill = prefill_blocks_for(chunk_s, rate, block, margin_s=args.safety_ms / 1000.0)
    engine = LiveEngine(processor, rate, block, channels_in=args.channels, channels_out=args.channels,
                        on_overload=args.on_overload, prefill_blocks=prefill, apply_param=controller.apply)
    engine.warm_up()
    processor.set_mix(args.mix)
    processor.set_gain_db(args.gain)
    processor.reset_ramps()
    osc = start_osc(args, engine) if args.osc else None
    interrupted: KeyboardInterrupt | None = None   # Ctrl-C or a stop signal: summarise, then exit 128+N
    try:
        if args.input_file is not None:
            extra = run_live_file(engine, args.input_file, args.output_file, realtime=not args.fast, quiet=args.quiet)
        else:
            extra = run_live_devices(engine, input_device=args.input_device, output_device=args.output_device,
                                     duration_s=args.seconds, quiet=args.quiet)
    except KeyboardInterrupt as exc:
        interrupted, extra = exc, {}
    finally:
        if osc is not None:
            osc.stop()
        if not args.quiet:
            print(file=sys.stderr)
    stopped_by = None
    if interrupted is not None:
        import signal

        from .cli import signal_name

        stopped_by = signal_name(getattr(interrupted, "signum", signal.SIGINT))
    print(summary(engine, extra, stopped_by), flush=True)
    if osc is not None:
        counters = ", ".join(f"{k} {v}" for k, v in osc.counters.items() if v)
        print(f"voxflip live: OSC messages: {counters or 'none'}")
    if args.stats_json:
        import json

        stats = {"sample_rate": rate, "block_size": block, "declared_latency_samples": engine.latency_samples,
                 "processor_latency_samples": processor.latency_samples, "prefill_blocks": engine.prefill_blocks,
                 "chunk_ms": 1000.0 * chunk_s, "voice_floor_hz": args.voice_floor,
                 "xruns": engine.stats.xruns, "input_overruns": engine.stats.input_overruns,
                 "device_flags": engine.stats.device_flags, "worker_errors": engine.stats.worker_errors,
                 "non_finite_input_samples": engine.stats.non_finite_input_samples,
                 "non_finite_output_samples": engine.stats.non_finite_output_samples,
                 "blocks": engine.stats.blocks_out, "osc": dict(osc.counters) if osc is not None else None,
                 "stopped_by": stopped_by, **extra}
        _write_text_atomically(args.stats_json, json.dumps(stats, indent=2), flag="--stats-json")
    if interrupted is not None:
        raise interrupted
    return 0


def _write_text_atomically(path: str, text: str, *, flag: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it there: never half a file."""
    import contextlib
    import os
    import secrets

    folder, name = os.path.split(path)
    temp = None
    try:
        temp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # the umask's permissions
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(temp, path)
        temp = None
    except OSError as exc:
        if isinstance(exc, FileExistsError):
            temp = None   # not ours
        raise EngineError(f"{flag} {path!r} cannot be written: {' '.join((exc.strerror or str(exc)).split())}") from None
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)


def start_osc(args: argparse.Namespace, engine):
    from voxflip.osc_control import OscServer, is_loopback_host, parse_bind, parse_cidrs

    bind = f"127.0.0.1:{args.osc}" if args.osc.isdigit() else args.osc  # a bare port stays on loopback
    try:
        host, port = parse_bind(bind, option="--osc")
        allow = parse_cidrs(args.osc_allow, option="--osc-allow") if args.osc_allow else None
        reply = parse_bind(args.osc_reply, option="--osc-reply") if args.osc_reply else None
    except ValueError as exc:
        raise EngineError(str(exc)) from None

    def status() -> dict[str, float]:
        p50, p99 = engine.stats.rtf_percentiles()   # NaN before the first block: sent as -1
        return {"latency_ms": 1000.0 * engine.latency_s, "rtf_p50": p50, "rtf_p99": p99, "xruns": engine.stats.xruns,
                "blocks_out": engine.stats.blocks_out}

    server = OscServer(engine.params, host=host, port=port, allow=allow, status=status, reply_to=reply)
    try:
        server.start()
    except OSError as exc:
        raise EngineError(f"--osc {args.osc}: cannot listen there: {exc.strerror or exc}") from None
    if not is_loopback_host(host) and not args.osc_allow:
        print(f"voxflip live: warning: OSC listens on {host}, reachable from other machines; "
              "limit who may send with --osc-allow CIDR", file=sys.stderr)
    if not args.quiet:
        where = f"{server.address[0]}:{server.address[1]}"
        print(f"voxflip live: OSC on {where}" + (f", allowed {args.osc_allow}" if args.osc_allow else ""),
              file=sys.stderr)
    return server


def cmd_bench(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from voxflip.engine.errors import MissingDependencyError, install_hint
    from voxflip.engine.registry import converters, get_converter

    from .bench import default_converters, format_table, run_bench
    from .render import available_cores

    if args.converters is None:
        names = list(default_converters(live=not args.offline))
    else:
        names = [c.strip() for c in args.converters.split(",") if c.strip()]
        if not names:
            raise EngineError(f"--converters {args.converters!r} names no converter")
    known = {n for spec in converters() for n in (spec.name, *spec.aliases)}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise EngineError(f"--converters: {', '.join(map(repr, unknown))} is not a converter; use some of: "
                          f"{', '.join(s.name for s in converters())}")
    specs = [get_converter(name) for name in names]
    for spec in specs:
        if args.chunk_ms is not None:
            spec.grid.frames(args.chunk_ms)                  # off its grid: an OptionError
        for requirement in spec.missing():
            raise MissingDependencyError(f"{spec.name} needs {requirement.what}: {install_hint(requirement.extra)}")
    with_model = [s for s in specs if "model_path" in s.option_names]
    if args.model is not None and not with_model:
        runs_model = ", ".join(s.name for s in converters() if "model_path" in s.option_names)
        raise EngineError(f"--model applies to the converters that run a model ({runs_model}); "
                          f"none of {', '.join(s.name for s in specs)} does")
    if args.vocoder is not None:
        if args.offline:
            raise EngineError("--vocoder goes with the live benchmark (voxflip bench --converters flow-nodur --vocoder V); "
                              "not --offline")
        if not any("vocoder" in s.option_names for s in specs):
            raise EngineError(f"--vocoder applies to the converters that vocode mel frames "
                              f"({', '.join(s.name for s in converters() if 'vocoder' in s.option_names)}); none of "
                              f"{', '.join(s.name for s in specs)} does")
    if args.voice_floor is not None:
        if args.offline:
            raise EngineError("--voice-floor goes with the live benchmark (it sizes the live latency); not --offline")
        if not any("voice_floor_hz" in s.option_names for s in specs):
            raise EngineError(f"--voice-floor applies to the converters on the WORLD analysis; none of "
                              f"{', '.join(s.name for s in specs)} is")
        from .bench import bench_converter

        floored = next(s.name for s in specs if "voice_floor_hz" in s.option_names)
        bench_converter(floored, args.chunk_ms, 1.0, None, args.voice_floor)   # a bad floor fails here, once
    if args.cores != 1 and (not args.offline or args.corpus):
        raise EngineError("--cores goes with --offline (one long file on several cores); the live benchmark and "
                          "--corpus run each render on one core")
    if args.offline and args.cores > available_cores():
        raise EngineError(f"--cores {args.cores} is more than the {available_cores()} this process may use")
    if args.corpus and not args.offline:
        raise EngineError("--corpus goes with --offline: voxflip bench --offline --corpus")
    whole = [s.name for s in specs if s.whole_input]
    if whole and not args.offline:
        raise EngineError(f"{', '.join(whole)} convert(s) once the whole input has ended: a live block's time means "
                          "nothing for them; measure them with voxflip bench --offline")
    if args.offline:
        if args.seconds is not None and not 1.0 <= args.seconds <= 3600.0:
            raise EngineError(f"--offline --seconds {args.seconds!r} must be 1..3600 s of audio")
        return _bench_offline(args, [s.name for s in specs])
    try:
        block_ms = [float(b) for b in args.block_ms.split(",") if b.strip()]
    except ValueError:
        raise EngineError(f"--block-ms {args.block_ms!r} must be comma-separated numbers of ms") from None
    if not block_ms or any(not 1 <= b <= 500 for b in block_ms):
        raise EngineError(f"--block-ms {args.block_ms!r}: each block must be 1..500 ms")
    if with_model:
        from .bench import bench_converter

        bench_converter(with_model[0].name, args.chunk_ms, 1.0, args.model, None, args.vocoder,
                        args.content_model)  # a bad model fails here

    def progress(r) -> None:
        print(f"bench: {r.converter} at {r.block_ms:g} ms: RTF p50 {r.rtf_p50:.2f}", file=sys.stderr)

    results = run_bench([s.name for s in specs], block_ms, args.rate, args.seconds or 20.0, progress=progress,
                        chunk_ms=args.chunk_ms, model=args.model, voice_floor_hz=args.voice_floor, vocoder=args.vocoder,
                        content_model=args.content_model)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(format_table(results))
    return 0


def _bench_offline(args: argparse.Namespace, names: list[str]) -> int:
    """``voxflip bench --offline [--corpus]``: times real time per converter for one long file, and the
    naive pyworld pipeline on it; with ``--corpus``, 1 and 2 workers over ``--files`` files."""
    import json
    from dataclasses import asdict

    from .bench import format_corpus_table, format_offline_table, run_corpus_bench, run_offline_bench

    seconds = args.seconds or 60.0

    def progress(name: str, row: dict) -> None:
        print(f"bench --offline: {name}: {row['seconds'] / row['wall_s']:.1f}x real time", file=sys.stderr)

    if args.corpus:
        if args.converters is not None and len(names) != 1:
            raise EngineError(f"--corpus measures one converter; --converters {args.converters!r} names {len(names)}")
        corpus = run_corpus_bench(names[0] if args.converters else None, files=args.files, sample_rate=args.rate,
                                  seconds=seconds, model=args.model)
        print(json.dumps([asdict(r) for r in corpus], indent=2) if args.json else format_corpus_table(corpus))
        return 0
    results = run_offline_bench(names, sample_rate=args.rate, seconds=seconds, progress=progress, model=args.model,
                                cores=args.cores)
    print(json.dumps([asdict(r) for r in results], indent=2) if args.json else format_offline_table(results))
    return 0

"""The ``voxflip`` command line.

``main(argv)`` returns the exit status: 0 on success, 2 for a user error (one
line on stderr; ``--debug`` adds the traceback), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import sys
import traceback
from collections.abc import Sequence

from voxflip.engine.errors import ConfigError, EngineError

from . import __version__


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxflip",
        description="Convert singing to speech and speech to singing, live and offline.",
    )
    parser.add_argument("--version", action="version", version=f"voxflip {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    render = sub.add_parser(
        "render",
        help="convert a file",
        description="Convert an audio file: singing -> speech (--to speech) or speech -> singing (--to singing --melody TUNE).",
    )
    render.add_argument("input", help="audio file: wav, flac, mp3, ogg or aiff, 8-192 kHz, any channel count")
    render.add_argument("-o", "--output", required=True, help="output file; the extension picks the format")
    render.add_argument("--to", required=True, choices=["speech", "singing"], help="target: speech or singing")
    render.add_argument("--method", help="--to speech: flow (= flow-dur, the default), flow-nodur, world-nodur, "
                                         "world-dur; --to singing: world")
    render.add_argument("--melody", help="tune for --to singing: .mid, .musicxml/.xml/.mxl, or a .csv/.json note list")
    render.add_argument("--model", help="flow model (model.onnx from voxflip export) for --method flow-nodur/flow-dur")
    render.add_argument("--transpose", type=_finite_float, default=0.0, metavar="SEMITONES",
                        help="shift the melody (singing) or the speaking pitch (speech) by semitones")
    render.add_argument("--tempo", type=_finite_float, default=1.0, metavar="FACTOR",
                        help="play the melody FACTOR times faster (2 = twice as fast)")
    render.add_argument("--duration", type=_finite_float, metavar="AMOUNT",
                        help="world-dur: how far to shorten sustained vowels, 0..1 (default 1)")
    render.add_argument("--vibrato-cents", type=_finite_float, metavar="CENTS", help="singing vibrato depth (default 25)")
    render.add_argument("--portamento-ms", type=_finite_float, metavar="MS", help="singing glide between legato notes (default 30)")
    render.add_argument("--chunk-ms", type=_finite_float, metavar="MS", help="processing chunk, a multiple of 5 ms (default 20)")
    render.add_argument("--block-size", type=_positive_int, default=None, metavar="N",
                        help="read and stream the input in blocks of N samples (default 65536); the output does not depend on it")
    render.add_argument("--sample-rate", type=_positive_int, metavar="HZ", help="output sample rate (default: the input's)")
    render.add_argument("--gain", type=_finite_float, default=0.0, metavar="DB", help="output gain in dB (default 0)")
    render.add_argument("--fx", metavar="PRESET",
                        help="effect preset JSON: pre-effects before the converter, post-effects after (see docs/effects.md)")
    render.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    devices = sub.add_parser("devices", help="list audio devices", description="List the audio devices PortAudio sees.")
    devices.set_defaults()

    live = sub.add_parser(
        "live",
        help="convert live, from a microphone or a file played in real time",
        description="Convert live: a microphone to the speakers (full duplex through PortAudio), or a file played in "
                    "real time into another file (--input-file/--output-file). Ctrl-C stops and prints a summary.",
    )
    live.add_argument("--to", required=True, choices=["speech", "singing"], help="target: speech or singing")
    live.add_argument("--method", help="--to speech: flow (= flow-dur, the default), flow-nodur, world-nodur, "
                                       "world-dur; --to singing: world")
    live.add_argument("--model", help="flow model (model.onnx from voxflip export) for the flow methods "
                                      "(default: the shipped one)")
    live.add_argument("--melody", help="tune for singing (it plays from the start of the stream); without one, "
                                       "singing follows live notes (OSC /voxflip/note)")
    live.add_argument("--transpose", type=_finite_float, default=0.0, metavar="SEMITONES")
    live.add_argument("--tempo", type=_finite_float, default=1.0, metavar="FACTOR")
    live.add_argument("--duration", type=_finite_float, metavar="AMOUNT", help="world-dur shortening 0..1")
    live.add_argument("--chunk-ms", type=_finite_float, default=None, metavar="MS",
                      help="converter chunk, a multiple of 5 ms (default 10 live: less latency, more per-call "
                           "overhead; the flow methods keep their model's 20)")
    live.add_argument("--input-device", type=int, metavar="ID", help="input device id (see voxflip devices)")
    live.add_argument("--output-device", type=int, metavar="ID", help="output device id (see voxflip devices)")
    live.add_argument("--sample-rate", type=_positive_int, metavar="HZ", help="device rate (default: 48000, or the input file's)")
    live.add_argument("--block-size", type=_positive_int, default=256, metavar="N", help="frames per device callback (default 256)")
    live.add_argument("--channels", type=_positive_int, default=1, metavar="N", help="device channels (default 1)")
    live.add_argument("--fx", metavar="PRESET", help="effect preset JSON (pre- and post-effects around the converter)")
    live.add_argument("--safety-ms", type=_finite_float, default=5.0, metavar="MS",
                      help="scheduling margin added to the worker's prefill (default 5 ms; 0 = tightest, risks xruns)")
    live.add_argument("--on-overload", choices=["silence", "dry"], default="silence",
                      help="what an xrun plays: silence (default) or the dry input")
    live.add_argument("--mix", type=_finite_float, default=1.0, help="dry/wet 0..1 (0 = the input, delayed like the output)")
    live.add_argument("--gain", type=_finite_float, default=0.0, metavar="DB", help="output gain in dB")
    live.add_argument("--stats-json", metavar="PATH", help="write the run's latency and counters as JSON here at the end")
    live.add_argument("--osc", metavar="HOST:PORT", help="listen for OSC control (docs/osc.md); a bare PORT means 127.0.0.1:PORT")
    live.add_argument("--osc-allow", metavar="CIDR[,CIDR...]", help="only accept OSC from these networks")
    live.add_argument("--osc-reply", metavar="HOST:PORT", help="also push /voxflip/status there every second")
    live.add_argument("--input-file", help="play this file through the live engine instead of a microphone")
    live.add_argument("--output-file", help="with --input-file: write the live output here")
    live.add_argument("--fast", action="store_true", help="with --input-file: as fast as possible instead of real time")
    live.add_argument("--seconds", type=_finite_float, metavar="S", help="with devices: stop after S seconds")
    live.add_argument("-q", "--quiet", action="store_true", help="no status line")

    bench = sub.add_parser(
        "bench",
        help="measure latency, speed, memory and start-up per converter and block size",
        description="Benchmark each converter at 10, 20 and 40 ms device blocks on one CPU core.",
    )
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.add_argument("--converters", default="world-nodur,world-dur,world",
                       help="comma-separated: world-nodur, world-dur, world, flow-nodur, flow-dur "
                            "(default: the three WORLD ones)")
    bench.add_argument("--block-ms", default="10,20,40", help="comma-separated device block sizes in ms")
    bench.add_argument("--chunk-ms", type=_finite_float, default=None,
                       help="converter chunk in ms (default: what voxflip live uses: 10 ms, the flow model's own 20)")
    bench.add_argument("--model", default=None, help="flow model for flow-nodur/flow-dur (default: the shipped one)")
    bench.add_argument("--rate", type=_positive_int, default=48_000, help="device sample rate (default 48000)")
    bench.add_argument("--seconds", type=_finite_float, default=20.0, help="audio per configuration (default 20 s)")

    corpus = sub.add_parser("corpus", help="training data: import, synthesise, check, compute features",
                            description="Build and inspect training manifests (docs/data.md).")
    csub = corpus.add_subparsers(dest="corpus_command", metavar="ACTION")
    c_import = csub.add_parser("import", help="write a manifest for a corpus on disk",
                               description="Read a corpus in its published layout and write a manifest.")
    c_import.add_argument("kind", help="nhss, nus48e, dsing, popbutfy or pairs")
    c_import.add_argument("root", help="the corpus folder")
    c_import.add_argument("-o", "--output", required=True, help="manifest to write (.jsonl)")
    c_import.add_argument("--seed", type=int, default=0, help="split seed for corpora without their own split")
    c_check = csub.add_parser("check", help="find missing, broken or mismatched clips",
                              description="Check every entry of a manifest; training skips what this reports.")
    c_check.add_argument("manifest")
    c_check.add_argument("--workers", type=_positive_int, default=1)
    c_check.add_argument("--max-duration-ratio", type=_finite_float, default=5.0, metavar="R",
                         help="flag pairs whose sung/spoken durations differ by more than R times (default 5)")
    c_synth = csub.add_parser("synth", help="make a paired speech/singing corpus with Festival and music21",
                              description="Generate paired speech and singing of the same sentences (docs/data.md).")
    c_synth.add_argument("--out", required=True, help="output folder (resumable)")
    c_synth.add_argument("--minutes", type=_finite_float, required=True, help="minutes of speech to generate")
    c_synth.add_argument("--seed", type=int, default=0)
    c_synth.add_argument("--workers", type=_positive_int, default=1)
    c_feat = csub.add_parser("features", help="compute and cache features for a manifest",
                             description="Log-mel, F0, energy, rhythm and phone labels per frame, cached by config.")
    c_feat.add_argument("manifest")
    c_feat.add_argument("--preset", default="s2s", choices=["s2s", "sts"], help="frame setup (default s2s: 16 kHz)")
    c_feat.add_argument("--cache-dir", help="default: features/ next to the manifest")
    c_feat.add_argument("--workers", type=_positive_int, default=1)

    train = sub.add_parser("train", help="train the S2S flow model (docs/models.md)",
                           description="Train from a TOML config; resumes from the run folder's last checkpoint.")
    train.add_argument("config", help="TOML config (configs/tiny.toml runs in a minute)")
    train.add_argument("--run-dir", required=True, help="checkpoints, TensorBoard curves and config.toml go here")
    train.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE", help="override a config value")
    train.add_argument("--no-resume", action="store_true", help="start over even if the run folder has checkpoints")
    train.add_argument("--steps", type=_positive_int, help="stop after this many more steps (the config's max_steps still caps)")
    export = sub.add_parser("export", help="export a checkpoint to a streaming ONNX model",
                            description="Write model.onnx (+ model.decoder.onnx, model.manifest.json) from a checkpoint.")
    export.add_argument("checkpoint")
    export.add_argument("-o", "--output", required=True, help="model.onnx path")
    export.add_argument("--chunk-frames", type=_positive_int, default=2, help="frames per streaming chunk (default 2 = 20 ms)")
    export.add_argument("--noise-scale", type=_finite_float, metavar="SCALE",
                        help="prior noise at inference, 0 or more (default: the checkpoint's model.noise_scale)")

    ev = sub.add_parser("eval", help="score systems on a manifest with the papers' metrics (docs/results.md)",
                        description="Run systems over a manifest split and tabulate WER/CER/DNSMOS/SRMR/similarity "
                                    "(singing->speech) or RCA/F0 RMSE/LSD/RRD/DNSMOS (speech->singing).")
    ev.add_argument("--system", required=True, help="comma-separated: input, real, world-nodur, world-dur, flow-nodur, "
                                                    "flow-dur, alt-tts | sts-input, sts-real, world")
    ev.add_argument("--manifest", required=True)
    ev.add_argument("--split", default="test", help="train, valid, test or all (default test)")
    ev.add_argument("--out", default="eval/report.md", help="report path (.md; a .json and a _clips folder go next to it)")
    ev.add_argument("--limit", type=_positive_int, help="only the first N entries of the split")
    ev.add_argument("--workers", type=_positive_int, default=1)
    ev.add_argument("--model", help="flow model for flow-nodur / flow-dur (default: the shipped one)")

    demo = sub.add_parser(
        "demo",
        help="render the bundled example both ways",
        description="Sing the bundled CMU ARCTIC sentence on the bundled tune, then turn that singing back into speech.",
    )
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    return parser


def _cmd_render(args: argparse.Namespace) -> int:
    from voxflip.engine.melody import load_melody
    from voxflip.engine.registry import make_converter

    from .render import DEFAULT_BLOCK_SIZE, print_warnings, render_file

    melody = None
    if args.melody is not None:
        if args.to != "singing":
            raise EngineError("--melody only applies to --to singing")
        melody = load_melody(args.melody, tempo_factor=args.tempo)
    elif args.tempo != 1.0:
        raise EngineError("--tempo scales the melody; it needs --to singing --melody TUNE")
    converter = make_converter(
        args.to,
        args.method,
        melody=melody,
        chunk_ms=args.chunk_ms,
        duration=args.duration,
        transpose_semitones=args.transpose,
        vibrato_cents=args.vibrato_cents,
        portamento_ms=args.portamento_ms,
        model_path=args.model,
    )
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="smp", unit_scale=True, delay=1.0, file=sys.stderr,
                       desc=f"{converter.name}", leave=False, mininterval=0.1 if sys.stderr.isatty() else 10.0)
        bar.update(done - bar.n)

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
        )
    finally:
        if bar is not None:
            bar.close()
    print_warnings(result.warnings)
    print(result.summary())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from importlib.resources import files
    from pathlib import Path

    from voxflip.engine.melody import load_melody
    from voxflip.engine.registry import make_converter

    from .render import print_warnings, render_file

    data = files("voxflip") / "data"
    speech = Path(str(data / "arctic_a0007.wav"))
    tune = Path(str(data / "tune.mid"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sung = out / "arctic_a0007_sung.wav"
    spoken = out / "arctic_a0007_sung_spoken.wav"
    steps = [
        ("speech -> singing", speech, sung, make_converter("singing", "world", melody=load_melody(tune))),
        ("singing -> speech", sung, spoken, make_converter("speech")),   # the default method
    ]
    for label, src, dst, converter in steps:
        result = render_file(src, dst, converter)
        print_warnings(result.warnings)
        print(f"{label}: {result.summary()}")
    print(f"Listen: {speech} (input), {sung} (sung on {tune.name}), {spoken} (sung, then spoken again)")
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    from .live import format_devices, list_devices

    print(format_devices(list_devices()))
    return 0


def _cmd_live(args: argparse.Namespace) -> int:
    from voxflip.engine.converters.world_sts import WorldSTSConfig
    from voxflip.engine.converters.world_sts_live import LiveNotesSTSConverter
    from voxflip.engine.melody import load_melody
    from voxflip.engine.registry import make_converter
    from voxflip.streaming.live import LiveEngine, prefill_blocks_for

    from .live import (
        LIVE_CHUNK_MS,
        build_controller,
        check_block_size,
        run_live_devices,
        run_live_file,
        summary,
    )

    if (args.input_file is None) != (args.output_file is None):
        raise EngineError("--input-file and --output-file go together")
    if args.fast and args.input_file is None:
        raise EngineError("--fast only applies to --input-file")
    flow = args.to == "speech" and (args.method or "").startswith("flow")
    if args.model is not None and not flow:
        raise EngineError("--model applies to --to speech with a flow method (flow, flow-nodur, flow-dur)")
    chunk_ms = args.chunk_ms or LIVE_CHUNK_MS
    # the flow model keeps its own chunk (20 ms) unless told: one 10 ms frame per ONNX call costs more than it saves
    speech = make_converter("speech", args.method if args.to == "speech" else None,
                            chunk_ms=args.chunk_ms if flow else chunk_ms, duration=args.duration,
                            transpose_semitones=args.transpose, model_path=args.model if flow else None)
    if args.melody is not None:
        singing = make_converter("singing", args.method if args.to == "singing" else None, chunk_ms=chunk_ms,
                                 melody=load_melody(args.melody, tempo_factor=args.tempo),
                                 transpose_semitones=args.transpose)
    else:
        if args.tempo != 1.0:
            raise EngineError("--tempo scales a melody file; live notes have their own tempo")
        if args.to == "singing" and args.method not in (None, "world"):
            raise EngineError(f"--method {args.method!r} does not convert to singing; use world")
        singing = LiveNotesSTSConverter(WorldSTSConfig(chunk_ms=chunk_ms, transpose_semitones=args.transpose))
    rate = args.sample_rate
    if rate is None and args.input_file is not None:
        from voxflip.engine.audio_io import probe

        rate = probe(args.input_file).sample_rate
    rate = rate or 48_000
    block = check_block_size(args.block_size)
    controller = build_controller(speech, singing, args.to, rate, args.fx)
    processor = controller.realtime
    chunk_s = max(c.chunk_samples / c.sample_rate for c in (speech, singing))
    prefill = prefill_blocks_for(chunk_s, rate, block, margin_s=args.safety_ms / 1000.0)
    engine = LiveEngine(processor, rate, block, channels_in=args.channels, channels_out=args.channels,
                        on_overload=args.on_overload, prefill_blocks=prefill, apply_param=controller.apply)
    engine.warm_up()
    processor.set_mix(args.mix)
    processor.set_gain_db(args.gain)
    processor.reset_ramps()
    osc = _start_osc(args, engine) if args.osc else None
    try:
        if args.input_file is not None:
            extra = run_live_file(engine, args.input_file, args.output_file, realtime=not args.fast, quiet=args.quiet)
        else:
            extra = run_live_devices(engine, input_device=args.input_device, output_device=args.output_device,
                                     duration_s=args.seconds, quiet=args.quiet)
    finally:
        if osc is not None:
            osc.stop()
        if not args.quiet:
            print(file=sys.stderr)
    print(summary(engine, extra))
    if osc is not None:
        counters = ", ".join(f"{k} {v}" for k, v in osc.counters.items() if v)
        print(f"voxflip live: OSC messages: {counters or 'none'}")
    if args.stats_json:
        import json

        stats = {"sample_rate": rate, "block_size": block, "declared_latency_samples": engine.latency_samples,
                 "processor_latency_samples": processor.latency_samples, "prefill_blocks": engine.prefill_blocks,
                 "xruns": engine.stats.xruns, "input_overruns": engine.stats.input_overruns,
                 "device_flags": engine.stats.device_flags, "worker_errors": engine.stats.worker_errors,
                 "blocks": engine.stats.blocks_out, "osc": dict(osc.counters) if osc is not None else None, **extra}
        with open(args.stats_json, "w") as f:
            json.dump(stats, f, indent=2)
    return 0


def _start_osc(args: argparse.Namespace, engine):
    try:
        from voxflip.osc_control.server import OscServer, parse_bind, parse_cidrs
    except ImportError:
        raise EngineError('OSC control needs python-osc. Install it with: pip install -e ".[osc]"') from None
    bind = f"127.0.0.1:{args.osc}" if args.osc.isdigit() else args.osc  # a bare port stays on loopback
    try:
        host, port = parse_bind(bind)
        allow = parse_cidrs(args.osc_allow) if args.osc_allow else None
        reply = parse_bind(args.osc_reply) if args.osc_reply else None
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
    from voxflip.osc_control.server import is_loopback_host

    if not is_loopback_host(host) and not args.osc_allow:
        print(f"voxflip live: warning: OSC listens on {host}, reachable from other machines; "
              "limit who may send with --osc-allow CIDR", file=sys.stderr)
    if not args.quiet:
        where = f"{server.address[0]}:{server.address[1]}"
        print(f"voxflip live: OSC on {where}" + (f", allowed {args.osc_allow}" if args.osc_allow else ""),
              file=sys.stderr)
    return server


def _cmd_bench(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from voxflip.engine.registry import make_converter

    from .bench import CONVERTERS, FLOW_CONVERTERS, format_table, run_bench

    converters = [c.strip() for c in args.converters.split(",") if c.strip()]
    allowed = CONVERTERS + FLOW_CONVERTERS
    unknown = [c for c in converters if c not in allowed]
    if unknown or not converters:
        raise EngineError(f"--converters {args.converters!r}: unknown {', '.join(unknown) or 'empty'}; "
                          f"allowed: {', '.join(allowed)}")
    if args.chunk_ms is not None and not 1 <= args.chunk_ms <= 500:
        raise EngineError(f"--chunk-ms {args.chunk_ms:g} must be 1..500 ms")
    flows = [c for c in converters if c in FLOW_CONVERTERS]
    if flows:
        make_converter("speech", flows[0], model_path=args.model)     # a missing or bad model fails here, once
    elif args.model is not None:
        raise EngineError("--model applies to the flow converters (flow-nodur, flow-dur)")
    try:
        block_ms = [float(b) for b in args.block_ms.split(",") if b.strip()]
    except ValueError:
        raise EngineError(f"--block-ms {args.block_ms!r} must be comma-separated numbers of ms") from None
    if not block_ms or any(not 1 <= b <= 500 for b in block_ms):
        raise EngineError(f"--block-ms {args.block_ms!r}: each block must be 1..500 ms")

    def progress(r) -> None:
        print(f"bench: {r.converter} at {r.block_ms:g} ms: RTF p50 {r.rtf_p50:.2f}", file=sys.stderr)

    results = run_bench(converters, block_ms, args.rate, args.seconds, progress=progress, chunk_ms=args.chunk_ms,
                        model=args.model)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(format_table(results))
    return 0


class _Bar:
    """A tqdm bar on stderr that appears only for work longer than a second."""

    def __init__(self, desc: str, unit: str = "it") -> None:
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, done: float, total: float) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, delay=1.0, file=sys.stderr, leave=False,
                            mininterval=0.1 if sys.stderr.isatty() else 10.0)  # a log file gets a line per 10 s
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _cmd_corpus(args: argparse.Namespace) -> int:
    action = args.corpus_command
    if action is None:
        raise EngineError("voxflip corpus needs an action: import, check, synth or features")
    if action == "import":
        from voxflip.trainer.data.corpora import load_corpus
        from voxflip.trainer.data.manifest import write_manifest

        entries = load_corpus(args.kind, args.root, split_seed=args.seed)
        path = write_manifest(args.output, entries)
        splits = {s: sum(e.split == s for e in entries) for s in ("train", "valid", "test")}
        print(f"{args.kind}: {len(entries)} entries ({', '.join(f'{k} {v}' for k, v in splits.items())}) -> {path}")
        return 0
    if action == "check":
        from voxflip.trainer.data.check import check_manifest

        bar = _Bar("checking", "clip")
        try:
            report = check_manifest(args.manifest, max_duration_ratio=args.max_duration_ratio,
                                    workers=args.workers, progress=bar)
        finally:
            bar.close()
        print(report.format())
        return 0
    if action == "synth":
        from voxflip.trainer.data.synth import make_synthetic_corpus

        bar = _Bar("synthesising", "s")
        try:
            manifest = make_synthetic_corpus(args.out, args.minutes, seed=args.seed, workers=args.workers,
                                             progress=bar)
        finally:
            bar.close()
        print(f"synthetic corpus: {manifest}")
        return 0
    if action == "features":
        from voxflip.trainer.data.features import FeatureConfig, compute_features

        bar = _Bar("features", "clip")
        try:
            report = compute_features(args.manifest, config=FeatureConfig.preset(args.preset),
                                      cache_dir=args.cache_dir, workers=args.workers, progress=bar)
        finally:
            bar.close()
        print(f"features ({args.preset}): {report.computed} computed, {report.cached} cached, "
              f"{len(report.failed)} failed -> {report.folder}")
        for entry_id, problem in list(report.failed.items())[:10]:
            print(f"  {entry_id}: {problem}", file=sys.stderr)
        return 0
    raise EngineError(f"unknown corpus action {action!r}")


def _cmd_train(args: argparse.Namespace) -> int:
    import logging

    try:
        from voxflip.trainer.config import load_config
        from voxflip.trainer.train import train
    except ImportError as exc:
        raise EngineError(f'training needs torch (pinned): pip install -e ".[train]" ({exc})') from None
    logging.basicConfig(level=logging.INFO, format="voxflip train: %(message)s")
    config = load_config(args.config, args.set)
    checkpoint = train(config, args.run_dir, resume=not args.no_resume, stop_after=args.steps)
    print(f"checkpoint: {checkpoint}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    try:
        from voxflip.trainer.export import export_onnx
        from voxflip.trainer.train import load_checkpoint
    except ImportError as exc:
        raise EngineError(f'export needs torch and onnx: pip install -e ".[train]" ({exc})') from None
    from pathlib import Path

    if not Path(args.checkpoint).is_file():
        raise EngineError(f"checkpoint {args.checkpoint!r} does not exist")
    if args.noise_scale is not None and args.noise_scale < 0:
        raise ConfigError(f"--noise-scale {args.noise_scale!r} must be 0 or more")
    model, _ = load_checkpoint(args.checkpoint)
    if args.noise_scale is not None:
        from dataclasses import replace

        model.cfg = replace(model.cfg, noise_scale=args.noise_scale)
    manifest = export_onnx(model, args.output, chunk_frames=args.chunk_frames)
    print(f"exported: {args.output} (+ decoder, manifest {manifest})")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from voxflip.trainer.eval.runner import evaluate

    systems = [s.strip() for s in args.system.split(",") if s.strip()]
    bar = _Bar("evaluating", "clip")
    try:
        result = evaluate(systems, args.manifest, args.out, split=args.split, limit=args.limit,
                          workers=args.workers, model=args.model, progress=bar)
    finally:
        bar.close()
    print(result.markdown())
    for system, failed in result.failures.items():
        for entry_id, why in list(failed.items())[:3]:
            print(f"voxflip eval: {system} / {entry_id}: {why}", file=sys.stderr)
    print(f"report: {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command == "render":
            return _cmd_render(args)
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "devices":
            return _cmd_devices(args)
        if args.command == "live":
            return _cmd_live(args)
        if args.command == "bench":
            return _cmd_bench(args)
        if args.command == "corpus":
            return _cmd_corpus(args)
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "eval":
            return _cmd_eval(args)
        if args.command == "export":
            return _cmd_export(args)
        parser.error(f"unknown command {args.command!r}")
    except EngineError as exc:
        if args.debug:
            traceback.print_exc()
        message = str(exc).replace("\n", " ")
        print(f"voxflip: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("voxflip: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

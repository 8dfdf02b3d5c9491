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

from . import __version__
from .engine.errors import EngineError


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
    render.add_argument("--method", help="world-nodur (default) or world-dur for --to speech; world for --to singing")
    render.add_argument("--melody", help="tune for --to singing: .mid, .musicxml/.xml/.mxl, or a .csv/.json note list")
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
    render.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    demo = sub.add_parser(
        "demo",
        help="render the bundled example both ways",
        description="Sing the bundled CMU ARCTIC sentence on the bundled tune, then turn that singing back into speech.",
    )
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    return parser


def _cmd_render(args: argparse.Namespace) -> int:
    from .engine.melody import load_melody
    from .engine.registry import make_converter
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
    )
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="smp", unit_scale=True, delay=1.0, file=sys.stderr,
                       desc=f"{converter.name}", leave=False)
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

    from .engine.melody import load_melody
    from .engine.registry import make_converter
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
        ("singing -> speech", sung, spoken, make_converter("speech", "world-dur")),
    ]
    for label, src, dst, converter in steps:
        result = render_file(src, dst, converter)
        print_warnings(result.warnings)
        print(f"{label}: {result.summary()}")
    print(f"Listen: {speech} (input), {sung} (sung on {tune.name}), {spoken} (sung, then spoken again)")
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

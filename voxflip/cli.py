"""The ``voxflip`` command line: its parser, and the reporting of errors.

``main(argv)`` returns the exit status: 0 on success, 2 for a user error (one line on
stderr; ``--debug`` adds the traceback), ``128 + N`` when signal N stops it: 130 on Ctrl-C
(SIGINT), 143 on SIGTERM, 129 on SIGHUP. Each of these three signals raises
:class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread, so every ``with`` and
``finally`` on the way out runs: an output file being written is removed, never left
half-written or as a hidden temporary file. The commands themselves are in
:mod:`voxflip.cli_convert` (render, demo, live, devices, bench) and :mod:`voxflip.cli_train`
(corpus, train, export, eval). Converter names and their options come from the registry
(:mod:`voxflip.engine.registry`); its errors name options as the Python API does
(``chunk_ms``), and :func:`main` rewords them with the flags (``--chunk-ms``).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from types import FrameType, ModuleType

from voxflip.engine.errors import EngineError, OptionError

from . import __version__

#: converter option (the registry's name) -> the flag that sets it
FLAG_OF_OPTION: dict[str, str] = {
    "to": "--to",
    "method": "--method",
    "chunk_ms": "--chunk-ms",
    "transpose_semitones": "--transpose",
    "duration": "--duration",
    "model_path": "--model",
    "melody": "--melody",
    "tempo": "--tempo",
    "vibrato_cents": "--vibrato-cents",
    "portamento_ms": "--portamento-ms",
    "max_output_s": "--max-output-s",
    "melody_pitch": "--melody-pitch",
    "melody_octave": "--melody-octave",
    "singers_formant_db": "--singers-formant-db",
    "brightness_db": "--brightness-db",
    "voice_floor_hz": "--voice-floor",
    "vocoder": "--vocoder",
    "seed": "--seed",
    "content_model": "--content-model",
    "pace": "--pace",
    "live_notes": "live notes (no --melody)",
}


_SINGERS_FORMANT_HELP = ("--to singing (world, psola, psola-stream): a peak at 3 kHz, the singer's formant, "
                         "-12..12 dB (default 0: dev-data's singers show none; docs/converters.md)")
_BRIGHTNESS_HELP = ("--to singing (world, psola, psola-stream): a shelf above 4 kHz, -12..12 dB (default 0: "
                    "dev-data's singers are darker than psola's songs, yet darkening moves them no nearer; "
                    "docs/converters.md)")

_VOICE_FLOOR_HELP = ("the lowest F0 of the voice, 71..400 Hz, for the converters on the WORLD analysis: its windows "
                     "and the latency are sized for it (default: voices down to 60 Hz; 100 with --chunk-ms 5: "
                     "25 ms live at 48 kHz, docs/live.md). Frames well below it are analysed as unvoiced")


_PACE_HELP = ("alignsts-stream: seconds of speech per second of song, 0.1..2 (default 0.63, dev-data's readings "
              "against their singing): where in the speech the song looks for what to sing at each moment")


_MELODY_PITCH_HELP = ("with a sung recording as --melody: 'sung' (its default) sings the pitch the singer sang, their "
                      "tuning, vibrato and glides included; 'notes' its transcribed notes at their steady pitch with "
                      "voxflip's vibrato, as a score would give them (a score's default)")


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


def _registry() -> ModuleType:
    from voxflip.engine import registry

    return registry


def _directions() -> list[str]:
    return [d.value for d in _registry().Direction]


def _method_help() -> str:
    registry = _registry()
    return "; ".join(f"--to {d.value}: {registry.describe(d)}" for d in registry.Direction)


def _option_methods(option: str) -> str:
    """The converters that take ``option``, for help texts."""
    return ", ".join(s.name for s in _registry().converters() if option in s.option_names)


def _chunk_help(live: bool) -> str:
    grids: dict[tuple[float, float], list[str]] = {}
    for spec in _registry().converters():
        ms = spec.grid.live_ms if live else spec.grid.default_frames * spec.grid.hop_ms
        grids.setdefault((ms, spec.grid.hop_ms), []).append(spec.name)
    return "; ".join(f"{ms:g} ms for {', '.join(n)} (hop {hop:g} ms)" for (ms, hop), n in grids.items())


_VOCODER_HELP = ("the vocoder of the mel-based converters (flow-*): dsp (default), hifigan, pwg or hn (the "
                 "shipped neural ones, where shipped), or the folder of one exported by voxflip export-vocoder")


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
        description="Convert an audio file: singing -> speech (--to speech) or speech -> singing (--to singing --melody TUNE). "
                    "With --manifest or --input-dir (and --out), convert a whole corpus on every core (or on Ray): "
                    "DIR/<id>.wav per file and DIR/render.jsonl; a second run skips what is done and unchanged.",
    )
    render.add_argument("input", nargs="?", help="audio file: wav, flac, mp3, ogg or aiff, 8-192 kHz, any channel count")
    render.add_argument("-o", "--output", help="output file; the extension picks the format")
    render.add_argument("--manifest", metavar="M", help="render every entry of this manifest (.jsonl, docs/data.md): "
                        "its singing for --to speech, its speech for --to singing (on --melody, else the entry's notes)")
    render.add_argument("--input-dir", metavar="D", help="render every audio file under this folder (recursive)")
    render.add_argument("--out", metavar="DIR", help="with --manifest/--input-dir: output folder (DIR/<id>.wav, "
                        "or the input's relative path with .wav; DIR/render.jsonl records what was made)")
    render.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                        help=f"processes (default: every core, {os.cpu_count() or 1} here): with --manifest/--input-dir, "
                             "files in parallel; for one file of 20 s or more, its analysis shared between them "
                             "(WORLD and PSOLA converters; the same output)")
    render.add_argument("--ray", metavar="ADDRESS", help="with --manifest/--input-dir: run the files as tasks on a Ray "
                        "cluster at ADDRESS (ray.init(address=...)); 'local' starts a local instance with --workers CPUs")
    render.add_argument("--to", required=True, choices=_directions(), help="target: speech or singing")
    render.add_argument("--method", help=_method_help())
    render.add_argument("--melody", help="tune for --to singing: .mid, .musicxml/.xml/.mxl, a .csv/.json note list, "
                        "or a sung or hummed recording (.wav/.flac/...: its notes are transcribed)")
    render.add_argument("--melody-pitch", metavar="notes|sung", help=_MELODY_PITCH_HELP)
    render.add_argument("--melody-octave", metavar="auto|keep",
                        help="psola: 'auto' (default) sings a melody lying more than 14 semitones above the speaker's "
                             "voice as many octaves lower as it takes; 'keep' sings it as written")
    render.add_argument("--model", help=f"a model for {_option_methods('model_path')}: for flow-*, the model.onnx "
                                        "of voxflip export; for alignsts, the folder of voxflip export-alignsts "
                                        "(default: the shipped one)")
    render.add_argument("--seed", type=int, metavar="N",
                        help=f"the noise of {_option_methods('seed')}'s diffusion decoder, a whole number >= 0 (default 0)")
    render.add_argument("--vocoder", metavar="NAME|DIR", help=_VOCODER_HELP)
    render.add_argument("--content-model", metavar="DIR",
                        help=f"{_option_methods('content_model')}: read the speech with the causal content student of "
                             "voxflip export-content instead of Whisper's encoder (no whisper extra needed)")
    render.add_argument("--pace", type=_finite_float, metavar="RATE", help=_PACE_HELP)
    render.add_argument("--transpose", type=_finite_float, metavar="SEMITONES",
                        help="shift the melody (singing) or the speaking pitch (speech) by semitones (default 0)")
    render.add_argument("--tempo", type=_finite_float, metavar="FACTOR",
                        help="play the melody FACTOR times faster, 0.1..10 (2 = twice as fast; default 1)")
    render.add_argument("--duration", type=_finite_float, metavar="AMOUNT",
                        help=f"how far {_option_methods('duration')} shortens sustained vowels, 0..1 (default 1)")
    render.add_argument("--vibrato-cents", type=_finite_float, metavar="CENTS", help="singing vibrato depth (default 24)")
    render.add_argument("--portamento-ms", type=_finite_float, metavar="MS", help="singing glide between legato notes (default 30)")
    render.add_argument("--singers-formant-db", type=_finite_float, metavar="DB", help=_SINGERS_FORMANT_HELP)
    render.add_argument("--brightness-db", type=_finite_float, metavar="DB", help=_BRIGHTNESS_HELP)
    render.add_argument("--chunk-ms", type=_finite_float, metavar="MS",
                        help=f"processing chunk, a multiple of the converter's hop ({_chunk_help(live=False)})")
    render.add_argument("--voice-floor", type=_finite_float, metavar="HZ", help=_VOICE_FLOOR_HELP)
    render.add_argument("--block-size", type=_positive_int, default=None, metavar="N",
                        help="read and stream the input in blocks of N samples (default 65536); the output does not depend on it")
    render.add_argument("--sample-rate", type=_positive_int, metavar="HZ", help="output sample rate (default: the input's)")
    render.add_argument("--gain", type=_finite_float, default=0.0, metavar="DB", help="output gain in dB (default 0)")
    render.add_argument("--fx", metavar="PRESET",
                        help="effect preset JSON: pre-effects before the converter, post-effects after (see docs/effects.md)")
    render.add_argument("--max-output-s", type=_finite_float, metavar="S",
                        help="--to singing: the longest output a melody may ask for, in seconds (default 3600); "
                             "a longer melody is refused before anything is allocated")
    render.add_argument("--allow-plugins", action="store_true",
                        help="let the --fx preset load VST3/AU plugin files (a plugin is code: see docs/security.md)")
    render.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    devices = sub.add_parser("devices", help="list audio devices", description="List the audio devices PortAudio sees.")
    devices.set_defaults()

    live = sub.add_parser(
        "live",
        help="convert live, from a microphone or a file played in real time",
        description="Convert live: a microphone to the speakers (full duplex through PortAudio), or a file played in "
                    "real time into another file (--input-file/--output-file). Ctrl-C stops and prints a summary.",
    )
    live.add_argument("--to", required=True, choices=_directions(), help="target: speech or singing")
    live.add_argument("--method", help=_method_help())
    live.add_argument("--model", help=f"a model exported by voxflip export (model.onnx) for "
                                      f"{_option_methods('model_path')} (default: the shipped one)")
    live.add_argument("--vocoder", metavar="NAME|DIR", help=_VOCODER_HELP)
    live.add_argument("--content-model", metavar="DIR",
                      help=f"{_option_methods('content_model')}: the causal content student of voxflip export-content "
                           "that reads the speech")
    live.add_argument("--pace", type=_finite_float, metavar="RATE", help=_PACE_HELP)
    live.add_argument("--seed", type=int, metavar="N",
                      help=f"the noise of {_option_methods('seed')}'s diffusion decoder (default 0)")
    live.add_argument("--melody", help="tune for singing (it plays from the start of the stream); without one, "
                                       "singing follows live notes (OSC /voxflip/note)")
    live.add_argument("--melody-pitch", metavar="notes|sung", help=_MELODY_PITCH_HELP)
    live.add_argument("--transpose", type=_finite_float, metavar="SEMITONES", help="as for render (default 0)")
    live.add_argument("--tempo", type=_finite_float, metavar="FACTOR", help="play --melody FACTOR times faster, 0.1..10 (default 1)")
    live.add_argument("--duration", type=_finite_float, metavar="AMOUNT",
                      help=f"{_option_methods('duration')}: vowel shortening 0..1")
    live.add_argument("--chunk-ms", type=_finite_float, default=None, metavar="MS",
                      help=f"converter chunk, a multiple of its hop (live defaults: {_chunk_help(live=True)}; "
                           "shorter: less latency, more per-call overhead)")
    live.add_argument("--voice-floor", type=_finite_float, metavar="HZ", help=_VOICE_FLOOR_HELP)
    live.add_argument("--singers-formant-db", type=_finite_float, metavar="DB", help=_SINGERS_FORMANT_HELP)
    live.add_argument("--brightness-db", type=_finite_float, metavar="DB", help=_BRIGHTNESS_HELP)
    live.add_argument("--input-device", type=int, metavar="ID", help="input device id (see voxflip devices)")
    live.add_argument("--output-device", type=int, metavar="ID", help="output device id (see voxflip devices)")
    live.add_argument("--sample-rate", type=_positive_int, metavar="HZ", help="device rate (default: 48000, or the input file's)")
    live.add_argument("--block-size", type=_positive_int, default=256, metavar="N", help="frames per device callback (default 256)")
    live.add_argument("--channels", type=_positive_int, default=1, metavar="N", help="device channels (default 1)")
    live.add_argument("--fx", metavar="PRESET", help="effect preset JSON (pre- and post-effects around the converter)")
    live.add_argument("--allow-plugins", action="store_true",
                      help="let presets load VST3/AU plugin files (a plugin is code: see docs/security.md)")
    live.add_argument("--max-output-s", type=_finite_float, metavar="S",
                      help="the longest tune --melody may ask for, in seconds (default 3600)")
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
    bench.add_argument("--converters", default=None,
                       help=f"comma-separated, of: {', '.join(_registry().names(aliases=False))} "
                            "(default: every one whose dependencies are installed)")
    bench.add_argument("--block-ms", default="10,20,40", help="comma-separated device block sizes in ms")
    bench.add_argument("--chunk-ms", type=_finite_float, default=None,
                       help=f"converter chunk in ms (default: what voxflip live uses: {_chunk_help(live=True)})")
    bench.add_argument("--model", default=None,
                       help=f"model for {_option_methods('model_path')} (default: the shipped one)")
    bench.add_argument("--vocoder", metavar="NAME|DIR", help=_VOCODER_HELP + " (the live benchmark)")
    bench.add_argument("--content-model", metavar="DIR",
                       help=f"{_option_methods('content_model')}: the content student to read the speech with")
    bench.add_argument("--cores", type=_positive_int, default=1, metavar="N",
                       help="with --offline: render the long file on N cores (default 1; the baseline stays on one)")
    bench.add_argument("--voice-floor", type=_finite_float, metavar="HZ",
                       help="the live benchmark with --voice-floor HZ for the converters on the WORLD analysis")
    bench.add_argument("--rate", type=_positive_int, default=48_000, help="device sample rate (default 48000)")
    bench.add_argument("--seconds", type=_finite_float, default=None,
                       help="audio per configuration (default 20 s; with --offline 60 s, the length of the one long file)")
    bench.add_argument("--offline", action="store_true",
                       help="offline rendering instead: times real time per converter for one long 48 kHz file "
                            "(--rate), against a naive pyworld analysis-resynthesis of the same file")
    bench.add_argument("--corpus", action="store_true",
                       help="with --offline: corpus rendering of --files files (--seconds in all) with 1 and 2 workers")
    bench.add_argument("--files", type=_positive_int, default=8, metavar="N", help="with --corpus: files (default 8)")

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
    c_feat.add_argument("--preset", default="to_speech", choices=["to_speech", "to_singing", "s2s", "sts"],
                        help="frame setup of the model it feeds: to_speech (16 kHz, the default) or to_singing "
                             "(24 kHz); s2s and sts are their older names")
    c_feat.add_argument("--cache-dir", help="default: features/ next to the manifest")
    c_feat.add_argument("--workers", type=_positive_int, default=1)

    for name, help_text, description, config_help in (
        ("train", "train the S2S flow model (docs/models.md)",
         "Train from a TOML config; resumes from the run folder's last checkpoint.",
         "TOML config (configs/tiny.toml runs in a minute)"),
        ("train-vocoder", "train a neural vocoder, HiFi-GAN or Parallel WaveGAN (docs/models.md)",
         "Train a vocoder from a TOML config (configs/vocoder_*.toml); resumes from the run folder's last checkpoint.",
         "TOML config (configs/vocoder_tiny.toml runs in seconds)"),
        ("train-content", "distil Whisper's encoder into a causal content student (docs/models.md)",
         "Train a causal content student from a TOML config (configs/content_student*.toml); resumes from the run "
         "folder's last checkpoint. The teacher's states are Whisper encoder states (needs the whisper extra).",
         "TOML config (configs/content_student_tiny.toml runs in seconds)"),
        ("train-alignsts", "train the AlignSTS speech -> singing model (docs/models.md)",
         "Train AlignSTS from a TOML config (configs/alignsts*.toml); resumes from the run folder's last "
         "checkpoint. Content features are Whisper encoder states (needs the eval extra).",
         "TOML config (configs/alignsts_tiny.toml runs in seconds)"),
    ):
        trainer = sub.add_parser(name, help=help_text, description=description)
        trainer.add_argument("config", help=config_help)
        trainer.add_argument("--run-dir", required=True, help="checkpoints, TensorBoard curves and config.toml go here")
        trainer.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                             help="override a config value")
        trainer.add_argument("--no-resume", action="store_true",
                             help="start over even if the run folder has checkpoints")
        trainer.add_argument("--steps", type=_positive_int,
                             help="stop after this many more steps (the config's max_steps still caps)")
    export_sts = sub.add_parser("export-alignsts", help="export an AlignSTS checkpoint to an ONNX graph",
                                description="Write alignsts.onnx and alignsts.manifest.json from a train-alignsts "
                                            "checkpoint (ONNX Runtime is checked against torch before the manifest "
                                            "is written).")
    export_sts.add_argument("checkpoint")
    export_sts.add_argument("-o", "--output", required=True, help="the .onnx path")
    export_content = sub.add_parser("export-content", help="export a content student to ONNX graphs",
                                    description="Write content.onnx (a streaming graph) and content.manifest.json from "
                                                "a train-content checkpoint (ONNX Runtime is checked against torch, "
                                                "whole and streamed, before the manifest is written).")
    export_content.add_argument("checkpoint")
    export_content.add_argument("-o", "--output", required=True,
                                help="the .onnx path (its folder is what --content-model takes)")
    export_voc = sub.add_parser("export-vocoder", help="export a vocoder checkpoint to a streaming ONNX graph",
                                description="Write vocoder.onnx and vocoder.manifest.json from a train-vocoder checkpoint "
                                            "(streamed parity with torch is checked before the manifest is written).")
    export_voc.add_argument("checkpoint")
    export_voc.add_argument("-o", "--output", required=True, help="the .onnx path (its folder is what --vocoder takes)")
    ev_voc = sub.add_parser("eval-vocoder", help="copy synthesis of real recordings through vocoders (docs/results.md)",
                            description="Analyse each recording of a manifest as the flow converters do and "
                                        "synthesise it again with each vocoder; score Whisper CER, LSD, F0 RMSE, "
                                        "DNSMOS and speaker similarity against the recording.")
    ev_voc.add_argument("--manifest", required=True, help="a manifest of real recordings (e.g. ../shared/dev-data)")
    ev_voc.add_argument("--vocoder", action="append", default=[], metavar="NAME[=DIR]",
                        help="clip, pyworld, dsp, dsp-flow (the DSP vocoder on the flow model's mel window), "
                             "hifigan, pwg, hn (shipped) or NAME=DIR (an export); repeat "
                             "(default: clip, pyworld, dsp and the shipped neural ones)")
    ev_voc.add_argument("--out", required=True, help="report .json (a .md table beside it; clips in <out>_clips/)")
    ev_voc.add_argument("--sides", default="speech,singing", help="speech, singing or both (default)")
    ev_voc.add_argument("--workers", type=_positive_int, default=1)
    ev_voc.add_argument("--limit", type=_positive_int, help="only the first N entries")
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
    ev.add_argument("--system", required=True,
                    help=f"comma-separated, of one direction: converters ({', '.join(_registry().names())}), "
                         "references and baselines (input, real, ...); 'list' prints them all")
    ev.add_argument("--manifest", help="the manifest (.jsonl) whose clips are converted and scored")
    ev.add_argument("--split", default="auto",
                    help="train, valid, test, all, or auto (the default: test where the manifest has a test split, "
                         "else all)")
    ev.add_argument("--plots", metavar="DIR", help="also draw a figure per clip (spectrograms, F0, notes) and a "
                                                   "chart per table into DIR")
    ev.add_argument("--listen", metavar="DIR", help="also write a listening page (DIR/index.html): input, outputs "
                                                    "and reference of each clip side by side")
    ev.add_argument("--asr", default="whisper-base",
                    help="the recogniser: whisper-base (the default: multilingual, reads singing), whisper-tiny-en, "
                         "pocketsphinx (English; cannot read real singing), a CTranslate2 Whisper model folder, "
                         "or a model name where a hub is reachable")
    ev.add_argument("--asr-draws", type=_positive_int, default=1, metavar="N",
                    help="readings per clip: CER and WER are the mean over the clip and N-1 copies dithered "
                         "96 dB down (a recogniser can read one clip two ways; default 1, at most 16)")
    ev.add_argument("--out", default="eval/report.md", help="report path (.md; a .json and a _clips folder go next to it)")
    ev.add_argument("--limit", type=_positive_int, help="only the first N entries of the split")
    ev.add_argument("--workers", type=_positive_int, default=1)
    ev.add_argument("--model", help=f"model for {_option_methods('model_path')} (default: the shipped one)")
    ev.add_argument("--vocoder", action="append", default=[], metavar="NAME=DIR",
                    help="the exported vocoder the systems NAME:flow-* use (hifigan, pwg or hn; default: the shipped one)")
    ev.add_argument("--alignsts", action="append", default=[], metavar="NAME=MODEL",
                    help="the model of the system NAME (alignsts, alignsts-gan, alignsts-zeroshot, and the paper's "
                         "baselines parekh, speechsplit2, speechsplit2-se; ref:NAME uses the same): an export of voxflip export-alignsts, or a train-alignsts checkpoint (.pt, exported on "
                         "first use); alignsts defaults to the shipped one. Use one --out per model, as converted "
                         "clips are cached")
    ev.add_argument("--content-model", metavar="DIR",
                    help="the causal content student (an export of voxflip export-content) that the systems "
                         "student:alignsts and ref:student:alignsts read the speech with")

    demo = sub.add_parser(
        "demo",
        help="render the bundled example both ways",
        description="Sing the bundled CMU ARCTIC sentence on the bundled tune, then turn that singing back into speech.",
    )
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")

    from .cli_trt import add_arguments as add_build_trt_arguments

    build_trt = sub.add_parser("build-trt", help="TensorRT engines for an exported model (docs/gpu.md)",
                               description="Sanitise an exported model's graphs and build cached TensorRT engines "
                                           "with shape profiles for the chunks it streams.")
    add_build_trt_arguments(build_trt)
    return parser


#: command -> (module of voxflip, function) that runs it
COMMANDS: dict[str, tuple[str, str]] = {
    "render": ("cli_convert", "cmd_render"),
    "demo": ("cli_convert", "cmd_demo"),
    "devices": ("cli_convert", "cmd_devices"),
    "live": ("cli_convert", "cmd_live"),
    "bench": ("cli_convert", "cmd_bench"),
    "corpus": ("cli_train", "cmd_corpus"),
    "train": ("cli_train", "cmd_train"),
    "export": ("cli_train", "cmd_export"),
    "train-vocoder": ("cli_train", "cmd_train_vocoder"),
    "train-alignsts": ("cli_train", "cmd_train_alignsts"),
    "train-content": ("cli_train", "cmd_train_content"),
    "export-content": ("cli_train", "cmd_export_content"),
    "export-alignsts": ("cli_train", "cmd_export_alignsts"),
    "eval-vocoder": ("cli_train", "cmd_eval_vocoder"),
    "export-vocoder": ("cli_train", "cmd_export_vocoder"),
    "eval": ("cli_train", "cmd_eval"),
    "build-trt": ("cli_trt", "cmd_build_trt"),
}


def error_message(exc: EngineError) -> str:
    """The one line a user reads for an error: options spelled as the flags they typed."""
    if isinstance(exc, OptionError):
        message = exc.worded(lambda name: FLAG_OF_OPTION.get(name, name))
    else:
        message = str(exc)
    notes = [str(note) for note in getattr(exc, "__notes__", ())]   # added on the way out ("... was not written")
    return "; ".join([message, *notes]).replace("\n", " ")


#: the signals that stop a command cleanly (as Ctrl-C does), where the platform has them
STOP_SIGNALS: tuple[str, ...] = ("SIGINT", "SIGTERM", "SIGHUP")


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) arrived; raised in the main thread by :func:`main`.

    It is a ``KeyboardInterrupt``, so code that cleans up after Ctrl-C cleans up after
    SIGTERM and SIGHUP too, and ``main`` returns ``128 + signum``.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal_name(signum))


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[list[int]]:
    """While inside, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread.

    Only the first signal raises; later ones are noted (in the list yielded) and ignored while
    the command cleans up, except that a third one ends the process at once. A signal that
    is ignored when this starts (``nohup``, a background job's SIGINT) stays ignored, and a
    forked worker process that inherited the handler dies of the signal as it would by default.
    The previous handlers are back on exit. Outside the main thread this does nothing.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    pid = os.getpid()
    done = False

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != pid:   # a forked child (multiprocessing, DataLoader): behave as by default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        received.append(signum)
        if len(received) >= 3:   # cleaning up is stuck and the user insists
            os._exit(128 + received[0])
        if len(received) == 1 and not done:
            raise Interrupted(signum)

    previous: dict[int, object] = {}
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None or signal.getsignal(signum) == signal.SIG_IGN:
            continue
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, handler)
    try:
        yield received
    finally:
        done = True
        for signum, old in previous.items():
            signal.signal(signum, old)


def _never_fail_printing() -> None:
    """Print what cannot be encoded (a file name that is not UTF-8) escaped, instead of failing."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _os_error_message(exc: OSError) -> str:
    where = f"{exc.filename!r}: " if exc.filename is not None else ""
    return f"{where}{' '.join((exc.strerror or str(exc)).split())}"


def main(argv: Sequence[str] | None = None) -> int:
    import importlib

    _never_fail_printing()
    with stop_signals_raise():
        parser = get_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        module, function = COMMANDS[args.command]
        from voxflip.streaming.heap import keep_freed_memory

        keep_freed_memory()   # every command works in blocks: their temporaries stay mapped
        try:
            return getattr(importlib.import_module(f"voxflip.{module}"), function)(args)
        except EngineError as exc:
            if args.debug:
                traceback.print_exc()
            print(f"voxflip: error: {error_message(exc)}", file=sys.stderr)
            return 2
        except OSError as exc:   # one not wrapped where it happened (a --stats-json path, ...)
            if args.debug:
                traceback.print_exc()
            print(f"voxflip: error: {_os_error_message(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            if args.debug:
                traceback.print_exc()
            signum = getattr(exc, "signum", signal.SIGINT)
            notes = "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
            print(f"voxflip: interrupted by {signal_name(signum)}{notes}", file=sys.stderr)
            return 128 + signum


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

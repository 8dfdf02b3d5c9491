"""``voxflip corpus``, ``train``, ``export`` and ``eval``: the commands that make and judge models.

Each ``cmd_*`` takes the parsed arguments of :func:`voxflip.cli.get_parser` and returns the
exit status; errors are raised as :class:`~voxflip.engine.errors.EngineError` and reported by
:func:`voxflip.cli.main`.
"""

from __future__ import annotations

import argparse
import os
import sys

from voxflip.engine.errors import ConfigError, EngineError, MissingDependencyError, install_hint


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


def cmd_corpus(args: argparse.Namespace) -> int:
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


def _run_training(args: argparse.Namespace, command: str, load: str, run: str) -> int:
    """``voxflip train`` / ``train-vocoder``: ``load`` and ``run`` ("module:function" in voxflip.trainer) read
    the config with its overrides and train (resumed unless ``--no-resume``); the checkpoint line is printed
    by rank 0 only under torchrun (only it writes checkpoints)."""
    import importlib
    import logging

    def resolve(name: str):
        module, _, function = name.partition(":")
        return getattr(importlib.import_module(f"voxflip.trainer.{module}"), function)

    try:
        load_config, train = resolve(load), resolve(run)
    except ImportError as exc:
        raise MissingDependencyError(f"training needs torch (pinned): {install_hint('train')} ({exc})") from None
    logging.basicConfig(level=logging.INFO, format=f"voxflip {command}: %(message)s")
    from voxflip.trainer.train import leave_process_group

    config = load_config(args.config, args.set)
    try:
        checkpoint = train(config, args.run_dir, resume=not args.no_resume, stop_after=args.steps)
    finally:
        leave_process_group()
    if os.environ.get("RANK", "0") == "0":
        print(f"checkpoint: {checkpoint}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    return _run_training(args, "train", "config:load_config", "train:train")


def cmd_export(args: argparse.Namespace) -> int:
    try:
        from voxflip.trainer.export import export_onnx
        from voxflip.trainer.train import load_checkpoint
    except ImportError as exc:
        raise MissingDependencyError(f"export needs torch and onnx: {install_hint('train')} ({exc})") from None
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


def cmd_train_vocoder(args: argparse.Namespace) -> int:
    return _run_training(args, "train-vocoder", "vocoder_train:load_vocoder_config", "vocoder_train:train_vocoder")


def cmd_train_alignsts(args: argparse.Namespace) -> int:
    return _run_training(args, "train-alignsts", "alignsts_train:load_alignsts_config", "alignsts_train:train_alignsts")


def cmd_train_content(args: argparse.Namespace) -> int:
    return _run_training(args, "train-content", "content_train:load_content_config", "content_train:train_content")


def _export(args: argparse.Namespace, target: str):
    """Run the exporter ``target`` ("module:function" in voxflip.trainer) on ``args.checkpoint`` -> ``args.output``."""
    import importlib
    from pathlib import Path

    module, _, function = target.partition(":")
    try:
        exporter = getattr(importlib.import_module(f"voxflip.trainer.{module}"), function)
    except ImportError as exc:
        raise MissingDependencyError(f"export needs torch and onnx: {install_hint('train')} ({exc})") from None
    if not Path(args.checkpoint).is_file():
        raise EngineError(f"checkpoint {args.checkpoint!r} does not exist")
    return exporter(args.checkpoint, args.output)


def cmd_export_alignsts(args: argparse.Namespace) -> int:
    import json

    manifest = _export(args, "alignsts_export:export_alignsts")
    step = json.loads(manifest.read_text()).get("step")
    graphs = (f"; step graphs {', '.join(step['files'].values())} for alignsts-stream ({step['delay']} frames behind)"
              if step else "")
    print(f"exported: {args.output} (manifest {manifest}){graphs}")
    return 0


def cmd_export_content(args: argparse.Namespace) -> int:
    from pathlib import Path

    manifest = _export(args, "content_export:export_content")
    print(f"exported: {args.output} (manifest {manifest}); use it with --content-model {Path(args.output).parent}")
    return 0


def cmd_export_vocoder(args: argparse.Namespace) -> int:
    from pathlib import Path

    manifest = _export(args, "vocoder_export:export_vocoder")
    print(f"exported: {args.output} (manifest {manifest}); use it with --vocoder {Path(args.output).parent}")
    return 0


def cmd_eval_vocoder(args: argparse.Namespace) -> int:
    from pathlib import Path

    from voxflip.engine.registry import resolve_vocoder, shipped_vocoder
    from voxflip.engine.vocoder.neural import NEURAL_KINDS
    from voxflip.trainer.eval.copy_synthesis import REFERENCES, SIDES, evaluate_vocoders

    from .cli_convert import ProgressBar

    sides = tuple(s.strip() for s in args.sides.split(",") if s.strip())
    if not sides or any(s not in SIDES for s in sides):
        raise ConfigError(f"--sides {args.sides!r} must name speech, singing or both, comma-separated")
    specs = args.vocoder or [*REFERENCES, *(n for n in NEURAL_KINDS if shipped_vocoder(n).is_dir())]
    vocoders: dict[str, str | None] = {}
    for spec in specs:
        name, _, folder = spec.partition("=")
        if folder:
            if not Path(folder).exists():
                raise ConfigError(f"--vocoder {spec!r}: {folder!r} does not exist")
            vocoders[name] = folder
        elif name in REFERENCES:
            vocoders[name] = None
        elif name in NEURAL_KINDS:
            vocoders[name] = str(resolve_vocoder(name))
        else:
            raise ConfigError(f"--vocoder {spec!r} must be {', '.join((*REFERENCES, *NEURAL_KINDS))} or NAME=DIR (an export)")
    bar = ProgressBar(False, desc="copy synthesis", unit="clip")
    report = evaluate_vocoders(args.manifest, vocoders, args.out, sides=sides, workers=args.workers,
                               limit=args.limit, progress=bar)
    bar.close()
    print(Path(args.out).with_suffix(".md").read_text())
    if report["failures"]:
        print(f"{len(report['failures'])} clip(s) failed: {next(iter(report['failures'].items()))}", file=sys.stderr)
    return 0


def _named_paths(specs: list[str], flag: str, what: str, names) -> dict[str, str]:
    """``NAME=PATH`` options (``--vocoder hifigan=DIR``): NAME one of ``names``, PATH existing."""
    from pathlib import Path

    found: dict[str, str] = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if name not in names or not path:
            raise ConfigError(f"{flag} {spec!r} must be NAME={what} with NAME one of {', '.join(names)}")
        if not Path(path).exists():
            raise ConfigError(f"{flag} {spec!r}: {path!r} does not exist")
        found[name] = path
    return found


def cmd_eval(args: argparse.Namespace) -> int:
    from voxflip.trainer.eval.runner import evaluate

    if args.system == "list":
        from voxflip.trainer.eval.systems import SYSTEMS

        for system in SYSTEMS.values():
            print(f"{system.name:<14} to {system.direction.value:<8} {system.description}")
        return 0
    if args.manifest is None:
        raise EngineError("voxflip eval needs --manifest MANIFEST.jsonl (or --system list)")

    systems = [s.strip() for s in args.system.split(",") if s.strip()]

    from voxflip.trainer.eval.systems import ALIGNSTS_SYSTEMS, NEURAL_VOCODERS

    vocoders = _named_paths(args.vocoder, "--vocoder", "DIR", NEURAL_VOCODERS)
    alignsts = _named_paths(args.alignsts, "--alignsts", "MODEL", ALIGNSTS_SYSTEMS)
    if args.content_model is not None and not os.path.exists(args.content_model):
        raise ConfigError(f"--content-model {args.content_model!r} does not exist (an export of voxflip export-content)")
    bar = _Bar("evaluating", "clip")
    try:
        result = evaluate(systems, args.manifest, args.out, split=args.split, limit=args.limit, asr=args.asr,
                          workers=args.workers, model=args.model, progress=bar, vocoders=vocoders,
                          alignsts=alignsts, asr_draws=args.asr_draws, content_model=args.content_model)
    finally:
        bar.close()
    print(result.markdown())
    if args.plots or args.listen:
        from voxflip.trainer.data.manifest import read_manifest
        from voxflip.trainer.eval.runner import clip_dir_of

        entries = [e for e in read_manifest(args.manifest) if e.id in result.languages]
        if result.direction.value == "singing":   # the pictures show the notes the converters sang
            from dataclasses import replace

            from voxflip.trainer.data.manifest import NoteSpan
            from voxflip.trainer.eval.systems import has_melody, melody_of

            entries = [e if e.notes or not has_melody(e) else replace(e, notes=[
                NoteSpan(n.start_s, n.end_s, n.midi_note) for n in melody_of(e).notes]) for e in entries]
        if args.plots:
            from voxflip.trainer.eval.plots import write_plots

            written = write_plots(result, entries, clip_dir_of(args.out), args.plots)
            print(f"plots: {len(written)} figures in {args.plots}")
        if args.listen:
            from voxflip.trainer.eval.listen import write_listening_page

            page = write_listening_page(result, entries, clip_dir_of(args.out), args.listen, plots_dir=args.plots)
            print(f"listening page: {page}")
    for system, failed in result.failures.items():
        for entry_id, why in list(failed.items())[:3]:
            print(f"voxflip eval: {system} / {entry_id}: {why}", file=sys.stderr)
    print(f"report: {args.out}")
    return 0

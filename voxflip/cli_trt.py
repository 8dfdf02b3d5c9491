"""``voxflip build-trt MODEL``: the front door of :mod:`voxflip.trt_build`.

``trt_build`` imports nothing else of voxflip; here its options are read, the engine's manifest
checker and decoder expansion limit are passed in, and its errors become the engine's types
(:class:`~voxflip.engine.errors.ConfigError`, ``ArtifactMismatchError``,
``MissingDependencyError``), so :func:`voxflip.cli.main` prints each as one line and exits 2.
"""

from __future__ import annotations

import argparse
import math

from voxflip.engine.errors import ArtifactMismatchError, ConfigError, MissingDependencyError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``build-trt`` options."""
    parser.add_argument("model", help="an exported model folder, or its *.manifest.json")
    parser.add_argument("--precision", choices=("auto", "fp16", "fp32"), default="auto",
                        help="auto (the default): fp16 where the graph's float16 version matches float32 under "
                             "ONNX Runtime CPU, else fp32")
    parser.add_argument("--max-streams", type=int, default=1, metavar="N",
                        help="the most streams one engine call carries (the profiles' max batch; default 1)")
    parser.add_argument("--opt-streams", type=int, metavar="N", help="the batch TensorRT tunes for (default: max)")
    parser.add_argument("--workspace-mib", type=int, default=1024, help="TensorRT's workspace pool (default 1024 MiB)")
    parser.add_argument("--onnx-only", action="store_true",
                        help="write the sanitised graphs and the manifest's trt section, build no engine "
                             "(runs without TensorRT)")
    parser.add_argument("--allow-op", action="append", default=[], metavar="NAME",
                        help="build even though this operator is not in TensorRT 10.x's list (repeatable)")


def cmd_build_trt(args: argparse.Namespace) -> int:
    from voxflip.engine.backends.onnx_step import check_manifest
    from voxflip.engine.converters.flow_to_speech import MAX_FRAMES_PER_FRAME
    from voxflip.trt_build.build import BuildConfig, build_trt
    from voxflip.trt_build.errors import BuildConfigError, GraphMismatchError, TensorRTMissingError
    from voxflip.trt_build.profiles import ProfileConfig

    try:
        profiles = ProfileConfig(max_streams=args.max_streams, opt_streams=args.opt_streams or args.max_streams,
                                 max_expansion=math.ceil(MAX_FRAMES_PER_FRAME))
        config = BuildConfig(precision=args.precision, profiles=profiles, workspace_mib=args.workspace_mib,
                             onnx_only=args.onnx_only, allow_ops=frozenset(args.allow_op))
        built = build_trt(args.model, config, check=check_manifest,
                          say=lambda line: print(line) if not getattr(args, "quiet", False) else None)
    except TensorRTMissingError as exc:
        raise MissingDependencyError(str(exc)) from None
    except BuildConfigError as exc:
        raise ConfigError(str(exc)) from None
    except GraphMismatchError as exc:
        raise ArtifactMismatchError(str(exc)) from None
    what = f"{len(built.engines)} engine(s)" if not args.onnx_only else "sanitised graphs only (--onnx-only)"
    print(f"build-trt: {what}; manifest {built.manifest} updated")
    return 0

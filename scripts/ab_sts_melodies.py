"""A/B of a speech -> singing converter with more melodies than dev-data pairs: each speech sung on its
own melody and on the next ``--melodies - 1`` clips' melodies (transcribed from their real singing).

Twenty-five pairs are few for the recogniser: one clip that makes Whisper loop ("S, S, S, ...") moves
the mean CER by 0.04. Singing every speech on several melodies measures each change over four times as
many songs. The converter is built as ``voxflip`` builds it (``--method``, default ``psola``), then once
more with one option, attribute or configuration field set otherwise (``--set valleys=false``,
``--set vibrato_cents=0``, ``--set vibrato_delay_ms=0``); both
sing the same speech on the same melody, and both songs are scored as ``voxflip eval`` scores them:
Whisper base CER against the speech's own text (capped at 1), DNSMOS, RCA against the notes given. The paired differences (the setting minus
the default) are averaged per speech first, and the 95% intervals are over speeches, not songs (the
songs of one speech are not independent).

    python scripts/ab_sts_melodies.py --manifest ../shared/dev-data/manifest.jsonl --set valleys=false

About 12 minutes on two cores for 4 melodies. Nothing is written.
"""

from __future__ import annotations

import ast
from multiprocessing import Pool
from pathlib import Path

import numpy as np


def _score(speaker: dict, singer: dict, root: Path, method: str, setting: tuple[str, object]) -> list[float]:
    from voxflip.engine.audio_io import read_audio
    from voxflip.engine.melody_audio import transcribe_melody_file
    from voxflip.engine.registry import get_converter, make_converter
    from voxflip.streaming.streamer import Streamer
    from voxflip.trainer.eval.asr import capped, score_transcript
    from voxflip.trainer.eval.quality import dnsmos
    from voxflip.trainer.eval.to_singing_metrics import melody_contour, rca
    from voxflip.trainer.eval.whisper import transcribe

    melody = transcribe_melody_file(root / singer["singing"]).melody
    speech, rate = read_audio(root / speaker["speech"])
    times, f0 = melody_contour(melody)
    out: list[float] = []
    option = setting[0] in get_converter(method).option_names
    for changed in (False, True):
        options = {setting[0]: setting[1]} if changed and option else {}
        converter = make_converter("singing", method, melody=melody, **options)
        if changed and not option:
            _apply(converter, *setting)
        streamer = Streamer(converter, rate, rate)
        song = np.concatenate([streamer.process(speech), streamer.flush()])
        song = song / max(1.0, float(np.abs(song).max()) * 1.001)
        text = transcribe(song, rate, language=speaker["language"])
        out += [capped(score_transcript(speaker["text"], text, speaker["language"])["cer"]),
                dnsmos(song, rate)["ovrl"], rca(song, rate, f0, times)]
    return out


def _apply(converter, name: str, value: object) -> None:
    """An attribute of the converter, else a field of its configuration (``vibrato_delay_ms``)."""
    from dataclasses import replace

    if hasattr(converter, name):
        setattr(converter, name, value)
    else:
        converter.config = replace(converter.config, **{name: value})


def _config_fields(converter) -> set[str]:
    from dataclasses import fields, is_dataclass

    config = getattr(converter, "config", None)
    return {f.name for f in fields(config)} if is_dataclass(config) else set()


def _setting(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    if not name or not value:
        raise SystemExit(f"--set {text!r}: give NAME=VALUE (a Python literal; true/false allowed)")
    literal = {"true": "True", "false": "False"}.get(value.lower(), value)
    try:
        return name, ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return name, value


def _check_setting(method: str, name: str, singing: Path) -> None:
    from voxflip.engine.registry import get_converter, make_converter

    if name in get_converter(method).option_names:
        return
    converter = make_converter("singing", method, melody=str(singing))
    if not hasattr(converter, name) and name not in _config_fields(converter):
        raise SystemExit(f"--set {name}: {method} ({type(converter).__name__}) has no option, attribute or "
                         f"configuration field {name!r}")


def main() -> None:
    from devdata_args import parse

    from voxflip.trainer.eval.metrics import confidence_interval

    def more(parser) -> None:
        parser.add_argument("--method", default="psola")
        parser.add_argument("--set", dest="setting", type=_setting, required=True, metavar="NAME=VALUE")
        parser.add_argument("--melodies", type=int, default=4)

    args, rows = parse(__doc__.split("\n\n")[0], more)
    _check_setting(args.method, args.setting[0], args.manifest.parent / rows[0]["singing"])
    jobs = [(rows[i], rows[(i + k) % len(rows)]) for i in range(len(rows)) for k in range(args.melodies)]
    with Pool(args.workers) as pool:
        table = np.array(pool.starmap(_score, [(a, b, args.manifest.parent, args.method, args.setting)
                                                for a, b in jobs]))
    name, value = args.setting
    print(f"{args.method} as built against {name}={value!r}: {len(rows)} speeches x {args.melodies} melodies")
    per_speech = table.reshape(len(rows), args.melodies, -1).mean(axis=1)
    for k, metric in enumerate(("CER", "DNSMOS", "RCA")):
        base, other = table[:, k], table[:, 3 + k]
        mean, half, n = confidence_interval(per_speech[:, 3 + k] - per_speech[:, k])
        worse = int(np.sum(other > base)) if metric == "CER" else int(np.sum(other < base))
        print(f"{metric}: as built {base.mean():.3f}, {name}={value!r} {other.mean():.3f}, paired {mean:+.3f} ± {half:.3f} "
              f"(n={n} speeches; {worse} of {len(base)} songs worse)")
    loops = ((table[:, 0] >= 1.0).sum(), (table[:, 3] >= 1.0).sum())
    print(f"songs at CER 1 (the recogniser heard nothing of the lyric, or looped): {loops[0]} as built, {loops[1]} with {name}={value!r}")


if __name__ == "__main__":
    main()

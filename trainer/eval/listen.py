"""A listening page for a `voxflip eval` run: one static, self-contained folder to open in a browser.

``index.html`` starts with the summary tables (all clips, then each language when there are
several; the best mean of each metric in bold) and, where :func:`.plots.write_plots` drew them,
the summary charts. Then one section per clip: its id, language and text, and a row of players:
the input, each system's output and the reference, each labelled, each output with its scores
from the runner's record (the key one, CER or RCA, first) and what the recogniser heard. An
output the runner did not produce is shown as "not produced" with the runner's reason, never as
a player with nothing behind it. With ``plots_dir`` the clip's figure follows its players.

Everything the page needs is copied into its folder and linked by relative paths, so the folder
can be zipped or moved as it is::

    index.html
    input/<id>.<ext>          the manifest's input audio (as is; AIFF is converted to WAV)
    reference/<id>.<ext>      the manifest's reference audio
    outputs/<system>/<id>.wav the systems' outputs, from the runner's clip folder
    plots/...                 the figures, when ``plots_dir`` lies outside the folder

Copies are skipped when the copy is already there (same size and modification time), so
writing the page again after more clips were scored is quick. No JavaScript; all text is escaped.
"""

from __future__ import annotations

import html
import math
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from voxflip.engine.audio_io import read_audio
from voxflip.engine.audio_write import write_audio

from ..data.manifest import ManifestEntry
from .plots import (
    KEY_METRIC,
    ClipSide,
    clip_plot_path,
    clip_sides,
    evaluated_entries,
    key_score_label,
    safe_name,
    summary_plot_path,
)

if TYPE_CHECKING:
    from .runner import EvalResult

#: audio a browser's <audio> plays as it is; other files are converted to WAV
PLAYABLE_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a")

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 110em; }
table.summary { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
table.summary th, table.summary td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
table.summary th:first-child, table.summary td:first-child { text-align: left; }
section.clip { border-top: 2px solid #ddd; padding: 0.5em 0 1em; }
section.clip h2 { margin: 0.2em 0; font-size: 1.15em; }
p.text { font-size: 1.05em; margin: 0.2em 0 0.6em; }
span.language { background: #eef; border-radius: 0.3em; padding: 0 0.4em; margin-right: 0.6em; font-size: 0.85em; }
div.players { display: flex; flex-wrap: wrap; gap: 0.8em; }
figure.player { margin: 0; padding: 0.5em; border: 1px solid #ddd; border-radius: 0.4em; width: 16em; }
figure.player.missing { background: #f6f6f6; color: #666; }
figure.player figcaption { font-weight: 600; margin-bottom: 0.3em; }
figure.player audio { width: 100%; }
table.scores { font-size: 0.8em; border-collapse: collapse; margin-top: 0.3em; }
table.scores th { text-align: left; font-weight: normal; color: #555; padding-right: 0.8em; }
table.scores tr.key { font-weight: 700; }
p.heard, p.why { font-size: 0.8em; color: #555; margin: 0.3em 0 0; }
img.clip-plot, img.summary-plot { max-width: 100%; margin-top: 0.6em; }
nav a { margin-right: 0.6em; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _href(path: Path, out_dir: Path) -> str:
    """A relative, percent-encoded, escaped link from ``index.html`` in ``out_dir`` to ``path``."""
    relative = Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()
    return _e(quote(relative))


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _copy(source: Path, dest: Path) -> Path:
    """Copy ``source`` to ``dest`` unless that copy is already there (same size and modification time)."""
    if source.resolve() == dest.resolve():
        return dest
    src_stat = source.stat()
    if dest.is_file():
        dest_stat = dest.stat()
        if dest_stat.st_size == src_stat.st_size and dest_stat.st_mtime_ns == src_stat.st_mtime_ns:
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copy2(source, tmp)
    os.replace(tmp, dest)
    return dest


def _place_audio(source: Path, folder: Path, stem: str) -> Path:
    """Copy ``source`` to ``folder/<stem><its extension>``; to ``<stem>.wav`` when a browser cannot play it."""
    if source.suffix.lower() in PLAYABLE_EXTENSIONS:
        return _copy(source, folder / f"{stem}{source.suffix.lower()}")
    dest = folder / f"{stem}.wav"
    if not (dest.is_file() and dest.stat().st_mtime_ns >= source.stat().st_mtime_ns):
        audio, sample_rate = read_audio(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_audio(dest, audio, sample_rate)
    return dest


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value):
        return "–"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _best(result: EvalResult, table: dict[str, dict[str, dict[str, float]]], metric: str) -> set[str]:
    """The systems with the best mean of ``metric`` (all of them on a tie); none when fewer than two have one."""
    from .runner import LOWER_IS_BETTER, TARGET

    means = {s: table[s][metric]["mean"] for s in result.systems if metric in table.get(s, {})}
    if len(means) < 2:
        return set()
    if metric in TARGET:
        badness = {s: abs(m - TARGET[metric]) for s, m in means.items()}
    else:
        badness = {s: m if metric in LOWER_IS_BETTER else -m for s, m in means.items()}
    best = min(badness.values())
    return {s for s, b in badness.items() if b == best}


def _summary_table(result: EvalResult, language: str | None) -> str:
    from .runner import LOWER_IS_BETTER, TARGET

    table = result.summary(language)
    arrows = {m: (f"→ {TARGET[m]:g}" if m in TARGET else "↓" if m in LOWER_IS_BETTER else "↑")
              for m in result.metrics}
    rows = ["<tr><th>system</th>" + "".join(f"<th>{_e(m)} {_e(arrows[m])}</th>" for m in result.metrics)
            + "</tr>"]
    best = {m: _best(result, table, m) for m in result.metrics}
    for system in result.systems:
        cells = []
        for metric in result.metrics:
            cell = table.get(system, {}).get(metric)
            if cell is None:
                cells.append("<td>–</td>")
                continue
            half = "" if not math.isfinite(cell["ci95"]) else f" ± {_number(cell['ci95'])}"
            text = _e(f"{_number(cell['mean'])}{half} (n={cell['n']})")
            cells.append(f"<td><b>{text}</b></td>" if system in best[metric] else f"<td>{text}</td>")
        failed = sum(1 for i in result.failures.get(system, {})
                     if language is None or result.languages.get(i) == language)
        note = f" <small>({failed} failed)</small>" if failed else ""
        rows.append(f"<tr><td>{_e(system)}{note}</td>" + "".join(cells) + "</tr>")
    return '<table class="summary">\n' + "\n".join(rows) + "\n</table>"


def _scores_table(direction_key: str, record: dict[str, Any], metrics: tuple[str, ...]) -> str:
    scores = record.get("scores", {})
    order = [direction_key, *(m for m in metrics if m != direction_key),
             *sorted(m for m in scores if m not in metrics and m != direction_key)]
    rows = []
    for metric in (m for m in order if m in scores):
        key = ' class="key"' if metric == direction_key else ""
        rows.append(f"<tr{key}><th>{_e(metric)}</th><td>{_e(_number(scores[metric]))}</td></tr>")
    return '<table class="scores">' + "".join(rows) + "</table>" if rows else ""


def _player(side: ClipSide, entry: ManifestEntry, result: EvalResult, out_dir: Path) -> str:
    caption = f"<figcaption>{_e(side.name)}</figcaption>"
    if side.path is None:
        return f'<figure class="player missing">{caption}<p class="why">{_e(side.problem)}</p></figure>'
    name = safe_name(entry.id)
    if side.kind == "output":
        dest = _place_audio(side.path, out_dir / "outputs" / safe_name(side.system), name)
    else:
        dest = _place_audio(side.path, out_dir / side.kind, name)
    parts = [f'<figure class="player">{caption}<audio controls preload="none" src="{_href(dest, out_dir)}">'
             "</audio>"]
    if side.kind == "output":
        if side.record is None:
            failure = result.failures.get(side.system, {}).get(entry.id)
            parts.append(f'<p class="why">{_e(key_score_label(result.direction, side, failure))}</p>')
        else:
            parts.append(_scores_table(KEY_METRIC[result.direction], side.record, result.metrics))
            heard = side.record.get("notes", {}).get("hypothesis")
            if heard is not None:
                parts.append(f'<p class="heard">heard: “{_e(heard)}”</p>')
    parts.append("</figure>")
    return "".join(parts)


def _image(png: Path, out_dir: Path, folder: Path) -> Path:
    return png if _inside(png, out_dir) else _copy(png, folder / png.name)


def write_listening_page(result: EvalResult, entries: Iterable[ManifestEntry], clip_dir: str | os.PathLike[str],
                         out_dir: str | os.PathLike[str], *, plots_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write ``out_dir/index.html`` and copy the audio (and figures) it plays; see the module docstring.

    Args:
        result: what :func:`voxflip.trainer.eval.runner.evaluate` returned.
        entries: the manifest entries; those not in ``result.languages`` are skipped.
        clip_dir: the runner's ``<out stem>_clips`` folder (``<system>/<id>.wav``).
        out_dir: the page's folder (created).
        plots_dir: the folder :func:`.plots.write_plots` wrote; its figures are shown (copied in
            unless they lie inside ``out_dir``). None: no figures.

    Returns:
        The path of ``index.html``.

    Raises:
        AudioInputError: an input or reference that must be converted to WAV cannot be read.
        OSError: a file cannot be copied or written.
    """
    clip_dir, out_dir = Path(clip_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = Path(plots_dir) if plots_dir is not None else None
    chosen = evaluated_entries(result, entries)
    direction = f"{result.direction.source} → {result.direction.value}"
    languages = sorted(set(result.languages.values()))
    body = [f"<h1>voxflip eval: {_e(direction)}</h1>",
            f"<p>{len(chosen)} clips; systems: {_e(', '.join(result.systems))}. Each clip: the input "
            f"({_e(result.direction.source)}), each system's output, the reference "
            f"({_e(result.direction.value)}). Summary cells: mean ± 95% interval (n clips); "
            "best mean in bold.</p>",
            "<h2>Summary: all clips</h2>", _summary_table(result, None)]
    if len(languages) > 1:
        for language in languages:
            body += [f"<h2>Summary: {_e(language)}</h2>", _summary_table(result, language)]
    body.append("<nav>" + "".join(f'<a href="#clip-{_e(safe_name(e.id))}">{_e(e.id)}</a>' for e in chosen)
                + "</nav>")
    if plots is not None:
        charts: list[str | None] = [None, *languages] if len(languages) > 1 else [None]
        for chart in charts:
            png = summary_plot_path(plots, chart)
            if png.is_file():
                shown = _image(png, out_dir, out_dir / "plots")
                alt = _e(f"summary chart: {chart or 'all clips'}")
                body.append(f'<img class="summary-plot" src="{_href(shown, out_dir)}" alt="{alt}">')
    for entry in chosen:
        section = [f'<section class="clip" id="clip-{_e(safe_name(entry.id))}">', f"<h2>{_e(entry.id)}</h2>",
                   f'<p class="text"><span class="language">{_e(entry.language)}</span>{_e(entry.text)}</p>',
                   '<div class="players">']
        section += [_player(side, entry, result, out_dir) for side in clip_sides(result, entry, clip_dir)]
        section.append("</div>")
        if plots is not None:
            png = clip_plot_path(plots, entry.id)
            if png.is_file():
                shown = _image(png, out_dir, out_dir / "plots" / "clips")
                alt = _e(f"spectrograms and F0 of {entry.id}")
                section.append(f'<img class="clip-plot" src="{_href(shown, out_dir)}" loading="lazy" alt="{alt}">')
        section.append("</section>")
        body.append("\n".join(section))
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>voxflip eval: {_e(direction)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
    index = out_dir / "index.html"
    tmp = index.with_name(".index.html.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, index)
    return index

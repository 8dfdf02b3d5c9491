"""Pictures of a `voxflip eval` run: one figure per clip, one chart per summary table.

A clip's figure stacks one panel per audio: the input, each system's output (the
``<clip_dir>/<system>/<id>.wav`` the runner wrote), and the reference. Each panel is a log-mel
spectrogram (80 bands up to 8 kHz, 10 ms hop, 80 dB range, its own loudest frame at the top
of the colour scale) with the Praat F0 (:func:`.speech_likeness.praat_f0`, the tracker the
metrics use) drawn over it on a log-Hz axis at the right, shared by every panel of the figure.
The panels share one time axis, so a shorter or longer output shows as such. The entry's
notes are drawn as horizontal segments on that F0 axis: for speech -> singing on every panel
(they are the melody the outputs are scored against, by RCA), for singing -> speech on the
input (the melody that was sung). Each output panel is labelled with its system and its key
score from the clip's record: CER (singing -> speech) or RCA (speech -> singing); an output
the runner did not produce is a panel that says so, with the runner's reason.

A summary chart has one plot per metric: each system's mean with its 95% confidence
interval as error bars (none where n = 1), ``n`` under each point, a dashed line at the target
of the metrics that have one. There is one chart over all clips and, when the clips are in
several languages, one per language: the tables of the report.

matplotlib draws on its Agg canvas (no pyplot, no display, no global state) and is imported
only when a picture is made: ``pip install "voxflip[eval]"``.
"""

from __future__ import annotations

import hashlib
import os
import re
import textwrap
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voxflip.engine.audio_io import read_audio
from voxflip.engine.direction import Direction
from voxflip.engine.errors import AudioInputError, MissingDependencyError, install_hint

from ..data.manifest import ManifestEntry

if TYPE_CHECKING:
    from .runner import EvalResult

#: the score printed beside each output, per direction
KEY_METRIC = {Direction.TO_SPEECH: "cer", Direction.TO_SINGING: "rca"}
HOP_S = 0.01
WINDOW_S = 0.032
MEL_BANDS = 80
MEL_FMAX_HZ = 8000.0
DYNAMIC_RANGE_DB = 80.0
FIGURE_WIDTH_IN = 12.0
PANEL_HEIGHT_IN = 1.45
DPI = 100
#: the F0 axis covers the figure's voiced frames and notes, within these limits
F0_AXIS_HZ = (50.0, 1100.0)
_F0_TICKS_HZ = (50, 75, 100, 150, 200, 300, 400, 600, 800, 1000)
_MEL_TICKS_HZ = (250, 500, 1000, 2000, 4000, 8000)
_FALLBACK_FONTS = ("Noto Sans", "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK KR", "WenQuanYi Zen Hei",
                   "Droid Sans Fallback", "Arial Unicode MS")
F0_COLOUR = "#00e5ff"
NOTE_COLOUR = "#ffffff"
F0_AXIS_COLOUR = "#007c8a"


@dataclass(frozen=True)
class ClipSide:
    """One audio of a clip, as a figure panel or a listening-page player.

    Attributes:
        kind: ``"input"``, ``"output"`` or ``"reference"``.
        name: what it is called: ``"input (singing)"``, the system's name, ``"reference (speech)"``.
        path: the audio file, or None where there is none (then ``problem`` says why).
        problem: why there is no audio: ``"not produced: <the runner's reason>"``, ``"missing: <path>"``.
        system: the system's name for outputs, else ``""``.
        record: the runner's record of an output (``"scores"``, ``"notes"``), None where not scored.
    """

    kind: str
    name: str
    path: Path | None
    problem: str = ""
    system: str = ""
    record: dict[str, Any] | None = None


def safe_name(name: str) -> str:
    """A file name for ``name``: itself when plain (letters, digits, ``._-``), else cleaned plus a hash."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80] or "clip"
    return f"{cleaned}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def clip_plot_path(plots_dir: str | os.PathLike[str], entry_id: str) -> Path:
    """Where :func:`write_plots` puts the figure of one clip."""
    return Path(plots_dir) / "clips" / f"{safe_name(entry_id)}.png"


def summary_plot_path(plots_dir: str | os.PathLike[str], language: str | None = None) -> Path:
    """Where :func:`write_plots` puts the chart of all clips (``language`` None) or of one language."""
    return Path(plots_dir) / ("summary.png" if language is None else f"summary_{safe_name(language)}.png")


def evaluated_entries(result: EvalResult, entries: Iterable[ManifestEntry]) -> list[ManifestEntry]:
    """The entries the evaluation covered (those in ``result.languages``; all when it is empty), in order."""
    entries = list(entries)
    if not result.languages:
        return entries
    return [e for e in entries if e.id in result.languages]


def _side_path(entry: ManifestEntry, side: str) -> tuple[Path | None, str]:
    path = getattr(entry, side)
    if path is None:
        return None, f"the manifest has no {side}"
    path = Path(path)
    if not path.is_file():
        return None, f"missing: {path}"
    return path, ""


def clip_sides(result: EvalResult, entry: ManifestEntry, clip_dir: str | os.PathLike[str]) -> list[ClipSide]:
    """The input, each system's output and the reference of one clip, in that order."""
    source, target = result.direction.source, result.direction.value
    path, problem = _side_path(entry, source)
    sides = [ClipSide("input", f"input ({source})", path, problem)]
    for system in result.systems:
        record = result.clips.get(system, {}).get(entry.id)
        wav = Path(clip_dir) / system / f"{entry.id}.wav"
        failure = result.failures.get(system, {}).get(entry.id)
        if wav.is_file():
            sides.append(ClipSide("output", system, wav, "", system, record))
        else:
            sides.append(ClipSide("output", system, None, "not produced" + (f": {failure}" if failure else ""),
                                  system, record))
    path, problem = _side_path(entry, target)
    sides.append(ClipSide("reference", f"reference ({target})", path, problem))
    return sides


def key_score_label(direction: Direction, side: ClipSide, failure: str | None = None) -> str:
    """``"CER 0.125"`` / ``"RCA 0.870"`` for a scored output; ``"not scored"`` (and why) for an unscored one."""
    if side.kind != "output" or side.path is None:
        return ""
    metric = KEY_METRIC[direction]
    scores = (side.record or {}).get("scores", {})
    if metric in scores:
        return f"{metric.upper()} {scores[metric]:.3f}"
    if side.record is None:
        return "not scored" + (f": {failure}" if failure else "")
    return f"{metric.upper()} –"


def _matplotlib() -> tuple[Any, Any]:
    """``(Figure, FigureCanvasAgg)``; raises MissingDependencyError with the install hint."""
    try:
        import parselmouth  # noqa: F401  (the F0 over the spectrograms)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        missing = exc.name or "matplotlib"
        raise MissingDependencyError(f"eval plots need matplotlib and praat-parselmouth ({missing} is not "
                                     f"installed): {install_hint('eval')}") from None
    return Figure, FigureCanvasAgg


@lru_cache(maxsize=8)
def _fonts() -> tuple[str, ...]:
    """DejaVu Sans, then the installed fonts of other scripts (CJK...), so lyrics are not boxes."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ("DejaVu Sans", *(name for name in _FALLBACK_FONTS if name in installed))


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


@lru_cache(maxsize=8)
def _mel_filterbank(sample_rate: int, n_fft: int) -> tuple[np.ndarray, float]:
    """Triangular HTK-mel filters ``(MEL_BANDS, n_fft // 2 + 1)`` and their top frequency in Hz."""
    fmax = min(MEL_FMAX_HZ, sample_rate / 2)
    edges_mel = np.linspace(0.0, float(_hz_to_mel(fmax)), MEL_BANDS + 2)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - low) / np.maximum(centre - low, 1e-9)
    falling = (high - bins) / np.maximum(high - centre, 1e-9)
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    return weights, fmax


def log_mel_db(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """Log-mel spectrogram of mono ``audio``: ``(MEL_BANDS, frames)`` in dB (10 ms hop), and its top in Hz.

    Each frame is centred on its time (``frame * HOP_S``); the floor is :data:`DYNAMIC_RANGE_DB`
    below the loudest bin.
    """
    hop = max(1, round(sample_rate * HOP_S))
    n_fft = 1 << int(np.ceil(np.log2(WINDOW_S * sample_rate)))
    padded = np.pad(np.asarray(audio, dtype=np.float32), (n_fft // 2, n_fft // 2))
    if padded.shape[0] < n_fft:
        padded = np.pad(padded, (0, n_fft - padded.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    weights, fmax = _mel_filterbank(sample_rate, n_fft)
    window = np.hanning(n_fft).astype(np.float32)
    mel = np.empty((MEL_BANDS, frames.shape[0]), dtype=np.float32)
    for start in range(0, frames.shape[0], 2048):          # bounded memory on long clips
        block = np.abs(np.fft.rfft(frames[start:start + 2048] * window, axis=1)) ** 2
        mel[:, start:start + 2048] = weights @ block.T.astype(np.float32)
    db = 10.0 * np.log10(np.maximum(mel, 1e-12))
    return np.maximum(db, db.max() - DYNAMIC_RANGE_DB), fmax


def _f0_track(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Praat F0 ``(times_s, f0_hz)``, NaN where unvoiced (so the line breaks there)."""
    from .speech_likeness import F0_STEP_S, praat_f0

    f0 = praat_f0(audio, sample_rate)
    duration = audio.shape[0] / sample_rate
    times = (duration - (f0.shape[0] - 1) * F0_STEP_S) / 2 + np.arange(f0.shape[0]) * F0_STEP_S  # Praat centres
    return times, np.where(f0 > 0, f0, np.nan)


@dataclass
class _Panel:
    side: ClipSide
    label: str
    audio: np.ndarray | None = None
    sample_rate: int = 0
    problem: str = ""
    notes: bool = False


def _analyse(panel: _Panel) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """``(log-mel dB, its top in Hz, F0 times in s, F0 in Hz)`` of a panel's audio."""
    assert panel.audio is not None
    return (*log_mel_db(panel.audio, panel.sample_rate), *_f0_track(panel.audio, panel.sample_rate))


def _f0_range(tracks: Sequence[np.ndarray], notes_hz: np.ndarray) -> tuple[float, float]:
    values = np.concatenate([*(t[np.isfinite(t)] for t in tracks), notes_hz])
    if values.size == 0:
        return 60.0, 500.0
    low = max(F0_AXIS_HZ[0], float(np.percentile(values, 1)) / 1.25)
    high = min(F0_AXIS_HZ[1], float(np.percentile(values, 99)) * 1.25)
    if high / low < 2.0:                      # at least an octave, centred on the values
        middle = np.sqrt(low * high)
        low, high = max(F0_AXIS_HZ[0], middle / np.sqrt(2)), min(F0_AXIS_HZ[1], middle * np.sqrt(2))
    return low, high


def _clip_figure(Figure: Any, result: EvalResult, entry: ManifestEntry, clip_dir: Path) -> Any:
    direction = result.direction
    panels = []
    for side in clip_sides(result, entry, clip_dir):
        failure = result.failures.get(side.system, {}).get(entry.id) if side.system else None
        label = side.name
        score = key_score_label(direction, side, failure)
        if score:
            label += f"  ·  {score}"
        notes = bool(entry.notes) and (direction is Direction.TO_SINGING or side.kind == "input")
        panel = _Panel(side, label, problem=side.problem, notes=notes)
        if side.path is not None:
            try:
                panel.audio, panel.sample_rate = read_audio(side.path)
            except AudioInputError as exc:
                panel.problem = f"unreadable: {str(exc).splitlines()[0]}"
        panels.append(panel)

    heard = [i for i, panel in enumerate(panels) if panel.audio is not None]
    with ThreadPoolExecutor(max(1, min(len(heard), os.cpu_count() or 1))) as pool:   # Praat and FFTs free the GIL
        analyses = dict(zip(heard, pool.map(_analyse, [panels[i] for i in heard]), strict=True))
    tracks = {i: (times, f0) for i, (_, _, times, f0) in analyses.items()}
    notes_hz = np.array([440.0 * 2.0 ** ((n.midi_note - 69) / 12) for n in entry.notes or ()])
    f0_low, f0_high = _f0_range([f0 for _, f0 in tracks.values()], notes_hz)
    durations = [p.audio.shape[0] / p.sample_rate for p in panels if p.audio is not None]
    notes_end = max((n.end_s for n in entry.notes or ()), default=0.0)
    span_s = max([*durations, notes_end, 0.1])

    title_lines = textwrap.wrap(entry.text, 150, max_lines=2, placeholder=" …") or ["(no text)"]
    title_in = 0.3 + 0.2 * len(title_lines)
    bottom_in = 0.45
    height_in = title_in + bottom_in + PANEL_HEIGHT_IN * len(panels)
    fig = Figure(figsize=(FIGURE_WIDTH_IN, height_in), dpi=DPI)
    fig.subplots_adjust(left=0.055, right=0.935, top=1 - title_in / height_in, bottom=bottom_in / height_in,
                        hspace=0.06)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    fig.suptitle(f"{entry.id}  ·  {entry.language}  ·  {direction.source} → {direction.value}\n"
                 + "\n".join(title_lines), fontsize=10, parse_math=False, y=1 - 0.08 / height_in, va="top")
    for i, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        ax.set_xlim(0.0, span_s)
        if panel.audio is None:
            ax.set_yticks([])
            ax.set_facecolor("#f2f2f2")
            ax.text(0.5, 0.5, panel.problem, transform=ax.transAxes, ha="center", va="center", fontsize=9,
                    color="#555555", parse_math=False)
            ax.text(0.004, 0.93, panel.label, transform=ax.transAxes, ha="left", va="top", fontsize=9,
                    parse_math=False, bbox={"facecolor": "white", "alpha": 0.85, "linewidth": 0, "pad": 2})
            continue
        db, fmax, _, _ = analyses[i]
        top_mel = float(_hz_to_mel(fmax))
        duration = panel.audio.shape[0] / panel.sample_rate
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                  extent=(-HOP_S / 2, db.shape[1] * HOP_S - HOP_S / 2, 0.0, top_mel))
        ax.set_xlim(0.0, span_s)                     # imshow resets the limits of the shared time axis
        ax.axvline(duration, color="#888888", lw=0.8)
        mel_ticks = [hz for hz in _MEL_TICKS_HZ if hz <= fmax]
        ax.set_yticks(_hz_to_mel(np.array(mel_ticks)), [f"{hz / 1000:g}k" if hz >= 1000 else str(hz)
                                                         for hz in mel_ticks], fontsize=7)
        pitch = ax.twinx()
        pitch.set_yscale("log")
        pitch.set_ylim(f0_low, f0_high)
        ticks = [hz for hz in _F0_TICKS_HZ if f0_low <= hz <= f0_high]
        pitch.set_yticks(ticks, [str(hz) for hz in ticks], fontsize=7, color=F0_AXIS_COLOUR)
        pitch.yaxis.set_minor_locator(_null_locator())
        if panel.notes:
            for note, hz in zip(entry.notes or (), notes_hz, strict=True):
                pitch.hlines(hz, note.start_s, note.end_s, colors=NOTE_COLOUR, linewidth=3.5, alpha=0.55)
        times, f0 = tracks[i]
        pitch.plot(times, f0, color=F0_COLOUR, linewidth=1.4)
        pitch.text(0.004, 0.93, panel.label, transform=pitch.transAxes, ha="left", va="top", fontsize=9,
                   parse_math=False, bbox={"facecolor": "white", "alpha": 0.85, "linewidth": 0, "pad": 2})
    axes[-1].set_xlabel("time (s)", fontsize=8)
    axes[-1].tick_params(axis="x", labelsize=7)
    fig.text(0.012, 0.5, "spectrogram (Hz, mel scale)", rotation=90, va="center", fontsize=8)
    fig.text(0.985, 0.5, "Praat F0 (Hz, log scale)", rotation=90, va="center", fontsize=8, color=F0_AXIS_COLOUR)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=F0_COLOUR, lw=1.4, label="Praat F0")]
    if entry.notes:
        handles.append(Line2D([], [], color="#999999", lw=3.5, label="notes"))
    fig.legend(handles=handles, loc="upper right", fontsize=8, frameon=False, ncols=len(handles),
               bbox_to_anchor=(0.935, 1 - 0.04 / height_in))
    return fig


def _null_locator() -> Any:
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _summary_figure(Figure: Any, result: EvalResult, table: dict[str, dict[str, dict[str, float]]],
                    title: str) -> Any:
    from .runner import LOWER_IS_BETTER, TARGET

    metrics = list(result.metrics)
    systems = list(result.systems)
    columns = min(5, len(metrics))
    rows = -(-len(metrics) // columns)
    label_in = 0.1 * max((len(s) for s in systems), default=4) + 0.3
    fig = Figure(figsize=(2.5 * columns + 0.4, 0.7 + (1.9 + label_in) * rows), dpi=DPI)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    fig.subplots_adjust(left=0.05, right=0.99, top=1 - 0.6 / fig.get_figheight(), bottom=label_in /
                        fig.get_figheight(), wspace=0.35, hspace=label_in / 1.9 + 0.3)
    fig.suptitle(title, fontsize=11, parse_math=False)
    colours = [f"C{i % 10}" for i in range(len(systems))]
    for ax, metric in zip(axes, metrics, strict=False):
        arrow = f"→ {TARGET[metric]:g}" if metric in TARGET else "↓" if metric in LOWER_IS_BETTER else "↑"
        ax.set_title(f"{metric} {arrow}", fontsize=9, parse_math=False)
        if metric in TARGET:
            ax.axhline(TARGET[metric], color="#999999", lw=1, ls="--")
        names = []
        if not any(metric in table.get(system, {}) for system in systems):
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#777777")
            ax.set_yticks([])
        for x, system in enumerate(systems):
            cell = table.get(system, {}).get(metric)
            if cell is None:
                names.append(f"{system}\n(no data)")
                continue
            names.append(system)
            half = cell["ci95"]
            error = None if half is None or not np.isfinite(half) else half
            ax.errorbar(x, cell["mean"], yerr=error, fmt="o", color=colours[x], capsize=4, markersize=5)
            ax.annotate(f"{cell['mean']:.3g}\nn={cell['n']}", (x, cell["mean"]), xytext=(6, 0),
                        textcoords="offset points", fontsize=7, va="center")
        ax.set_xlim(-0.5, len(systems) - 0.3)
        ax.set_xticks(range(len(systems)), names, rotation=35, ha="right", fontsize=8)
        for label in ax.get_xticklabels():
            label.set_parse_math(False)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", color="#e0e0e0", lw=0.6)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    return fig


def _save(fig: Any, FigureCanvasAgg: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    FigureCanvasAgg(fig)
    fig.savefig(tmp, dpi=DPI)
    os.replace(tmp, path)
    return path


def write_plots(result: EvalResult, entries: Iterable[ManifestEntry], clip_dir: str | os.PathLike[str],
                out_dir: str | os.PathLike[str]) -> list[Path]:
    """Draw each clip's figure and the summary charts of an evaluation as PNGs (see the module docstring).

    Args:
        result: what :func:`voxflip.trainer.eval.runner.evaluate` returned.
        entries: the manifest entries; those not in ``result.languages`` are skipped.
        clip_dir: the runner's ``<out stem>_clips`` folder (``<system>/<id>.wav``).
        out_dir: where the pictures go: ``clips/<id>.png`` (:func:`clip_plot_path`), ``summary.png``
            and, with several languages, ``summary_<language>.png`` (:func:`summary_plot_path`).

    Returns:
        The PNGs written: the clips' in entry order, then the summary charts.

    Raises:
        MissingDependencyError: matplotlib or praat-parselmouth is not installed.
    """
    Figure, FigureCanvasAgg = _matplotlib()
    from matplotlib import rc_context

    clip_dir, out_dir = Path(clip_dir), Path(out_dir)
    written = []
    direction = f"{result.direction.source} → {result.direction.value}"
    languages = sorted(set(result.languages.values()))
    with rc_context({"font.family": "sans-serif", "font.sans-serif": list(_fonts())}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from")   # a script no installed font has
        for entry in evaluated_entries(result, entries):
            fig = _clip_figure(Figure, result, entry, clip_dir)
            written.append(_save(fig, FigureCanvasAgg, clip_plot_path(out_dir, entry.id)))
        tables: list[tuple[str | None, str]] = [(None, f"{direction}: all clips ({len(result.languages)}), "
                                                       "mean and 95% interval")]
        if len(languages) > 1:
            for one in languages:
                count = sum(1 for lang in result.languages.values() if lang == one)
                tables.append((one, f"{direction}: language {one} ({count} clip{'s' * (count != 1)}), "
                                    "mean and 95% interval"))
        for language, title in tables:
            fig = _summary_figure(Figure, result, result.summary(language), title)
            written.append(_save(fig, FigureCanvasAgg, summary_plot_path(out_dir, language)))
    return written

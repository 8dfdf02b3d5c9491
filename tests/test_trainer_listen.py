"""The listening page: valid HTML, one section per clip, players that play, everything escaped and self-contained."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf
from eval_clips import FAILURE, MISSING, SAMPLE_RATE, SYSTEMS, TRICKY_TEXT, make_eval, tone

from voxflip.engine.direction import Direction
from voxflip.trainer.eval.listen import write_listening_page
from voxflip.trainer.eval.plots import clip_plot_path, summary_plot_path

VOID = {"meta", "img", "br", "hr", "input", "link", "source", "wbr"}


class Page(HTMLParser):
    """Sections, players, links and text of the page; fails on tags that do not nest."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.sections: dict[str, dict] = {}
        self.section: dict | None = None
        self.audio: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()
        assert not self.open, f"unclosed tags: {self.open}"

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in VOID:
            self.open.append(tag)
        if tag == "section":
            self.section = {"audio": [], "images": [], "text": []}
            self.sections[attrs["id"]] = self.section
        elif tag == "audio":
            self.audio.append(attrs["src"])
            if self.section is not None:
                self.section["audio"].append(attrs["src"])
        elif tag == "img":
            self.images.append(attrs["src"])
            if self.section is not None:
                self.section["images"].append(attrs["src"])

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()
        if tag == "section":
            self.section = None

    def handle_data(self, data):
        self.text.append(data)
        if self.section is not None:
            self.section["text"].append(data)


def text_of(section: dict) -> str:
    return "".join(section["text"])


@pytest.fixture(params=list(Direction), ids=lambda d: d.value)
def evaluation(request, tmp_path: Path):
    return make_eval(tmp_path / "eval", request.param)


@pytest.fixture
def page(evaluation, tmp_path: Path) -> tuple[Path, Page]:
    result, entries, clip_dir = evaluation
    index = write_listening_page(result, entries, clip_dir, tmp_path / "page")
    return index, Page(index.read_text(encoding="utf-8"))


def test_the_page_parses_with_one_section_per_clip(page, evaluation):
    index, parsed = page
    _, entries, _ = evaluation
    assert index.name == "index.html"
    assert list(parsed.sections) == [f"clip-{e.id}" for e in entries]
    for entry in entries:
        section = text_of(parsed.sections[f"clip-{entry.id}"])
        assert entry.id in section and entry.language in section and entry.text in section


def test_each_clip_has_a_labelled_player_for_input_each_system_and_reference(page, evaluation):
    _, parsed = page
    result, entries, _ = evaluation
    section = parsed.sections["clip-en-1"]
    source, target = (getattr(entries[0], side).suffix for side in (result.direction.source, result.direction.value))
    assert section["audio"] == [f"input/en-1{source}", *(f"outputs/{s}/en-1.wav" for s in SYSTEMS),
                                f"reference/en-1{target}"]
    text = text_of(section)
    for label in (f"input ({result.direction.source})", *SYSTEMS, f"reference ({result.direction.value})"):
        assert label in text
    key = "cer0.100" if result.direction is Direction.TO_SPEECH else "rca0.800"
    assert key in text.replace(" ", "")                       # the record's key score beside the player


def test_every_audio_src_is_an_existing_file_inside_the_page_folder(page):
    index, parsed = page
    folder = index.parent.resolve()
    assert len(parsed.audio) == 3 * 4 - 1
    for src in parsed.audio:
        path = (folder / unquote(src)).resolve()
        assert path.is_relative_to(folder) and path.is_file(), src
        assert sf.info(str(path)).frames > 0


def test_the_folder_plays_after_it_is_moved(page, tmp_path: Path):
    index, parsed = page
    moved = shutil.move(index.parent, tmp_path / "elsewhere" / "page")
    for src in parsed.audio:
        assert (Path(moved) / unquote(src)).is_file(), src


def test_a_missing_output_is_shown_as_not_produced_not_as_a_player(page):
    _, parsed = page
    system, entry_id = MISSING
    section = parsed.sections[f"clip-{entry_id}"]
    assert not any(src.startswith(f"outputs/{system}/") for src in section["audio"])
    assert len(section["audio"]) == 3
    assert f"not produced: {FAILURE}" in text_of(section)
    assert "not produced" not in text_of(parsed.sections["clip-en-1"])


def test_text_with_markup_characters_is_escaped(page):
    index, parsed = page
    raw = index.read_text(encoding="utf-8")
    for text in (TRICKY_TEXT, "<b>bold</b>", FAILURE, "<en-1>", "<世界>"):
        assert text not in raw
    shown = "".join(parsed.text)
    for text in (TRICKY_TEXT, FAILURE, "heard <en-1> & more", "こんにちは <世界>"):
        assert text in shown                                  # escaped, and read back as written


def test_the_summary_tables_come_first_overall_then_per_language(page):
    index, _ = page
    raw = index.read_text(encoding="utf-8")
    headings = [raw.index(h) for h in ("Summary: all clips", "Summary: en", "Summary: ja", '<section class="clip"')]
    assert headings == sorted(headings)
    assert raw.count('<table class="summary">') == 3


def test_plots_are_copied_in_and_shown_when_a_plots_folder_is_given(evaluation, tmp_path: Path):
    result, entries, clip_dir = evaluation
    plots = tmp_path / "plots"
    for path in [*(clip_plot_path(plots, e.id) for e in entries), summary_plot_path(plots)]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n stand-in")
    index = write_listening_page(result, entries, clip_dir, tmp_path / "page", plots_dir=plots)
    parsed = Page(index.read_text(encoding="utf-8"))
    folder = index.parent.resolve()
    assert len(parsed.images) == len(entries) + 1
    for entry in entries:
        assert parsed.sections[f"clip-{entry.id}"]["images"] == [f"plots/clips/{entry.id}.png"]
    for src in parsed.images:
        path = (folder / unquote(src)).resolve()
        assert path.is_relative_to(folder) and path.is_file(), src


def test_plots_inside_the_page_folder_are_linked_where_they_are(tmp_path: Path):
    result, entries, clip_dir = make_eval(tmp_path / "eval", Direction.TO_SPEECH)
    plots = tmp_path / "page" / "figures"
    png = clip_plot_path(plots, "en-1")
    png.parent.mkdir(parents=True)
    png.write_bytes(b"\x89PNG\r\n\x1a\n stand-in")
    index = write_listening_page(result, entries, clip_dir, tmp_path / "page", plots_dir=plots)
    assert Page(index.read_text(encoding="utf-8")).images == ["figures/clips/en-1.png"]
    assert not (tmp_path / "page" / "plots").exists()


def test_an_input_browsers_cannot_play_is_converted_to_wav(tmp_path: Path):
    result, entries, clip_dir = make_eval(tmp_path / "eval", Direction.TO_SPEECH)
    aiff = tmp_path / "eval" / "sung.aiff"
    sf.write(aiff, tone(220.0, 0.5), SAMPLE_RATE, format="AIFF")
    entries[0].singing = aiff
    index = write_listening_page(result, entries, clip_dir, tmp_path / "page")
    assert Page(index.read_text(encoding="utf-8")).sections["clip-en-1"]["audio"][0] == "input/en-1.wav"
    audio, rate = sf.read(tmp_path / "page" / "input" / "en-1.wav", dtype="float32")
    assert rate == SAMPLE_RATE and np.allclose(audio, tone(220.0, 0.5), atol=1e-3)


def test_a_missing_manifest_audio_is_shown_as_missing(tmp_path: Path):
    result, entries, clip_dir = make_eval(tmp_path / "eval", Direction.TO_SPEECH)
    entries[0].speech = tmp_path / "gone.wav"
    entries[1].speech = None
    index = write_listening_page(result, entries, clip_dir, tmp_path / "page")
    parsed = Page(index.read_text(encoding="utf-8"))
    assert f"missing: {tmp_path / 'gone.wav'}" in text_of(parsed.sections["clip-en-1"])
    assert "the manifest has no speech" in text_of(parsed.sections["clip-ja-1"])
    assert len(parsed.audio) == 3 * 4 - 1 - 2


def test_writing_the_page_again_copies_nothing_again(page, evaluation):
    index, _ = page
    result, entries, clip_dir = evaluation
    copies = {p: p.stat().st_mtime_ns for p in index.parent.rglob("*.*") if p.name != "index.html"}
    before = index.read_text(encoding="utf-8")
    write_listening_page(result, entries, clip_dir, index.parent)
    assert {p: p.stat().st_mtime_ns for p in index.parent.rglob("*.*") if p.name != "index.html"} == copies
    assert index.read_text(encoding="utf-8") == before


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not on PATH: the headless load is skipped")
def test_a_headless_browser_loads_the_page_with_its_players(page):
    index, parsed = page
    run = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          index.resolve().as_uri()], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HOME": str(index.parent)})
    assert run.returncode == 0, run.stderr[-2000:]
    dom = Page(run.stdout)
    assert dom.audio == parsed.audio and len(dom.sections) == len(parsed.sections)

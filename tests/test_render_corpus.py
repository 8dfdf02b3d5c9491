"""Corpus rendering (voxflip render --manifest / --input-dir): same bytes as one-by-one, resumable, on Ray too."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxflip.cli import main
from voxflip.engine.notes import Melody, Note, to_monophonic
from voxflip.engine.registry import make_converter
from voxflip.render import render_file

METHOD = "world-nodur"   # fast, and reused converters must still give every file the same bytes
NOTES = [[0.0, 0.4, 60], [0.4, 0.8, 62], [0.8, 1.5, 64]]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def clips(tmp_path_factory, example_speech) -> dict[str, Path]:
    """Four 1-1.5 s clips of the bundled speech, at three rates, one of them stereo FLAC."""
    from scipy.signal import resample_poly

    audio, rate = example_speech
    folder = tmp_path_factory.mktemp("clips")
    (folder / "sub").mkdir()
    cuts = {"a.wav": (0.0, 1.2, 16_000), "b.wav": (1.0, 2.5, 24_000), "sub/c.flac": (2.0, 3.0, 22_050),
            "sub/d.wav": (2.6, 4.0, 16_000)}
    paths = {}
    for name, (start, end, out_rate) in cuts.items():
        piece = audio[int(start * rate):int(end * rate)]
        piece = resample_poly(piece, out_rate, rate).astype(np.float32) if out_rate != rate else piece
        if name.endswith(".flac"):
            piece = np.stack([piece, 0.5 * piece], axis=1)
        sf.write(folder / name, piece, out_rate)
        paths[name] = folder / name
    (folder / "notes.txt").write_text("not audio\n")
    return paths


def _manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps({"text": "", **row}) + "\n" for row in rows))
    return path


@pytest.fixture
def manifest(tmp_path: Path, clips) -> Path:
    return _manifest(tmp_path / "m.jsonl", [{"id": f"clip/{Path(n).stem}", "singing": str(p)} for n, p in clips.items()])


def _reference(src: Path, dst: Path, **options) -> bytes:
    render_file(src, dst, make_converter(options.pop("to", "speech"), options.pop("method", METHOD), **options))
    return dst.read_bytes()


def _records(folder: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (folder / "render.jsonl").read_text().splitlines())}


def _identity(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_ino, stat.st_mtime_ns


def test_manifest_render_matches_render_file_bit_for_bit(tmp_path, manifest, clips, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(["render", "--manifest", manifest, "--out", out, "--to", "speech", "--method", METHOD,
                             "--workers", 2, "-q"], capsys)
    assert code == 0, err
    assert "4 rendered" in stdout
    records = _records(out)
    for name, src in clips.items():
        key = f"clip/{Path(name).stem}"
        produced = out / f"{key}.wav"
        assert produced.read_bytes() == _reference(src, tmp_path / "ref.wav"), name
        r = records[key]
        assert (r["status"], r["converter"], r["input"], r["output"]) == ("ok", METHOD, str(src), str(produced.resolve()))
        assert r["input_seconds"] > 0.9 and r["output_seconds"] > 0 and r["wall_seconds"] > 0
        assert r["options"]["method"] == METHOD and r["input_sha256"]


def test_folder_render_keeps_the_relative_paths_and_matches_render_file(tmp_path, clips, capsys):
    folder = next(iter(clips.values())).parent
    out = tmp_path / "out"
    code, _, err = run(["render", "--input-dir", folder, "--out", out, "--to", "speech", "--method", METHOD, "-q"], capsys)
    assert code == 0, err
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    assert made == ["a.wav", "b.wav", "sub/c.wav", "sub/d.wav"]    # notes.txt is not audio
    for name, src in clips.items():
        assert (out / name).with_suffix(".wav").read_bytes() == _reference(src, tmp_path / "ref.wav"), name
    assert set(_records(out)) == set(clips)


def test_two_workers_give_what_one_gives(tmp_path, manifest, capsys):
    outs = []
    for workers in (1, 2):
        outs.append(tmp_path / f"out{workers}")
        code, _, err = run(["render", "--manifest", manifest, "--out", outs[-1], "--to", "speech", "--method", METHOD,
                            "--workers", workers, "-q"], capsys)
        assert code == 0, err
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*.wav"))
    assert len(files) == 4
    assert all((outs[0] / f).read_bytes() == (outs[1] / f).read_bytes() for f in files)


def test_resume_skips_unchanged_files_and_renders_a_changed_one_again(tmp_path, clips, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.wav", "b.wav", "sub/d.wav"):
        (inputs / Path(name).name).write_bytes(clips[name].read_bytes())
    out = tmp_path / "out"
    argv = ["render", "--input-dir", inputs, "--out", out, "--to", "speech", "--method", METHOD, "--workers", 2, "-q"]
    assert run(argv, capsys)[0] == 0
    before = {p.name: _identity(p) for p in out.glob("*.wav")}
    first = _records(out)

    code, stdout, _ = run(argv, capsys)
    assert code == 0 and "0 rendered, 3 unchanged" in stdout
    assert {p.name: _identity(p) for p in out.glob("*.wav")} == before
    assert _records(out) == first            # the records of skipped files are kept as they were

    audio, rate = sf.read(inputs / "b.wav", dtype="float32")
    stat = os.stat(inputs / "b.wav")
    sf.write(inputs / "b.wav", 0.5 * audio, rate)      # changed content, same size
    os.utime(inputs / "b.wav", ns=(stat.st_atime_ns, stat.st_mtime_ns))   # and the old mtime: the hash tells
    assert os.stat(inputs / "b.wav").st_size == stat.st_size
    code, stdout, _ = run(argv, capsys)
    assert code == 0 and "1 rendered, 2 unchanged" in stdout
    after = {p.name: _identity(p) for p in out.glob("*.wav")}
    assert after["b.wav"] != before["b.wav"] and {k: after[k] for k in ("a.wav", "d.wav")} == {
        k: before[k] for k in ("a.wav", "d.wav")}
    assert _records(out)["b.wav"]["input_sha256"] != first["b.wav"]["input_sha256"]
    assert (out / "b.wav").read_bytes() == _reference(inputs / "b.wav", tmp_path / "ref.wav")

    (out / "a.wav").unlink()                                  # a missing output is made again
    (out / ".d.wav.0badf00d.tmp").write_bytes(b"half")       # what a killed worker leaves
    code, stdout, _ = run(argv, capsys)
    assert "1 rendered, 2 unchanged" in stdout and (out / "a.wav").is_file()
    code, stdout, _ = run([*argv, "--gain", "-3"], capsys)     # other options: everything again
    assert code == 0 and "3 rendered, 0 unchanged" in stdout
    assert not list(out.glob(".*.tmp"))


def test_a_bad_entry_does_not_stop_the_others_and_exits_1(tmp_path, clips, capsys):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 20)
    m = _manifest(tmp_path / "m.jsonl", [
        {"id": "good1", "singing": str(clips["a.wav"])},
        {"id": "missing", "singing": str(tmp_path / "nowhere.wav")},
        {"id": "corrupt", "singing": "corrupt.wav"},
        {"id": "speech_only", "speech": str(clips["b.wav"])},
        {"id": "good2", "singing": str(clips["sub/d.wav"])},
    ])
    out = tmp_path / "out"
    code, stdout, err = run(["render", "--manifest", m, "--out", out, "--to", "speech", "--method", METHOD,
                             "--workers", 2, "-q"], capsys)
    assert code == 1
    assert "2 rendered" in stdout and "3 failed" in stdout
    failed = [line for line in err.splitlines() if "failed:" in line]
    assert len(failed) == 3
    assert any("missing:" in line and "does not exist" in line for line in failed)
    assert any("corrupt:" in line and "not a recognised audio file" in line for line in failed)
    assert any("speech_only" in line and "no 'singing' recording" in line for line in failed)
    assert sorted(p.name for p in out.iterdir()) == ["good1.wav", "good2.wav", "render.jsonl"]
    records = _records(out)
    assert [records[i]["status"] for i in ("good1", "missing", "corrupt", "speech_only", "good2")] == [
        "ok", "failed", "failed", "failed", "ok"]
    assert "does not exist" in records["missing"]["error"]


def test_to_singing_sings_each_entry_on_its_notes(tmp_path, clips, capsys):
    m = _manifest(tmp_path / "m.jsonl", [
        {"id": "sung", "speech": str(clips["a.wav"]), "notes": NOTES},
        {"id": "no_notes", "speech": str(clips["b.wav"])},
    ])
    out = tmp_path / "out"
    code, _, err = run(["render", "--manifest", m, "--out", out, "--to", "singing", "--method", "world", "-q"], capsys)
    assert code == 1
    assert "entry 'no_notes' has no 'notes'" in err
    melody = Melody(to_monophonic(Note(*n) for n in NOTES), "notes")
    assert (out / "sung.wav").read_bytes() == _reference(clips["a.wav"], tmp_path / "ref.wav", to="singing",
                                                         method="world", melody=melody)


def test_a_segment_entry_renders_its_segment_only(tmp_path, clips, capsys):
    src = clips["b.wav"]
    m = _manifest(tmp_path / "m.jsonl", [{"id": "seg", "singing": str(src), "singing_start_s": 0.25,
                                          "singing_end_s": 1.0}])
    out = tmp_path / "out"
    code, _, err = run(["render", "--manifest", m, "--out", out, "--to", "speech", "--method", METHOD, "-q"], capsys)
    assert code == 0, err
    audio, rate = sf.read(src, dtype="float32")
    sf.write(tmp_path / "cut.wav", audio[rate // 4:rate], rate, subtype="FLOAT")
    assert (out / "seg.wav").read_bytes() == _reference(tmp_path / "cut.wav", tmp_path / "ref.wav")


def test_ray_local_gives_what_the_process_pool_gives(tmp_path, manifest, capsys):
    pytest.importorskip("ray", reason="ray is not installed (the ray extra)")
    outs = {}
    for how, extra in (("pool", []), ("ray", ["--ray", "local"])):
        outs[how] = tmp_path / how
        code, stdout, err = run(["render", "--manifest", manifest, "--out", outs[how], "--to", "speech",
                                 "--method", METHOD, "--workers", 2, "-q", *extra], capsys)
        assert code == 0, err
    assert "on Ray (local)" in stdout
    files = sorted(p.relative_to(outs["pool"]) for p in outs["pool"].rglob("*.wav"))
    assert len(files) == 4
    assert all((outs["pool"] / f).read_bytes() == (outs["ray"] / f).read_bytes() for f in files)
    assert set(_records(outs["ray"])) == set(_records(outs["pool"]))


@pytest.mark.parametrize("argv, match", [
    (["render", "IN", "--manifest", "M", "--out", "D", "--to", "speech"], "got IN and --manifest"),
    (["render", "--to", "speech", "--out", "D"], "got none"),
    (["render", "--manifest", "M", "--to", "speech"], "needs --out DIR"),
    (["render", "--manifest", "M", "-o", "x.wav", "--to", "speech"], "give --out DIR instead of -o"),
    (["render", "IN", "-o", "x.wav", "--to", "speech", "--ray", "local"], "--ray go with --manifest"),
    (["render", "IN", "--to", "speech"], "needs -o OUT"),
    (["render", "--input-dir", "IN_DIR", "--out", "D", "--to", "singing"], "--melody is needed"),
    (["render", "--manifest", "M", "--out", "D", "--to", "singing"], "none of the 1 entries"),
    (["render", "--input-dir", "EMPTY", "--out", "D", "--to", "speech"], "holds no audio file"),
])
def test_bad_arguments_give_one_line_and_exit_2(tmp_path, clips, capsys, argv, match):
    (tmp_path / "empty").mkdir()
    subs = {"IN": str(clips["a.wav"]), "M": str(_manifest(tmp_path / "m.jsonl", [{"id": "x", "speech": "a.wav"}])),
            "D": str(tmp_path / "out"), "IN_DIR": str(clips["a.wav"].parent), "EMPTY": str(tmp_path / "empty")}
    code, _, err = run([subs.get(a, a) for a in argv], capsys)
    assert code == 2
    assert match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.wav"))


def test_corpus_render_never_imports_torch(tmp_path, manifest):
    from helpers import cli_heavy_imports

    assert cli_heavy_imports(["render", "--manifest", str(manifest), "--out", str(tmp_path / "o"), "--to", "speech",
                              "--method", METHOD, "--workers", "2", "-q"]) == []


def test_bench_offline_reports_each_converter_against_the_pyworld_baseline(capsys):
    code, stdout, err = run(["bench", "--offline", "--converters", METHOD, "--seconds", 2, "--json"], capsys)
    assert code == 0, err
    rows = json.loads(stdout)
    assert [r["converter"] for r in rows] == ["pyworld", METHOD]
    assert rows[0]["vs_baseline"] == 1.0 and all(r["times_real_time"] > 0 and r["seconds"] == 2.0 for r in rows)
    if len(os.sched_getaffinity(0)) >= 2:
        code, stdout, err = run(["bench", "--offline", "--cores", 2, "--converters", METHOD, "--seconds", 2, "--json"],
                                capsys)
        assert code == 0, err
        assert [r["cores"] for r in json.loads(stdout)] == [1, 2]
    code, stdout, err = run(["bench", "--offline", "--corpus", "--converters", METHOD, "--files", 2, "--seconds", 2,
                             "--json"], capsys)
    assert code == 0, err
    assert [(r["workers"], r["files"]) for r in json.loads(stdout)] == [(1, 2), (2, 2)]

"""Bounded memory for melodies and the singing tail (issue 15): renders run in a child process and
its peak RSS is measured (the child's own ``VmHWM``, written as it exits: ``ru_maxrss`` of a child
would include the size of the pytest process it was forked from).

The bounds, and why:

* ``ERROR_BOUND_MB`` = 200 MB for a melody that is refused: the interpreter with voxflip imported
  peaks at about 45 MB, so a refusal that reads no more than it needs stays far below. Before, each
  of these probes grew to 5-6 GB (or was OOM-killed) before failing.
* ``RENDER_BOUND_MB`` = 300 MB for a render whose melody is much longer than its 4 s speech: the
  singing tail is made and written a piece at a time (measured: 135 MB for 120 s with world,
  60 MB with psola). A tail made at once grows by about 30 MB per second of melody (786 MB for
  30 s, 3.3 GB for 120 s, before), so the bound fails as soon as the tail is held whole again.

Every child also runs under an address-space limit (``CHILD_LIMIT_BYTES``), so a regression fails
the test instead of eating the machine.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from voxflip.engine.converters.world_to_singing import TAIL_PIECE_FRAMES
from voxflip.engine.errors import OptionError
from voxflip.engine.melody import MAX_MELODY_BYTES, MAX_NOTES, Melody, Note, load_melody
from voxflip.engine.registry import make_converter
from voxflip.streaming.streamer import HOLD_BACK_SAMPLES, Streamer

ERROR_BOUND_MB = 200
RENDER_BOUND_MB = 300
CHILD_LIMIT_BYTES = 6 * 1024**3
SPEECH = Path(str(files("voxflip") / "data" / "arctic_a0007.wav"))   # 4.0 s at 16 kHz
TUNE = Path(str(files("voxflip") / "data" / "tune.csv"))


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_LIMIT_BYTES, CHILD_LIMIT_BYTES))


#: the child: voxflip's own entry point, and its high-water RSS (since exec) written to argv[1] at exit
_CHILD = """
import atexit, sys
out = sys.argv[1]
def _peak():
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(out, "w") as f:
        f.write(kb)
atexit.register(_peak)
sys.argv = ["voxflip", *sys.argv[2:]]
from voxflip.cli import main
sys.exit(main())
"""


def run_voxflip(tmp_path: Path, *args: str, timeout_s: float = 120.0) -> tuple[int, str, float]:
    """Run ``voxflip ARGS`` in a child process; return its exit code, stderr and peak RSS in MB."""
    err_path, peak_path = tmp_path / "stderr.txt", tmp_path / "peak_kb.txt"
    peak_path.unlink(missing_ok=True)
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(peak_path), *args], stdout=subprocess.DEVNULL,
                                stderr=err, preexec_fn=_limit_child)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise TimeoutError(f"voxflip {' '.join(args)} ran past {timeout_s} s") from None
    assert peak_path.exists(), f"the child wrote no peak RSS (exit {code}): {err_path.read_text(errors='replace')}"
    return code, err_path.read_text(errors="replace"), int(peak_path.read_text()) / 1024.0


def write_notes(path: Path, span_s: float, note_s: float = 0.45, gap_s: float = 0.05) -> Path:
    lines = ["start_s,end_s,midi_note"]
    t, k = 0.25, 0
    while t + note_s <= span_s:
        lines.append(f"{t:.4f},{t + note_s:.4f},{60 + (k * 2) % 12}")
        t, k = t + note_s + gap_s, k + 1
    path.write_text("\n".join(lines) + "\n")
    return path


def render(tmp_path: Path, melody: Path, *extra: str, method: str = "world",
           timeout_s: float = 120.0) -> tuple[int, str, float]:
    return run_voxflip(tmp_path, "render", str(SPEECH), "-o", str(tmp_path / "out.wav"), "--to", "singing",
                       "--melody", str(melody), "--method", method, "-q", *extra, timeout_s=timeout_s)


def assert_refused(code: int, stderr: str, peak_mb: float, *parts: str) -> None:
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("voxflip: error: "), stderr
    for part in parts:
        assert part in lines[0], lines[0]
    assert peak_mb < ERROR_BOUND_MB, f"peak RSS {peak_mb:.0f} MB refusing a melody (bound {ERROR_BOUND_MB} MB)"


# -- the singing tail: long melodies on short speech ------------------------------------------------
@pytest.mark.parametrize("method, span_s", [("world", 30.0), ("psola", 120.0)])
def test_long_melody_on_short_speech_renders_in_bounded_memory(tmp_path, method, span_s):
    melody = write_notes(tmp_path / "long.csv", span_s)
    code, stderr, peak_mb = render(tmp_path, melody, method=method)
    assert code == 0, stderr
    assert peak_mb < RENDER_BOUND_MB, f"{method}: peak RSS {peak_mb:.0f} MB for {span_s:g} s (bound {RENDER_BOUND_MB})"
    info = sf.info(str(tmp_path / "out.wav"))
    assert abs(info.duration - load_melody(melody).span_s) < 0.05, "the output is the melody's length"


@pytest.mark.slow
@pytest.mark.parametrize("method, extra", [("world", ()), ("psola", ()), ("psola", ("--fx", "hall"))])
def test_an_hour_of_melody_on_short_speech_renders_in_bounded_memory(tmp_path, method, extra):
    """(With an effect chain, the tail goes through Chain.flush_chunks: bounded too.)"""
    melody = write_notes(tmp_path / "hour.csv", 3600.0, note_s=1.8, gap_s=0.2)
    code, stderr, peak_mb = render(tmp_path, melody, *extra, method=method, timeout_s=1200)
    assert code == 0, stderr
    assert peak_mb < RENDER_BOUND_MB, f"{method}: peak RSS {peak_mb:.0f} MB for 3600 s (bound {RENDER_BOUND_MB})"
    over = sf.info(str(tmp_path / "out.wav")).duration - load_melody(melody).span_s
    assert -0.05 < over < (5.05 if extra else 0.05), "the melody's length (plus the reverb's tail, at most 5 s)"


@pytest.mark.parametrize("method", ["psola", pytest.param("world", marks=pytest.mark.slow)])
def test_a_minute_of_speech_on_two_minutes_of_melody_renders_in_bounded_memory(tmp_path, method):
    """The issue's probe: 60 s of speech on a 118 s melody peaked at 864 MB (psola's whole-input buffers)."""
    audio, rate = sf.read(str(SPEECH), dtype="float32")
    long_speech = tmp_path / "minute.wav"
    sf.write(long_speech, np.tile(audio, 15)[: 60 * rate], rate)
    melody = write_notes(tmp_path / "long.csv", 118.0)
    code, stderr, peak_mb = run_voxflip(tmp_path, "render", str(long_speech), "-o", str(tmp_path / "out.wav"), "--to",
                                        "singing", "--melody", str(melody), "--method", method, "-q", timeout_s=300)
    assert code == 0, stderr
    assert peak_mb < RENDER_BOUND_MB, f"{method}: peak RSS {peak_mb:.0f} MB (bound {RENDER_BOUND_MB})"
    assert sf.info(str(tmp_path / "out.wav")).duration >= 117.0


# -- melodies that ask for too much: refused with one line, before anything per frame -----------------
def write_midi(path: Path, ticks_per_beat: int, tempo_us: int, note_ticks: int) -> Path:
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo_us, time=0),
                            mido.Message("note_on", note=60, velocity=90, time=0),
                            mido.Message("note_off", note=60, velocity=0, time=note_ticks)])
    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    midi.save(str(path))
    return path


def write_musicxml(path: Path, divisions: str) -> Path:
    path.write_text(
        '<?xml version="1.0"?><score-partwise><part-list><score-part id="P1"/></part-list><part id="P1">'
        f'<measure number="1"><attributes><divisions>{divisions}</divisions></attributes>'
        "<note><pitch><step>C</step><octave>4</octave></pitch><duration>1</duration></note>"
        "</measure></part></score-partwise>"
    )
    return path


SPAN_PROBES = {
    "csv_end_1e6": lambda p: (p / "far.csv").write_text("start_s,end_s,midi_note\n0,1,60\n1,1000000,62\n") and p / "far.csv",
    "slow_tempo_midi": lambda p: write_midi(p / "slow.mid", 1, 16_777_215, 100_000),     # 16.7 s a beat
    "midi_2e28_ticks": lambda p: write_midi(p / "long.mid", 480, 500_000, 2**28 - 1),   # the longest delta
    "musicxml_divisions_1e-12": lambda p: write_musicxml(p / "tiny.musicxml", "1e-12"),
}


@pytest.mark.parametrize("probe", list(SPAN_PROBES))
def test_melody_past_max_output_is_refused_in_bounded_memory(tmp_path, probe):
    melody = SPAN_PROBES[probe](tmp_path)
    code, stderr, peak_mb = render(tmp_path, melody)
    assert_refused(code, stderr, peak_mb, "--max-output-s=3600.0", "ends at", "raise it to at least")
    assert not (tmp_path / "out.wav").exists()


def test_max_output_s_raises_the_limit_and_lowers_it(tmp_path):
    melody = write_notes(tmp_path / "mel.csv", 20.0)
    code, stderr, peak_mb = render(tmp_path, melody, "--max-output-s", "10")
    assert_refused(code, stderr, peak_mb, "--max-output-s=10.0", "ends at 19.7 s", "raise it to at least 20")
    code, stderr, _ = render(tmp_path, melody, "--max-output-s", "19.7")
    assert code == 0, stderr


def test_voxflip_live_refuses_a_melody_past_max_output_s(tmp_path):
    melody = write_notes(tmp_path / "mel.csv", 20.0)
    code, stderr, peak_mb = run_voxflip(tmp_path, "live", "--to", "singing", "--melody", str(melody), "--max-output-s",
                                        "10", "--input-file", str(SPEECH), "--output-file", str(tmp_path / "o.wav"),
                                        "--fast", "-q")
    assert_refused(code, stderr, peak_mb, "--max-output-s=10.0", "ends at 19.7 s")
    assert not (tmp_path / "o.wav").exists()


@pytest.mark.parametrize("method", ["flow", "world-nodur"])
def test_a_chunk_of_a_billion_ms_is_refused_before_allocating(tmp_path, method):
    """--chunk-ms 1e9 once made flow allocate 477 GiB; the chunk grid refuses it first."""
    code, stderr, peak_mb = run_voxflip(tmp_path, "render", str(SPEECH), "-o", str(tmp_path / "o.wav"), "--to",
                                        "speech", "--method", method, "--chunk-ms", "1e9", "-q")
    assert_refused(code, stderr, peak_mb, "--chunk-ms=1000000000.0")


def test_tempo_that_runs_away_is_refused(tmp_path):
    code, stderr, peak_mb = render(tmp_path, TUNE, "--tempo", "1e-9")
    assert_refused(code, stderr, peak_mb, "--tempo=1e-09", "0.1..10")


def test_melody_of_200k_notes_is_refused_in_bounded_memory(tmp_path):
    path = tmp_path / "many.csv"
    path.write_text("start_s,end_s,midi_note\n" + "".join(f"{i * 0.01:.2f},{i * 0.01 + 0.01:.2f},60\n"
                                                          for i in range(200_000)))
    code, stderr, peak_mb = render(tmp_path, path)
    assert_refused(code, stderr, peak_mb, f"more than {MAX_NOTES:,} notes")


@pytest.mark.parametrize("entry_mib", [256, pytest.param(3 * 1024, marks=pytest.mark.slow)])
def test_mxl_zip_bomb_is_refused_in_bounded_memory(tmp_path, entry_mib):
    path = tmp_path / "bomb.mxl"
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("META-INF/container.xml",
                         '<container><rootfiles><rootfile full-path="score.xml"/></rootfiles></container>')
        with archive.open("score.xml", "w", force_zip64=True) as entry:
            for _ in range(entry_mib):
                entry.write(zeros)
    assert path.stat().st_size < entry_mib * 1024 * 1024 / 100, "the archive is a bomb: small, huge inside"
    code, stderr, peak_mb = render(tmp_path, path)
    assert_refused(code, stderr, peak_mb, "score.xml", f"more than the {MAX_MELODY_BYTES >> 20} MiB")


# -- the pieces, in process ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    audio, rate = sf.read(str(SPEECH), dtype="float32")
    return audio, rate


def long_melody(span_s: float) -> Melody:
    return Melody(tuple(Note(0.25 + 0.5 * k, 0.7 + 0.5 * k, 60.0 + k % 5) for k in range(int((span_s - 0.7) / 0.5))),
                  "test")


@pytest.mark.parametrize("method", ["world", "psola"])
def test_flush_chunks_come_in_bounded_pieces_that_make_up_flush(speech, method):
    audio, rate = speech
    outputs = []
    for chunked in (False, True):
        streamer = Streamer(make_converter("singing", method, melody=long_melody(12.0)), rate, 24_000)
        head = streamer.process(audio)
        if chunked:
            pieces = list(streamer.flush_chunks())
            assert len(pieces) > 3
            bound = (TAIL_PIECE_FRAMES + 1) * 120 + HOLD_BACK_SAMPLES + 4 * 480
            assert max(p.shape[0] for p in pieces) <= bound, [p.shape[0] for p in pieces]
            tail = np.concatenate(pieces)
            assert list(streamer.flush_chunks()) == [] and streamer.flush().shape == (0,)
        else:
            tail = streamer.flush()
        outputs.append(np.concatenate([head, tail]))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_an_effect_chain_flushes_the_tail_in_pieces_that_make_up_flush(speech):
    """Chain.flush_chunks passes the converter's tail through the post-effects piece by piece."""
    from voxflip.streaming.presets import load_preset

    audio, rate = speech
    outputs = []
    for chunked in (False, True):
        chain = load_preset("hall", converter=make_converter("singing", "psola", melody=long_melody(12.0)))
        chain.sample_rate = rate
        head = chain.process(audio)
        if chunked:
            pieces = list(chain.flush_chunks())
            assert len(pieces) > 3 and max(p.shape[-1] for p in pieces) < 4 * rate
            tail = np.concatenate(pieces, axis=-1)
        else:
            tail = chain.flush()
        outputs.append(np.concatenate([head, tail], axis=-1))
    assert outputs[0].shape == outputs[1].shape
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6)


def test_psola_finish_chunks_equal_one_render(speech):
    """The PSOLA tail in pieces is bit-identical to the synthesiser rendering every frame at once."""
    audio, rate = speech
    outputs = []
    for chunked in (False, True):
        converter = make_converter("singing", "psola", melody=long_melody(8.0))
        streamer = Streamer(converter, rate, converter.sample_rate)
        streamer.process(audio)
        if not chunked:
            converter.tail_piece_frames = 10**9   # the whole tail in one piece: one render, as before
        outputs.append(np.concatenate(list(streamer.flush_chunks())))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_max_output_s_is_a_singing_option_only():
    with pytest.raises(OptionError, match="max_output_s=10 does not apply to psola-tsm"):
        make_converter("speech", "psola-tsm", max_output_s=10)
    make_converter("singing", "world", live_notes=True, max_output_s=10)
    with pytest.raises(OptionError, match="max_output_s=10.0 s is the longest singing allowed, but melody test ends at"):
        make_converter("singing", "psola", melody=long_melody(20.0), max_output_s=10.0)
    with pytest.raises(OptionError, match=r"max_output_s=-1.0 must be a number of seconds > 0"):
        make_converter("singing", "world", melody=str(TUNE), max_output_s=-1.0)


def test_psola_refuses_an_alignment_too_large_before_making_it(speech):
    audio, rate = speech   # 14 syllables; 6,500 notes of 0.3 s would take about 45 million steps
    melody = Melody(tuple(Note(0.3 * k, 0.3 * k + 0.25, 60.0) for k in range(6500)), "many")
    streamer = Streamer(make_converter("singing", "psola", melody=melody), rate)
    streamer.process(audio)
    with pytest.raises(OptionError, match=r"melody='many' has 6500 notes for the speech's \d+ syllables: psola"):
        streamer.flush()

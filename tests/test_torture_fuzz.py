"""Fuzzing the file readers: every byte string is read, or refused with one EngineError line.

The seeds are real files of every format the readers take (made here: WAV, FLAC, OGG, AIFF
through libsndfile; MIDI through mido; MusicXML and its zipped .mxl; note lists in CSV and
JSON). Hypothesis mutates them (bytes overwritten, runs inserted or deleted, the file cut
short) and the test asserts the contract of docs/security.md: the reader returns finite
audio / a valid melody, or raises an :class:`~voxflip.engine.errors.EngineError` whose message
is one line. Any other exception, a hang or a runaway allocation fails.

The default run tries a few hundred files per format with a fixed seed (derandomized, so CI
sees the same files every time); ``pytest -m slow`` tries thousands with fresh randomness.
"""

from __future__ import annotations

import io
import json
import resource
import zipfile
from collections.abc import Callable
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxflip.engine.audio_io import AudioReader
from voxflip.engine.errors import EngineError
from voxflip.engine.melody import Melody, load_melody

FAST = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
LONG = settings(max_examples=3000, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

#: a reader may use this much address space on top of the interpreter's (a mutated header that asks
#: for gigabytes must be refused, not allocated)
MEMORY_HEADROOM = 1 << 30


# -- seeds --------------------------------------------------------------------------------------------

def _audio_seed(fmt: str, subtype: str | None) -> bytes:
    rate = 16_000
    t = np.arange(rate // 10) / rate
    audio = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, audio.astype(np.float32), rate, format=fmt, subtype=subtype)
    return buf.getvalue()


AUDIO_SEEDS = {
    ".wav": _audio_seed("WAV", "PCM_16"),
    ".flac": _audio_seed("FLAC", "PCM_16"),
    ".ogg": _audio_seed("OGG", "VORBIS"),
    ".aiff": _audio_seed("AIFF", "PCM_24"),
}
AUDIO_SEEDS[".wav-float"] = _audio_seed("WAV", "FLOAT")


def _midi_seed() -> bytes:
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500_000, time=0))
    for i, note in enumerate((60, 62, 64, 65)):
        track.append(mido.Message("note_on", note=note, velocity=90, time=0 if i == 0 else 10))
        track.append(mido.Message("note_off", note=note, velocity=0, time=470))
    buf = io.BytesIO()
    midi.save(file=buf)
    return buf.getvalue()


MUSICXML_SEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<score-partwise version="3.1"><part-list><score-part id="P1"><part-name>Voice</part-name></score-part></part-list>
<part id="P1"><measure number="1"><attributes><divisions>2</divisions><time><beats>4</beats><beat-type>4</beat-type></time>
</attributes><sound tempo="96"/>
<note><pitch><step>C</step><octave>4</octave></pitch><duration>2</duration></note>
<note><pitch><step>E</step><alter>-1</alter><octave>4</octave></pitch><duration>2</duration><tie type="start"/></note>
<note><pitch><step>E</step><alter>-1</alter><octave>4</octave></pitch><duration>2</duration><tie type="stop"/></note>
<note><rest/><duration>2</duration></note>
</measure></part></score-partwise>
"""


def _mxl_seed() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/container.xml",
                   '<?xml version="1.0"?><container><rootfiles><rootfile full-path="song.musicxml"/></rootfiles></container>')
        z.writestr("song.musicxml", MUSICXML_SEED)
    return buf.getvalue()


CSV_SEED = b"start_s,end_s,midi_note,velocity\n0.0,0.5,60,100\n0.5,1.0,62,90\n1.25,2.0,64.5,80\n"
JSON_SEED = json.dumps({"notes": [{"start_s": 0.0, "end_s": 0.5, "midi_note": 60},
                                  {"start_s": 0.6, "end_s": 1.1, "midi_note": 67, "velocity": 70}]}).encode()

MELODY_SEEDS = {".mid": _midi_seed(), ".musicxml": MUSICXML_SEED, ".mxl": _mxl_seed(), ".csv": CSV_SEED,
                ".json": JSON_SEED}


# -- mutations ----------------------------------------------------------------------------------------

@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """The seed with a few random edits: overwritten bytes, inserted or deleted runs, a cut."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["overwrite", "overwrite", "insert", "delete", "extreme", "cut"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "overwrite":
            data[at:at + 1] = bytes([draw(st.integers(0, 255))])
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif kind == "extreme":   # the values that break size fields: 0, all ones, a sign bit
            data[at:at + 4] = draw(st.sampled_from([b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f",
                                                    b"\x00\x00\x00\x80"]))
        else:
            del data[at:]
    return bytes(data)


def _limited_memory(call: Callable[[], object]) -> object:
    """Run ``call`` with the address space capped MEMORY_HEADROOM above what the process holds now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    limit = used + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        return call()
    except MemoryError as exc:
        raise AssertionError(f"a reader tried to allocate more than {MEMORY_HEADROOM >> 20} MiB") from exc
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _assert_one_line(exc: EngineError) -> None:
    message = str(exc)
    assert message and "\n" not in message, f"not one line: {message!r}"


def _read_audio_file(path: Path) -> None:
    try:
        with AudioReader(path, block_frames=4096) as reader:
            total = 0
            for block in reader.blocks():
                assert block.dtype == np.float32 and block.ndim == 1
                assert np.isfinite(block).all()
                total += block.shape[0]
                assert total <= reader.info.frames + 4096
    except EngineError as exc:
        _assert_one_line(exc)


def _read_melody_file(path: Path) -> None:
    try:
        melody = load_melody(path)
    except EngineError as exc:
        _assert_one_line(exc)
        return
    assert isinstance(melody, Melody) and melody.notes
    for note in melody.notes:
        assert np.isfinite([note.start_s, note.end_s, note.midi_note]).all()
        assert note.end_s > note.start_s >= 0.0


def _audio_case(tmp_path: Path, suffix: str, data: bytes) -> None:
    path = tmp_path / f"fuzz{suffix.split('-')[0]}"
    path.write_bytes(data)
    _limited_memory(lambda: _read_audio_file(path))


def _melody_case(tmp_path: Path, suffix: str, data: bytes) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    _limited_memory(lambda: _read_melody_file(path))


# -- the tests ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", list(AUDIO_SEEDS))
def test_seeds_read(tmp_path: Path, suffix: str) -> None:
    """The unmutated seeds are valid files (else the fuzzing below starts from nothing)."""
    path = tmp_path / f"seed{suffix.split('-')[0]}"
    path.write_bytes(AUDIO_SEEDS[suffix])
    with AudioReader(path) as reader:
        assert sum(b.shape[0] for b in reader.blocks()) == 1600


@pytest.mark.parametrize("suffix", list(MELODY_SEEDS))
def test_melody_seeds_read(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"seed{suffix}"
    path.write_bytes(MELODY_SEEDS[suffix])
    assert len(load_melody(path).notes) >= 2


@pytest.mark.parametrize("suffix", list(AUDIO_SEEDS))
def test_audio_reader_fuzz(tmp_path: Path, suffix: str) -> None:
    @FAST
    @given(data=mutated(AUDIO_SEEDS[suffix]))
    def run(data: bytes) -> None:
        _audio_case(tmp_path, suffix, data)

    run()


@pytest.mark.parametrize("suffix", list(MELODY_SEEDS))
def test_melody_reader_fuzz(tmp_path: Path, suffix: str) -> None:
    @FAST
    @given(data=mutated(MELODY_SEEDS[suffix]))
    def run(data: bytes) -> None:
        _melody_case(tmp_path, suffix, data)

    run()


@pytest.mark.parametrize("suffix", [".wav", ".mid", ".musicxml", ".csv", ".json"])
def test_random_bytes_with_each_extension(tmp_path: Path, suffix: str) -> None:
    """Not a mutated file at all: arbitrary bytes under a trusted-looking name."""
    read = _audio_case if suffix == ".wav" else _melody_case

    @FAST
    @given(data=st.binary(max_size=2048))
    def run(data: bytes) -> None:
        read(tmp_path, suffix, data)

    run()


@pytest.mark.slow
@pytest.mark.parametrize("suffix", list(AUDIO_SEEDS) + list(MELODY_SEEDS))
def test_readers_fuzz_long(tmp_path: Path, suffix: str) -> None:
    seeds = {**AUDIO_SEEDS, **MELODY_SEEDS}
    read = _audio_case if suffix in AUDIO_SEEDS else _melody_case

    @LONG
    @given(data=mutated(seeds[suffix]))
    def run(data: bytes) -> None:
        read(tmp_path, suffix, data)

    run()


def test_a_midi_header_that_claims_a_gigabyte_is_refused_without_allocating_it(tmp_path: Path) -> None:
    """Found by the fuzzer: a header chunk length of 0x41000000 made the MIDI reader ask for 1 GiB."""
    data = bytearray(MELODY_SEEDS[".mid"])
    data[4:8] = b"A\x00\x00\x00"
    _melody_case(tmp_path, ".mid", bytes(data))
    with pytest.raises(EngineError, match="not a readable MIDI file"):
        load_melody(tmp_path / "fuzz.mid")


def test_an_aiff_sample_rate_too_large_for_a_float_is_refused(tmp_path: Path) -> None:
    """Found by the fuzzer: an 80-bit extended rate with a huge exponent overflowed math.ldexp."""
    data = bytearray(AUDIO_SEEDS[".aiff"])
    rate_at = data.index(b"COMM") + 16        # chunk id, size, channels, frames, bits: then the rate
    data[rate_at:rate_at + 2] = b"\x7f\xfe"
    _audio_case(tmp_path, ".aiff", bytes(data))
    with pytest.raises(EngineError):
        with AudioReader(tmp_path / "fuzz.aiff") as reader:
            list(reader.blocks())


def test_an_aiff_of_zero_bit_samples_is_refused(tmp_path: Path) -> None:
    """Found by the fuzzer: a COMM chunk with 0 bits per sample divided by zero in the truncation check."""
    data = bytearray(AUDIO_SEEDS[".aiff"])
    bits_at = data.index(b"COMM") + 14
    data[bits_at:bits_at + 2] = b"\x00\x00"
    _audio_case(tmp_path, ".aiff", bytes(data))


def test_an_mxl_whose_member_name_is_not_the_utf8_it_claims_is_refused(tmp_path: Path) -> None:
    """Found by the fuzzer: zipfile raised UnicodeDecodeError for a name flagged UTF-8."""
    data = bytearray(MELODY_SEEDS[".mxl"])
    data[6:8] = b"\xff\xff"                    # every general-purpose flag, UTF-8 names included
    at = data.index(b"META-INF/container.xml") + 1
    data[at] = 0xB3                            # not UTF-8
    _melody_case(tmp_path, ".mxl", bytes(data))

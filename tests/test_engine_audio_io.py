"""Tests of engine.audio_io: formats, block reading, one-line input errors, atomic writes."""

from __future__ import annotations

import gc
import os
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxflip.engine.audio_io import (
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    AudioInfo,
    AudioReader,
    probe,
    read_audio,
)
from voxflip.engine.audio_write import WRITE_EXTENSIONS, AtomicAudioWriter, write_audio
from voxflip.engine.errors import AudioInputError, AudioOutputError

SF_FORMAT = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".aiff": "AIFF", ".aif": "AIFF", ".mp3": "MP3"}
LOSSY = {".ogg", ".mp3"}
CHUNK_SIZES = [1, 7, 64, 65, 480, 4096, 1_000_000]  # 1, a prime, 2^n and 2^n+1, larger than the signal
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def tone(frames: int, channels: int, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    """``(channels, frames)`` float32 sines, a different frequency per channel."""
    t = np.arange(frames) / sample_rate
    freqs = 220.0 * (1 + np.arange(channels))[:, None]
    return (amplitude * np.sin(2 * np.pi * freqs * t)).astype(np.float32)


def save(path: Path, audio: np.ndarray, sample_rate: int, subtype: str | None = None) -> Path:
    """Write a fixture with soundfile itself; ``audio`` is ``(channels, frames)``."""
    sf.write(path, audio.T, sample_rate, subtype=subtype, format=SF_FORMAT.get(path.suffix, "WAV"))
    return path


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- writing and reading back


@pytest.mark.parametrize("ext", WRITE_EXTENSIONS)
def test_write_audio_round_trips_each_extension(tmp_path, ext):
    audio = tone(8_000, 2, 44_100)
    out = write_audio(tmp_path / f"out{ext}", audio, 44_100)
    assert out == tmp_path / f"out{ext}"
    assert files_in(tmp_path) == [f"out{ext}"], "no temporary file may remain"
    info = probe(out)
    assert (info.sample_rate, info.channels, info.frames, info.format) == (44_100, 2, 8_000, SF_FORMAT[ext])
    back, sample_rate = read_audio(out, mono=False)
    assert sample_rate == 44_100 and back.shape == audio.shape and back.dtype == np.float32
    if ext in LOSSY:
        rms_ratio = np.sqrt(np.mean(back**2)) / np.sqrt(np.mean(audio**2))
        assert 0.8 < rms_ratio < 1.2, f"{ext}: rms ratio {rms_ratio}"
    else:
        np.testing.assert_allclose(back, audio, atol=1.5 / 32768)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("sample_rate", [8_000, 44_100, 192_000])
@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg", ".aiff", ".mp3"])
def test_reads_each_format_rate_and_channel_count(tmp_path, ext, sample_rate, channels):
    if ext == ".mp3" and (sample_rate > 48_000 or channels > 2):
        pytest.skip("MP3 holds at most 48 kHz and 2 channels")
    audio = tone(sample_rate // 8, channels, sample_rate)
    path = save(tmp_path / f"in{ext}", audio, sample_rate)

    whole, got_rate = read_audio(path, mono=False)
    assert got_rate == sample_rate and whole.shape == audio.shape and whole.dtype == np.float32
    if ext not in LOSSY:
        np.testing.assert_allclose(whole, audio, atol=1.5 / 32768)

    with AudioReader(path, mono=True) as reader:
        assert reader.downmixed == (channels > 1)
        assert reader.info == AudioInfo(
            path, sample_rate, channels, audio.shape[1], reader.info.format, reader.info.subtype
        )
        mono = np.concatenate(list(reader.blocks()))
    assert mono.shape == (audio.shape[1],) and mono.dtype == np.float32
    np.testing.assert_allclose(mono, whole.mean(axis=0), atol=1e-6)


def test_probe_reports_duration(tmp_path):
    path = save(tmp_path / "a.flac", tone(12_000, 2, 8_000), 8_000)
    info = probe(path)
    assert info == AudioInfo(path, 8_000, 2, 12_000, "FLAC", "PCM_16")
    assert info.duration_s == pytest.approx(1.5)


def test_accepts_wav_whose_data_size_was_left_open(tmp_path):
    path = save(tmp_path / "streamed.wav", tone(800, 1, 8_000), 8_000)
    raw = bytearray(path.read_bytes())
    at = raw.find(b"data")
    raw[at + 4 : at + 8] = struct.pack("<I", 0xFFFFFFFF)  # what streaming writers leave
    path.write_bytes(bytes(raw))
    assert read_audio(path)[0].shape == (800,)


# --------------------------------------------------------------------------- block reading


@pytest.mark.parametrize("mono", [True, False])
@pytest.mark.parametrize("block_frames", CHUNK_SIZES)
def test_blocks_concatenate_to_whole_file(tmp_path, block_frames, mono):
    path = save(tmp_path / "b.flac", tone(2_000, 3, 8_000), 8_000)
    whole, _ = read_audio(path, mono=mono)
    with AudioReader(path, block_frames=block_frames, mono=mono) as reader:
        blocks = list(reader.blocks())
        assert reader.frames_read == 2_000
    assert all(b.shape[-1] <= block_frames for b in blocks), f"block_frames={block_frames}"
    np.testing.assert_array_equal(np.concatenate(blocks, axis=-1), whole)


def test_long_file_in_small_blocks_holds_one_block_at_a_time(tmp_path):
    sample_rate, frames, block_frames = 16_000, 16_000 * 30, 4_096
    path = save(tmp_path / "long.wav", tone(frames, 1, sample_rate, amplitude=0.1), sample_rate)
    sizes = []
    tracemalloc.start()
    try:
        with AudioReader(path, block_frames=block_frames) as reader:
            for block in reader.blocks():
                sizes.append(block.shape[0])
                del block
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(sizes) == frames
    assert all(n == block_frames for n in sizes[:-1]) and 0 < sizes[-1] <= block_frames
    block_bytes, whole_file_bytes = block_frames * 4, frames * 4
    assert peak_bytes < 8 * block_bytes, (
        f"peak {peak_bytes} bytes for {block_bytes}-byte blocks of a {whole_file_bytes}-byte file"
    )


def test_blocks_can_be_read_again_from_the_start(tmp_path):
    path = save(tmp_path / "r.wav", tone(1_000, 1, 8_000), 8_000)
    with AudioReader(path, block_frames=300) as reader:
        first = np.concatenate(list(reader.blocks()))
        second = np.concatenate(list(reader.blocks()))
    np.testing.assert_array_equal(first, second)


def test_unseekable_format_reads_once(tmp_path):
    path = save(tmp_path / "gsm.wav", tone(1_600, 1, 8_000), 8_000, subtype="GSM610")
    assert read_audio(path)[0].shape == (probe(path).frames,)  # GSM rounds up to whole 320-sample blocks
    with AudioReader(path) as reader:
        list(reader.blocks())
        with pytest.raises(ValueError, match="cannot be read twice"):
            list(reader.blocks())


@pytest.mark.parametrize("block_frames", [0, -5, 2.5, True])
def test_reader_rejects_bad_block_frames(tmp_path, block_frames):
    path = save(tmp_path / "r.wav", tone(100, 1, 8_000), 8_000)
    with pytest.raises(ValueError, match="block_frames"):
        AudioReader(path, block_frames=block_frames)


# --------------------------------------------------------------------------- bad input: one line each


def _truncated(ext: str, frames: int, sample_rate: int = 8_000) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        noise = np.random.default_rng(0).uniform(-0.5, 0.5, (1, frames)).astype(np.float32)
        path = save(folder / f"cut{ext}", noise, sample_rate)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path

    return make


def _with_value(value: float, channels: int = 1) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        audio = tone(4_000, channels, 8_000)
        audio[channels - 1, 1234] = value
        return save(folder / "float.wav", audio, 8_000, subtype="FLOAT")

    return make


def _text(folder: Path) -> Path:
    path = folder / "notes.wav"
    path.write_text("this is not audio\n" * 50)
    return path


def _garbage(folder: Path) -> Path:
    path = folder / "noise.flac"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 5_000, dtype=np.uint8).tobytes())
    return path


def _empty(folder: Path) -> Path:
    path = folder / "empty.mp3"
    path.touch()
    return path


BAD_INPUTS = {
    "missing": (lambda folder: folder / "nope.wav", "does not exist"),
    "directory": (lambda folder: folder, "is a directory"),
    "garbage bytes": (_garbage, "not a recognised audio file; supported: WAV, FLAC"),
    "text named .wav": (_text, "not a recognised audio file"),
    "empty file": (_empty, r"empty file \(0 bytes\)"),
    "truncated WAV": (
        _truncated(".wav", 8_000),
        r"truncated: its WAV header declares 8000 samples \(1\.000 s\) but only 3989 samples",
    ),
    "truncated AIFF": (
        _truncated(".aiff", 8_000),
        r"truncated: its AIFF header declares 8000 samples \(1\.000 s\)",
    ),
    "truncated FLAC": (_truncated(".flac", 44_100, 44_100), "truncated"),
    "truncated Ogg": (_truncated(".ogg", 44_100, 44_100), "truncated: the Ogg stream ends"),
    "truncated MP3": (
        _truncated(".mp3", 44_100, 44_100),
        r"truncated: .* only \d+ samples .* could be decoded",
    ),
    "zero-length WAV": (
        lambda folder: save(folder / "zero.wav", np.zeros((1, 0), np.float32), 8_000),
        r"no audio \(0 samples\)",
    ),
    "4 kHz WAV": (
        lambda folder: save(folder / "low.wav", tone(400, 1, 4_000), 4_000),
        r"sample rate 4000 Hz; allowed: 8000\.\.192000 Hz",
    ),
    "384 kHz WAV": (
        lambda folder: save(folder / "high.wav", tone(400, 1, 384_000), 384_000),
        r"sample rate 384000 Hz; allowed: 8000\.\.192000 Hz",
    ),
    "NaN in float WAV": (_with_value(np.nan), r"NaN at sample 1234 \(0\.154 s, channel 0\)"),
    "+Inf in float WAV": (_with_value(np.inf), r"\+Inf at sample 1234 \(0\.154 s, channel 0\)"),
    "-Inf in 2nd channel": (_with_value(-np.inf, channels=2), r"-Inf at sample 1234 \(0\.154 s, channel 1\)"),
}


@pytest.mark.parametrize("make, match", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_read_audio_rejects_bad_input_with_one_line(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(AudioInputError, match=match) as caught:
        read_audio(path)
    message = str(caught.value)
    assert "\n" not in message
    assert repr(str(path)) in message, "the message names the file"
    assert isinstance(caught.value, ValueError)


def test_truncated_flac_names_the_position_reached(tmp_path):
    path = _truncated(".flac", 5 * 44_100, 44_100)(tmp_path)
    with AudioReader(path, block_frames=4_096) as reader:
        with pytest.raises(AudioInputError, match=r"after \d+ of 220500 samples \(\d+\.\d+ s of 5\.000 s\)"):
            for _ in reader.blocks():
                pass
        assert 0 < reader.frames_read < 220_500


@pytest.mark.skipif(IS_ROOT, reason="root reads files whatever their permissions")
def test_rejects_unreadable_file(tmp_path):
    path = save(tmp_path / "secret.wav", tone(100, 1, 8_000), 8_000)
    path.chmod(0)
    try:
        with pytest.raises(AudioInputError, match="not readable"):
            probe(path)
    finally:
        path.chmod(0o644)


# --------------------------------------------------------------------------- writer errors


WRITER_ERRORS = {
    "unknown extension": (lambda folder: folder / "out.xyz", 8_000, {}, r"'\.xyz'; allowed: \.wav, \.flac"),
    "no extension": (lambda folder: folder / "out", 8_000, {}, "allowed: .wav"),
    "missing parent": (
        lambda folder: folder / "nope" / "out.wav",
        8_000,
        {},
        "does not exist; create it first",
    ),
    "path is a directory": (
        lambda folder: (folder / "d.wav").mkdir() or folder / "d.wav",
        8_000,
        {},
        "is a directory",
    ),
    "rate too low": (
        lambda folder: folder / "out.wav",
        4_000,
        {},
        r"4000 Hz is out of range; allowed: 8000\.\.192000",
    ),
    "rate too high": (lambda folder: folder / "out.flac", 384_000, {}, "384000 Hz is out of range"),
    "mp3 rate": (lambda folder: folder / "out.mp3", 96_000, {}, "MP3 cannot store 96000 Hz"),
    "mp3 channels": (lambda folder: folder / "out.mp3", 44_100, {"channels": 3}, "MP3 holds 1 or 2 channels"),
    "bad subtype": (
        lambda folder: folder / "out.ogg",
        44_100,
        {"subtype": "PCM_16"},
        "'PCM_16' cannot be written to OGG",
    ),
}


@pytest.mark.parametrize("make, sample_rate, kwargs, match", WRITER_ERRORS.values(), ids=WRITER_ERRORS.keys())
def test_writer_validates_before_writing(tmp_path, make, sample_rate, kwargs, match):
    path = make(tmp_path)
    before = files_in(tmp_path)
    with pytest.raises(AudioOutputError, match=match) as caught:
        AtomicAudioWriter(path, sample_rate, **kwargs)
    assert "\n" not in str(caught.value)
    assert files_in(tmp_path) == before, "nothing may be created"


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only directories")
def test_writer_rejects_read_only_directory(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(AudioOutputError, match="not writable"):
            AtomicAudioWriter(folder / "out.wav", 8_000)
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(
    "block, exc, match",
    [
        (np.zeros(10, np.int16), TypeError, "float32"),
        (np.zeros((2, 10), np.float32), ValueError, r"shape \(n,\) or \(1, n\)"),
        (np.zeros((1, 2, 10), np.float32), ValueError, "shape"),
        (np.array([0.0, np.nan], np.float32), ValueError, "non-finite value .* at sample 1"),
    ],
)
def test_writer_rejects_bad_blocks(tmp_path, block, exc, match):
    with AtomicAudioWriter(tmp_path / "out.wav", 8_000) as writer:
        with pytest.raises(exc, match=match):
            writer.write(block)


# --------------------------------------------------------------------------- atomicity


def test_exception_inside_writer_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with AtomicAudioWriter(tmp_path / "out.flac", 8_000) as writer:
            writer.write(tone(800, 1, 8_000)[0])
            assert len(files_in(tmp_path)) == 1 and files_in(tmp_path)[0].startswith(".out.flac.")
            raise RuntimeError("boom")
    assert files_in(tmp_path) == []


def test_exception_inside_writer_leaves_existing_file_unchanged(tmp_path):
    target = tmp_path / "out.wav"
    target.write_bytes(b"previous render")
    with pytest.raises(RuntimeError):
        with AtomicAudioWriter(target, 8_000, 2) as writer:
            writer.write(tone(800, 2, 8_000))
            raise RuntimeError("boom")
    assert files_in(tmp_path) == ["out.wav"]
    assert target.read_bytes() == b"previous render"


def test_commit_replaces_existing_file_only_at_the_end(tmp_path):
    target = tmp_path / "out.wav"
    target.write_bytes(b"previous render")
    with AtomicAudioWriter(target, 8_000) as writer:
        writer.write(tone(800, 1, 8_000)[0])
        assert target.read_bytes() == b"previous render"
    assert writer.frames_written == 800
    assert files_in(tmp_path) == ["out.wav"]
    assert probe(target).frames == 800


def test_abort_and_dropped_writer_leave_no_temporary_file(tmp_path):
    writer = AtomicAudioWriter(tmp_path / "a.wav", 8_000)
    writer.write(np.zeros(100, np.float32))
    writer.abort()
    writer.abort()
    with pytest.raises(ValueError, match="aborted"):
        writer.write(np.zeros(100, np.float32))
    dropped = AtomicAudioWriter(tmp_path / "b.wav", 8_000)
    assert len(files_in(tmp_path)) == 1
    del dropped
    gc.collect()
    assert files_in(tmp_path) == []


def test_clipped_samples_are_counted_and_clipped(tmp_path):
    block = np.array([[0.5, 1.5, -2.0, 1.0], [-1.0, 0.0, 3.0, -0.25]], np.float32)
    with AtomicAudioWriter(tmp_path / "c.wav", 8_000, 2, subtype="FLOAT") as writer:
        writer.write(block)
        writer.write(block)
    assert writer.clipped_samples == 6 and writer.frames_written == 8
    back, _ = read_audio(tmp_path / "c.wav", mono=False)
    np.testing.assert_array_equal(back, np.tile(np.clip(block, -1, 1), 2))


def test_sample_rate_limits_match_reader_limits():
    assert (MIN_SAMPLE_RATE, MAX_SAMPLE_RATE) == (8_000, 192_000)

"""Audio files in: validated and streamed in bounded memory.

Reading goes through :class:`AudioReader`, which decodes one block at a time, so a
30-minute file never sits in memory whole. Every problem with an input file becomes
one :class:`AudioInputError` line that names the path and what is allowed: missing,
unreadable, not audio, truncated, empty, sample rate out of range, NaN/Inf samples.

libsndfile reads a truncated WAV or AIFF without complaint (it just returns fewer
samples), so :func:`probe` first checks the container header with
:mod:`.audio_headers`: it walks the RIFF/RF64/AIFF chunks and compares the data size
the header declares with the bytes actually present; for Ogg it checks that the
stream ends with its end-of-stream page.

The sample-rate range (``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``) and the helpers that put
libsndfile errors on one line are shared with :mod:`.audio_write`, which writes files.
"""

from __future__ import annotations

import numbers
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import soundfile as sf

from .audio_headers import _check_container, _truncation_message
from .errors import AudioInputError

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
READ_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".aif", ".aiff")

_READ_HINT = f"supported: WAV, FLAC, MP3, Ogg Vorbis/Opus, AIFF ({', '.join(READ_EXTENSIONS)})"
_RATE_HINT = f"allowed: {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
# libsndfile texts that mislead once we know the file exists and is a regular file
_UNHELPFUL_ERRORS = ("Format not recognised", "does not exist or is not a regular file", "System error")


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`probe` learnt about an audio file; ``frames`` counts samples per channel."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str  # libsndfile major format, e.g. "WAV", "FLAC", "MP3"
    subtype: str  # libsndfile subtype, e.g. "PCM_16", "VORBIS"

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def _seconds(frames: int, sample_rate: int) -> str:
    return f"{frames / sample_rate:.3f} s"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _libsndfile_detail(exc: Exception) -> str:
    """libsndfile's own text of an error, on one line, without its "Error :" prefix."""
    text = exc.error_string if isinstance(exc, sf.LibsndfileError) else str(exc)
    text = _one_line(text).removeprefix("Error :").strip()
    return text.rstrip(".") or type(exc).__name__


def _open_checked(path: str | os.PathLike[str]) -> tuple[sf.SoundFile, AudioInfo]:
    """Validate ``path`` and open it with libsndfile; the caller closes the returned SoundFile."""
    path = Path(path)
    name = repr(str(path))
    try:
        status = path.stat()
        if stat.S_ISDIR(status.st_mode):
            raise AudioInputError(
                f"audio input {name} is a directory; pass an audio file inside it; {_READ_HINT}"
            )
        if not stat.S_ISREG(status.st_mode):
            raise AudioInputError(
                f"audio input {name} is not a regular file (a pipe or device?); save it to a file first"
            )
        if status.st_size == 0:
            raise AudioInputError(f"audio input {name} is an empty file (0 bytes), not audio; {_READ_HINT}")
        _check_container(path)
    except (FileNotFoundError, NotADirectoryError):
        raise AudioInputError(
            f"audio input {name} does not exist; pass the path of an audio file; {_READ_HINT}"
        ) from None
    except PermissionError:
        raise AudioInputError(
            f"audio input {name} is not readable (permission denied); check the permissions of the file and its folders"
        ) from None
    except OSError as exc:
        raise AudioInputError(
            f"audio input {name} cannot be read: {_one_line(exc.strerror or exc)}"
        ) from None
    try:  # bytes: a name that is not valid UTF-8 (b"caf\xe9.wav") reaches libsndfile as it is on disk
        handle = sf.SoundFile(os.fsencode(path) if os.name == "posix" else path)
    except sf.LibsndfileError as exc:
        detail = _libsndfile_detail(exc)
        detail = "" if any(text in detail for text in _UNHELPFUL_ERRORS) else f" (libsndfile: {detail})"
        raise AudioInputError(
            f"audio input {name} is not a recognised audio file{detail}; {_READ_HINT}"
        ) from None
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise AudioInputError(
            f"audio input {name} cannot be opened: {_libsndfile_detail(exc)}; {_READ_HINT}"
        ) from None
    info = AudioInfo(
        path, int(handle.samplerate), int(handle.channels), int(handle.frames), handle.format, handle.subtype
    )
    problem = None
    if info.frames <= 0:
        problem = f"audio input {name} contains no audio (0 samples); pass a file with at least one sample"
    elif not MIN_SAMPLE_RATE <= info.sample_rate <= MAX_SAMPLE_RATE:
        problem = (
            f"audio input {name} has sample rate {info.sample_rate} Hz; {_RATE_HINT}; "
            f"resample it first, e.g. ffmpeg -i IN -ar 48000 OUT.wav"
        )
    if problem is not None:
        handle.close()
        raise AudioInputError(problem)
    return handle, info


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Check an audio file without decoding it.

    Args:
        path: the file; its format is detected from its content, not its extension.

    Returns:
        :class:`AudioInfo` with sample rate (Hz), channels and frames (samples per channel).

    Raises:
        AudioInputError: missing, a directory, unreadable, not audio, truncated WAV/AIFF/Ogg,
            0 samples, or a sample rate outside ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``.
    """
    handle, info = _open_checked(path)
    handle.close()
    return info


class AudioReader:
    """Decode an audio file block by block (context manager).

    Args:
        path: the input file, validated as in :func:`probe`.
        block_frames: samples per channel in each block (the last one may be shorter).
        mono: average the channels into one.
        check_finite: refuse NaN/Inf samples (the default). False passes them through, for a
            consumer that replaces and counts them itself (the live engine plays them as silence).

    Raises:
        AudioInputError: as :func:`probe`.
        ValueError: ``block_frames`` < 1.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block_frames: int = 65536,
        mono: bool = True,
        check_finite: bool = True,
    ) -> None:
        if (
            isinstance(block_frames, bool)
            or not isinstance(block_frames, numbers.Integral)
            or block_frames < 1
        ):
            raise ValueError(f"block_frames must be an integer >= 1 sample, got {block_frames!r}")
        self.block_frames = int(block_frames)
        self.mono = mono
        self.check_finite = check_finite
        self._file, self.info = _open_checked(path)
        self.downmixed = mono and self.info.channels > 1
        self.frames_read = 0
        self._started = False

    def blocks(self) -> Iterator[np.ndarray]:
        """Yield float32 blocks: ``(n,)`` when mono, else ``(channels, n)``; values as decoded.

        Each call starts again from the beginning of the file (ValueError if the format cannot seek).

        Raises:
            AudioInputError: a NaN/Inf sample (unless ``check_finite`` is False), a decoding error,
                or fewer samples than the header declares.
        """
        info, name = self.info, repr(str(self.info.path))
        if self._file.closed:
            raise ValueError(f"audio input {name} is closed; open a new AudioReader")
        if self._started:
            if not self._file.seekable():
                raise ValueError(
                    f"audio input {name} ({info.subtype}) cannot be read twice; open a new AudioReader"
                )
            self._file.seek(0)
        self._started = True
        self.frames_read = 0
        while True:
            try:
                data = self._file.read(self.block_frames, dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError) as exc:
                raise AudioInputError(
                    f"audio input {name} could not be decoded after {self.frames_read} of {info.frames} samples "
                    f"({_seconds(self.frames_read, info.sample_rate)} of {info.duration_s:.3f} s): "
                    f"{_libsndfile_detail(exc)}; the file is truncated or corrupt"
                ) from None
            if data.shape[0] == 0:
                break
            if self.check_finite and not np.isfinite(data).all():
                self._raise_non_finite(data)
            self.frames_read += data.shape[0]
            if self.downmixed:
                yield data.mean(axis=1, dtype=np.float32)
            elif self.mono:
                yield data[:, 0]
            else:
                yield np.ascontiguousarray(data.T)
        if self.frames_read < info.frames:
            raise AudioInputError(
                _truncation_message(
                    info.path,
                    info.format,
                    info.frames,
                    self.frames_read,
                    info.sample_rate,
                    found="could be decoded",
                )
            )

    def _raise_non_finite(self, data: np.ndarray) -> None:
        frame, channel = np.argwhere(~np.isfinite(data))[0]
        value = data[frame, channel]
        index = self.frames_read + int(frame)
        kind = "NaN" if np.isnan(value) else ("+Inf" if value > 0 else "-Inf")
        raise AudioInputError(
            f"audio input {str(self.info.path)!r} contains {kind} at sample {index} "
            f"({_seconds(index, self.info.sample_rate)}, channel {int(channel)}); samples must be finite, "
            f"re-export the file"
        )

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_audio(path: str | os.PathLike[str], *, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read a whole file, validated as :class:`AudioReader` does.

    Returns:
        ``(audio, sample_rate)``: float32 ``(samples,)`` when mono, else ``(channels, samples)``; Hz.

    Raises:
        AudioInputError: as :class:`AudioReader`.
    """
    with AudioReader(path, mono=mono) as reader:
        info = reader.info
        shape = (info.frames,) if mono else (info.channels, info.frames)
        audio = np.empty(shape, dtype=np.float32)
        for block in reader.blocks():
            end = reader.frames_read
            audio[..., end - block.shape[-1] : end] = block
    return audio, info.sample_rate

"""Audio files out: validated first, written atomically.

Writing goes through :class:`AtomicAudioWriter`: it validates everything before any
work, writes to a hidden temporary file in the target directory and renames it onto
the target only on success, so a failure never leaves a half-written output file.
The sample-rate range it accepts, ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``, is the one
:mod:`.audio_io` reads.
"""

from __future__ import annotations

import errno
import logging
import numbers
import os
import secrets
from pathlib import Path
from types import TracebackType

import numpy as np
import soundfile as sf

from .audio_io import _RATE_HINT, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, _libsndfile_detail, _one_line
from .errors import AudioOutputError

log = logging.getLogger(__name__)

WRITE_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")

# extension -> (libsndfile major format, default subtype)
_WRITE_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".aiff": ("AIFF", "PCM_16"),
    ".aif": ("AIFF", "PCM_16"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}
_MP3_SAMPLE_RATES = (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)


def _check_output(path: Path, sample_rate: int, channels: int, subtype: str | None) -> tuple[str, str]:
    """Validate an output request; return ``(libsndfile format, subtype)``."""
    name = repr(str(path))
    ext = path.suffix.lower()
    if ext not in _WRITE_FORMATS:
        raise AudioOutputError(
            f"audio output {name} has extension {ext or '(none)'!r}; allowed: {', '.join(WRITE_EXTENSIONS)}"
        )
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral):
        raise TypeError(f"sample_rate must be an integer number of Hz, got {sample_rate!r}")
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
        raise ValueError(f"channels must be an integer >= 1, got {channels!r}")
    parent = path.parent
    try:
        if path.is_dir():
            raise AudioOutputError(
                f"audio output {name} is a directory; pass a file name such as {str(path / ('out' + ext))!r}"
            )
        if not parent.exists():
            raise AudioOutputError(
                f"audio output {name}: directory {str(parent)!r} does not exist; "
                f"create it first: mkdir -p {parent}"
            )
        if not parent.is_dir():
            raise AudioOutputError(f"audio output {name}: {str(parent)!r} is not a directory")
    except PermissionError:
        raise AudioOutputError(
            f"audio output {name}: directory {str(parent)!r} cannot be accessed "
            f"(permission denied); choose another output directory"
        ) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AudioOutputError(
            f"audio output {name}: directory {str(parent)!r} is not writable; "
            f"choose another output directory or fix its permissions"
        )
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioOutputError(
            f"audio output {name}: sample rate {sample_rate} Hz is out of range; {_RATE_HINT}"
        )
    fmt, default_subtype = _WRITE_FORMATS[ext]
    if fmt == "MP3" and sample_rate not in _MP3_SAMPLE_RATES:
        raise AudioOutputError(
            f"audio output {name}: MP3 cannot store {sample_rate} Hz; allowed: "
            f"{', '.join(map(str, _MP3_SAMPLE_RATES))} Hz; resample or write .wav/.flac instead"
        )
    if fmt == "MP3" and channels > 2:
        raise AudioOutputError(
            f"audio output {name}: MP3 holds 1 or 2 channels, got {channels}; write .wav or .flac instead"
        )
    subtype = default_subtype if subtype is None else subtype.upper()
    if not sf.check_format(fmt, subtype):
        raise AudioOutputError(
            f"audio output {name}: subtype {subtype!r} cannot be written to {fmt}; allowed: "
            f"{', '.join(sf.available_subtypes(fmt))}"
        )
    return fmt, subtype


class AtomicAudioWriter:
    """Write audio to a hidden temporary file and rename it onto ``path`` on success (context manager).

    ``with`` commits when the block succeeds and aborts when it raises (the exception propagates,
    with the note "'PATH' was not written"). A failure or an interruption (Ctrl-C, or a signal the
    caller turns into an exception) at any point removes the temporary file and leaves an existing
    file at ``path`` untouched.

    Args:
        path: final file; its extension (one of ``WRITE_EXTENSIONS``) picks the format.
        sample_rate: Hz, in ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE`` (MP3: 8000..48000, MPEG rates only).
        channels: channels of every block written.
        subtype: libsndfile subtype; default PCM_16 for WAV/AIFF/FLAC, VORBIS for Ogg, MPEG_LAYER_III for MP3.

    Raises:
        AudioOutputError: bad extension, missing or read-only directory, ``path`` is a directory,
            sample rate out of range, or a subtype/channel count the format cannot hold.
        TypeError, ValueError: ``sample_rate`` not an integer, ``channels`` < 1.
    """

    def __init__(
        self, path: str | os.PathLike[str], sample_rate: int, channels: int = 1, *, subtype: str | None = None
    ) -> None:
        self.path = Path(path)
        self._file: sf.SoundFile | None = None
        self._fd = -1
        self._temp_path: Path | None = None
        self._state = "open"
        fmt, self.subtype = _check_output(self.path, sample_rate, channels, subtype)
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        self.frames_written = 0
        self.clipped_samples = 0
        for _ in range(100):
            # The name is recorded before the file exists, so that an interruption (Ctrl-C, SIGTERM)
            # anywhere from here on finds it and removes it.
            self._temp_path = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
            try:  # created with the umask's permissions, unlike mkstemp's 0600
                self._fd = os.open(self._temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                self._temp_path = None
                continue
            except OSError as exc:
                self._temp_path = None
                raise AudioOutputError(
                    f"audio output {str(self.path)!r}: cannot create a temporary file "
                    f"next to it: {_os_error_text(exc)}"
                ) from None
            break
        else:  # pragma: no cover - 100 random collisions
            raise AudioOutputError(f"audio output {str(self.path)!r}: no free temporary file name next to it")
        try:
            self._file = sf.SoundFile(
                self._fd, "w", self.sample_rate, self.channels, self.subtype, format=fmt, closefd=False
            )
        except (sf.SoundFileError, RuntimeError, OSError) as exc:
            detail = self._disk_refusal() or _libsndfile_detail(exc)
            self._discard()
            raise AudioOutputError(
                f"audio output {str(self.path)!r}: libsndfile cannot write {fmt}/{self.subtype} "
                f"at {self.sample_rate} Hz with {self.channels} channels: {detail}"
            ) from None
        except BaseException:  # interrupted: no temporary file left behind
            self._discard()
            raise

    def write(self, block: np.ndarray) -> None:
        """Append ``block``: float ``(n,)`` when mono, else ``(channels, n)``; clipped to [-1, 1].

        Raises:
            TypeError: not a floating-point array.
            ValueError: wrong shape, NaN/Inf samples, or the writer is closed.
            AudioOutputError: the disk write failed (the temporary file is removed).
        """
        if self._state != "open" or self._file is None:
            raise ValueError(f"audio output {str(self.path)!r} is already {self._state}; open a new writer")
        block = np.asarray(block)
        if not np.issubdtype(block.dtype, np.floating):
            raise TypeError(f"audio blocks must be float32 in [-1, 1], got dtype {block.dtype}")
        if block.ndim == 1 and self.channels == 1:
            block = block[np.newaxis, :]
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(
                f"audio blocks for {self.channels} channel(s) must have shape "
                f"{'(n,) or ' if self.channels == 1 else ''}({self.channels}, n), got {block.shape}"
            )
        if not np.isfinite(block).all():
            channel, sample = np.argwhere(~np.isfinite(block))[0]
            raise ValueError(
                f"audio block has a non-finite value ({block[channel, sample]}) at sample "
                f"{self.frames_written + int(sample)}, channel {int(channel)}; samples must be finite"
            )
        block = block.astype(np.float32, copy=False)
        over = np.abs(block) > 1.0
        clipped = int(np.count_nonzero(over))
        if clipped:
            block = np.clip(block, -1.0, 1.0)
        try:
            self._file.write(np.ascontiguousarray(block.T))
        except (sf.SoundFileError, RuntimeError, OSError) as exc:
            detail = self._disk_refusal() or _libsndfile_detail(exc)
            self.abort()
            raise AudioOutputError(
                f"audio output {str(self.path)!r}: writing failed after {self.frames_written} "
                f"samples: {detail}; the partial file was removed"
            ) from None
        self.clipped_samples += clipped
        self.frames_written += block.shape[1]

    def commit(self) -> Path:
        """Finish the file and atomically move it onto ``path``; returns ``path``.

        Raises:
            AudioOutputError: finishing or renaming failed (the temporary file is removed).
            ValueError: the writer was aborted.
        """
        if self._state == "committed":
            return self.path
        if self._state != "open" or self._file is None or self._temp_path is None:
            raise ValueError(f"audio output {str(self.path)!r} was aborted; open a new writer")
        file, self._file = self._file, None
        try:
            try:
                file.close()
            except (sf.SoundFileError, RuntimeError) as exc:  # the header could not be written
                raise AudioOutputError(
                    f"audio output {str(self.path)!r} could not be saved: "
                    f"{self._disk_refusal() or _libsndfile_detail(exc)}"
                ) from None
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            os.replace(self._temp_path, self.path)
            self._state = "committed"
            self._temp_path = None
        except AudioOutputError:
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise AudioOutputError(
                f"audio output {str(self.path)!r} could not be saved: {_os_error_text(exc)}"
            ) from None
        except BaseException:  # interrupted: the output is either complete (renamed) or absent
            self.abort()
            raise
        self._fsync_directory()
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file; ``path`` is left as it was. Safe to call twice."""
        if self._state == "committed":
            return
        self._state = "aborted"
        self._discard()

    def _disk_refusal(self) -> str | None:
        """Why the disk refused a write, when it did (full, file-size limit, quota); else None.

        libsndfile reports every failed write as "System error" and drops errno, so this writes one
        byte at the end of the temporary file (discarded right after) and reads the reason the
        kernel gives for that.
        """
        if self._fd < 0:
            return None
        try:
            os.pwrite(self._fd, b"\0", os.fstat(self._fd).st_size)
        except OSError as exc:
            return _os_error_text(exc, self.path.parent)
        return None

    def _discard(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except (sf.SoundFileError, RuntimeError, OSError):
                pass  # the file is deleted next; its header no longer matters
            self._file = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._temp_path is not None:
            self._temp_path.unlink(missing_ok=True)
            self._temp_path = None

    def _fsync_directory(self) -> None:
        """Make the rename durable; best effort, as some filesystems refuse to fsync a directory."""
        try:
            fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> AtomicAudioWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            interrupted_writing = self._state == "open"  # not a failure of this writer's (that one says so)
            self.abort()
            if interrupted_writing and exc is not None:
                exc.add_note(f"{str(self.path)!r} was not written")

    def __del__(self) -> None:  # a writer dropped without commit() or abort() leaves no temporary file
        if getattr(self, "_state", None) == "open":
            self.abort()


def _os_error_text(exc: OSError, folder: Path | None = None) -> str:
    """One line for an operating-system error while writing, with what to do about the usual ones."""
    text = _one_line(exc.strerror or exc)
    disk = f"the disk holding {str(folder)!r}" if folder is not None else "the disk"
    if exc.errno == errno.ENOSPC:
        return f"{text}: {disk} is full; free some space or write the output to another disk"
    if exc.errno == getattr(errno, "EDQUOT", None):
        return f"{text}: your quota on {disk} is used up; free some space or write the output to another disk"
    if exc.errno == errno.EFBIG:
        limit = _file_size_limit()
        shown = f" of {limit} bytes" if limit is not None else ""
        return f"{text}: this process's file-size limit{shown} (ulimit -f) is reached; raise it or write a shorter output"
    return text


def _file_size_limit() -> int | None:
    """The soft RLIMIT_FSIZE in bytes, or None when unlimited or unknown."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def write_audio(path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int) -> Path:
    """Write a whole array atomically with :class:`AtomicAudioWriter`; logs a warning when samples clip.

    Args:
        path: output file, extension one of ``WRITE_EXTENSIONS``.
        audio: float ``(samples,)`` or ``(channels, samples)`` in [-1, 1].
        sample_rate: Hz.

    Returns:
        The final path.

    Raises:
        AudioOutputError, TypeError, ValueError: as :class:`AtomicAudioWriter`.
    """
    audio = np.asarray(audio)
    if audio.ndim not in (1, 2):
        raise ValueError(f"audio must be 1-D (samples,) or 2-D (channels, samples), got shape {audio.shape}")
    channels = 1 if audio.ndim == 1 else audio.shape[0]
    with AtomicAudioWriter(path, sample_rate, channels) as writer:
        writer.write(audio)
    if writer.clipped_samples:
        log.warning(
            "%s: %d samples were outside [-1, 1] and were clipped", writer.path, writer.clipped_samples
        )
    return writer.path

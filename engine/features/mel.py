"""Log-mel spectrograms on a centred frame grid, configured per model.

One implementation for inference and training. Frames are centred (frame ``j``
on sample ``j * hop_samples``, zeros before the signal), so a stream analysed
chunk by chunk gives exactly the frames of the whole signal.

The filterbank is the Slaney-style one (mel scale linear below 1 kHz and
logarithmic above, each triangle normalised to unit area), which is what most
vocoders expect. Values are ``log(max(mel_power_magnitude, floor))`` in nepers
of magnitude (natural log of the filtered magnitude spectrum).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..errors import ConfigError
from .frames import frame_matrix, pad_for_frames


@dataclass(frozen=True)
class MelConfig:
    """Frame setup and filterbank of a log-mel spectrogram.

    Attributes:
        sample_rate: in Hz.
        n_fft: FFT size (>= win_samples).
        win_samples: Hann window length.
        hop_samples: frame hop.
        n_mels: number of mel bands.
        fmin_hz, fmax_hz: band edges of the filterbank.
        log_floor: magnitude floor before the log.
    """

    sample_rate: int = 24_000
    n_fft: int = 512
    win_samples: int = 512
    hop_samples: int = 128
    n_mels: int = 80
    fmin_hz: float = 30.0
    fmax_hz: float = 12_000.0
    log_floor: float = 1e-5

    def __post_init__(self) -> None:
        if self.win_samples > self.n_fft:
            raise ConfigError(f"mel.win_samples={self.win_samples} must be <= mel.n_fft={self.n_fft}")
        if not 0 < self.hop_samples <= self.win_samples:
            raise ConfigError(f"mel.hop_samples={self.hop_samples} must be in 1..win_samples={self.win_samples}")
        if not 0.0 <= self.fmin_hz < self.fmax_hz <= self.sample_rate / 2:
            raise ConfigError(
                f"mel band {self.fmin_hz}..{self.fmax_hz} Hz must satisfy 0 <= fmin < fmax <= {self.sample_rate / 2} Hz"
            )
        if self.n_mels < 1:
            raise ConfigError(f"mel.n_mels={self.n_mels} must be >= 1")

    @classmethod
    def for_to_speech(cls, win_samples: int = 640) -> MelConfig:
        """Singing-to-speech model features: 80 bands at 16 kHz (the S2S paper), 10 ms hop, a 40 ms window.

        ``win_samples`` shortens the window (a flow model's ``mel_window``: 400, 25 ms, for the
        low-latency model); everything else is fixed.
        """
        return cls(sample_rate=16_000, n_fft=1024, win_samples=win_samples, hop_samples=160, fmin_hz=0.0,
                   fmax_hz=8_000.0)

    @classmethod
    def engine_setup(cls, fields: object, setups: tuple = ()) -> MelConfig | None:
        """The engine's mel setup that ``fields`` (an artifact's ``mel`` object) describes, else None.

        One of ``setups`` (default: both directions') with any window from its hop to its FFT size
        (a model's ``mel_window``): every other field must be the setup's own.
        """
        if not isinstance(fields, dict):
            return None
        window = fields.get("win_samples")
        for make in setups or (cls.for_to_speech, cls.for_to_singing):
            base = make()
            if (isinstance(window, int) and not isinstance(window, bool)
                    and base.hop_samples <= window <= base.n_fft and fields == asdict(replace(base, win_samples=window))):
                return replace(base, win_samples=window)
        return None

    @classmethod
    def for_to_singing(cls) -> MelConfig:
        """Speech-to-singing model features: 80 bands at 24 kHz, window 512, hop 128 (AlignSTS)."""
        return cls()

    @property
    def frame_s(self) -> float:
        return self.hop_samples / self.sample_rate


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: linear (3 bands per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(hz < min_log_hz, hz / f_sp, min_log_mel + np.log(np.maximum(hz, 1e-9) / min_log_hz) / logstep)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(mel < min_log_mel, mel * f_sp, min_log_hz * np.exp(logstep * (mel - min_log_mel)))


def band_edges_hz(config: MelConfig) -> np.ndarray:
    """``(n_mels + 2,)`` edges of the filterbank's triangles: band ``i`` spans ``edges[i] .. edges[i + 2]``."""
    return mel_to_hz(np.linspace(hz_to_mel(config.fmin_hz), hz_to_mel(config.fmax_hz), config.n_mels + 2))


def mel_filterbank(config: MelConfig) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` triangular filters, each of unit area in Hz."""
    bins = config.n_fft // 2 + 1
    freqs = np.linspace(0.0, config.sample_rate / 2, bins)
    edges = band_edges_hz(config)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (center - lower)
    falling = (upper - freqs[None, :]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (upper - lower))
    return weights


class MelAnalyzer:
    """Compute log-mel frames; holds the window and the filterbank. Stateless otherwise."""

    def __init__(self, config: MelConfig) -> None:
        self.config = config
        self.window = np.hanning(config.win_samples + 1)[:-1]
        self.filterbank = mel_filterbank(config)

    def magnitude(self, windows: np.ndarray) -> np.ndarray:
        """``(frames, win_samples)`` samples -> ``(frames, n_fft // 2 + 1)`` STFT magnitudes."""
        return np.abs(np.fft.rfft(windows * self.window[None, :], self.config.n_fft, axis=1))

    def log_mel_frames(self, windows: np.ndarray) -> np.ndarray:
        """``(frames, win_samples)`` -> ``(frames, n_mels)`` log-mel."""
        mel = self.magnitude(windows) @ self.filterbank.T
        return np.log(np.maximum(mel, self.config.log_floor))

    def log_mel(self, audio: np.ndarray) -> np.ndarray:
        """Whole signal -> ``(frame_count, n_mels)`` log-mel (frames centred, zeros outside)."""
        cfg = self.config
        padded, start, n = pad_for_frames(np.asarray(audio, dtype=np.float64), cfg.hop_samples, cfg.win_samples)
        return self.log_mel_frames(frame_matrix(padded, start, 0, n, cfg.hop_samples, cfg.win_samples))

    def energy(self, audio: np.ndarray) -> np.ndarray:
        """Whole signal -> ``(frame_count,)`` L2 norm of each frame's magnitude spectrum (AlignSTS's energy)."""
        cfg = self.config
        padded, start, n = pad_for_frames(np.asarray(audio, dtype=np.float64), cfg.hop_samples, cfg.win_samples)
        mag = self.magnitude(frame_matrix(padded, start, 0, n, cfg.hop_samples, cfg.win_samples))
        return np.sqrt(np.sum(mag * mag, axis=1))

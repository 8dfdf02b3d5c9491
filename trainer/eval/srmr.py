"""SRMR: the speech-to-reverberation modulation energy ratio (Falk, Zheng and Chan 2010).

A reference-free measure of reverberation and intelligibility, the S2S paper's second
objective metric. Clean speech has most of its envelope modulation energy at syllabic rates
(4-20 Hz); reverberation smears the envelopes and moves energy to higher modulation
frequencies. SRMR is the ratio of the two, so higher means drier and clearer.

Pipeline (written from the paper's description; no code of the reference toolboxes is used):

1. Resample to ``analysis_rate`` (16 kHz default; 8 kHz for narrowband input, as in the paper).
2. A 23-channel gammatone filterbank (4th order, bandwidth 1.019 ERB, Glasberg and Moore ERB),
   centre frequencies equally spaced on the ERB-rate scale from 125 Hz up to one step below
   half the sample rate (about 6.9 kHz at 16 kHz). Each filter is the sampled impulse response
   ``t**3 exp(-2 pi b t) cos(2 pi f t)``, scaled to unit gain at its centre frequency.
3. Temporal envelopes: the magnitude of each channel's analytic signal (Hilbert transform).
4. Modulation filterbank: 8 second-order band-pass filters with Q = 2, centre frequencies
   spaced by octaves-and-a-bit from 4 to 128 Hz (4, 6.6, 10.8, 17.7, 29.0, 47.6, 78.0, 128 Hz).
5. Energies in 256 ms Hamming windows every 64 ms, averaged over the windows: one number per
   (acoustic channel, modulation band), the modulation spectrum.
6. ``SRMR = sum of bands 1-4 / sum of bands 5..K*``, both summed over all acoustic channels.
   With ``adaptive_bandwidth`` (the paper's choice, the default), K* follows the speech
   bandwidth: find the lowest acoustic channel at which the cumulative energy (counted from
   the lowest channel) passes 90%, and its ERB bandwidth BW; K* is the number of modulation
   bands whose lower -3 dB edge is at or below BW, at least 5 and at most 8 (as the SRMR
   toolbox and its ports compare BW with the lower edges). Without it, K* = 8: bands 1-4
   over bands 5-8. For full-band speech K* is usually 8, and the two agree.

The ratio is independent of the signal's level. Not implemented: the normalised variant
(SRMR_norm, Santos et al. 2014) that clamps the envelope dynamic range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import check_audio, check_sample_rate, resample

ANALYSIS_RATES = (8_000, 16_000)
N_ACOUSTIC_CHANNELS = 23
LOWEST_CENTRE_HZ = 125.0
MODULATION_CENTRES_HZ = np.geomspace(4.0, 128.0, 8)
MODULATION_Q = 2.0
WINDOW_S = 0.256
HOP_S = 0.064
_EAR_Q = 9.26449  # Glasberg and Moore (1990): ERB = f / EAR_Q + MIN_BW
_MIN_BW_HZ = 24.7
_GAMMATONE_BANDWIDTH = 1.019  # b = 1.019 ERB for a 4th-order gammatone


@dataclass(frozen=True)
class ModulationSpectrum:
    """Average modulation energies of one signal.

    Attributes:
        energies: ``(23, 8)`` mean energy per (acoustic channel, modulation band), linear units.
        acoustic_centres_hz: ``(23,)`` gammatone centre frequencies, ascending.
        modulation_centres_hz: ``(8,)`` modulation filter centres.
    """

    energies: np.ndarray
    acoustic_centres_hz: np.ndarray
    modulation_centres_hz: np.ndarray

    def k_star(self) -> int:
        """Number of modulation bands in the adaptive denominator (5..8), see the module docstring."""
        per_channel = self.energies.sum(axis=1)
        cumulative = np.cumsum(per_channel) / per_channel.sum()
        channel = int(np.searchsorted(cumulative, 0.9))
        bandwidth_hz = erb_hz(self.acoustic_centres_hz[min(channel, per_channel.size - 1)])
        lower_edges = modulation_band_edges_hz()[0]
        return int(np.clip(np.sum(lower_edges <= bandwidth_hz), 5, 8))

    def ratio(self, adaptive_bandwidth: bool = True) -> float:
        """SRMR from these energies: bands 1-4 over bands 5..K* (K* = 8 when not adaptive)."""
        if not np.sum(self.energies) > 0.0:
            raise ValueError("SRMR is undefined for a signal with no modulation energy (silence?)")
        k_star = self.k_star() if adaptive_bandwidth else 8
        band_energy = self.energies.sum(axis=0)
        reverberant = band_energy[4:k_star].sum()
        if reverberant <= 0.0:
            raise ValueError("SRMR is undefined: no energy in modulation bands 5..K* (a steady signal?)")
        return float(band_energy[:4].sum() / reverberant)


def erb_hz(frequency_hz: np.ndarray | float) -> np.ndarray:
    """Equivalent rectangular bandwidth of the auditory filter at ``frequency_hz`` (Glasberg and Moore)."""
    return np.asarray(frequency_hz, dtype=np.float64) / _EAR_Q + _MIN_BW_HZ


def gammatone_centres_hz(sample_rate: int, n_channels: int = N_ACOUSTIC_CHANNELS,
                         lowest_hz: float = LOWEST_CENTRE_HZ) -> np.ndarray:
    """``(n_channels,)`` ascending centre frequencies, equally spaced in ERB rate.

    The lowest is ``lowest_hz``; the highest is one step below ``sample_rate / 2``.
    """
    offset = _EAR_Q * _MIN_BW_HZ
    rates = np.linspace(np.log(lowest_hz + offset), np.log(sample_rate / 2 + offset), n_channels + 1)[:-1]
    return np.exp(rates) - offset


def gammatone_filters(sample_rate: int, centres_hz: np.ndarray) -> np.ndarray:
    """``(channels, taps)`` FIR gammatone impulse responses, each of unit gain at its centre.

    Each response is cut where its envelope ``t**3 exp(-2 pi b t)`` has decayed by about 120 dB
    (``2 pi b t = 25``); shorter responses are zero-padded to the longest.
    """
    bandwidths = _GAMMATONE_BANDWIDTH * erb_hz(centres_hz)
    taps = int(np.ceil(25.0 / (2 * np.pi * bandwidths.min()) * sample_rate))
    t = np.arange(taps) / sample_rate
    decay = 2 * np.pi * bandwidths[:, None] * t[None, :]
    responses = t[None, :] ** 3 * np.exp(-decay) * np.cos(2 * np.pi * centres_hz[:, None] * t[None, :])
    phasors = np.exp(-2j * np.pi * centres_hz[:, None] * t[None, :])
    gains = np.abs(np.sum(responses * phasors, axis=1))
    return responses / gains[:, None]


def modulation_band_edges_hz(q: float = MODULATION_Q) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper -3 dB edges of the modulation filters (geometric centre, bandwidth centre / Q)."""
    half = 1.0 / (2.0 * q)
    root = np.sqrt(1.0 + half * half)
    return MODULATION_CENTRES_HZ * (root - half), MODULATION_CENTRES_HZ * (root + half)


def modulation_spectrum(audio: np.ndarray, sample_rate: int, *,
                        analysis_rate: int = 16_000) -> ModulationSpectrum:
    """Steps 1-5 of SRMR: the average energy per acoustic channel and modulation band.

    Args:
        audio: ``(samples,)`` float mono in [-1, 1], at least 256 ms long.
        sample_rate: in Hz.
        analysis_rate: 16000 (default) or 8000 Hz.

    Raises:
        ValueError: ``analysis_rate`` not 8000 or 16000, or the audio shorter than one window.
    """
    from scipy.signal import fftconvolve, hilbert, iirpeak, lfilter

    if analysis_rate not in ANALYSIS_RATES:
        raise ValueError(f"SRMR analysis_rate must be 8000 or 16000 Hz, got {analysis_rate!r}")
    samples = resample(check_audio(audio), check_sample_rate(sample_rate), analysis_rate)
    window = int(round(WINDOW_S * analysis_rate))
    hop = int(round(HOP_S * analysis_rate))
    if samples.size < window:
        raise ValueError(f"SRMR needs at least {WINDOW_S * 1000:.0f} ms of audio, got "
                         f"{samples.size / analysis_rate * 1000:.0f} ms")
    centres = gammatone_centres_hz(analysis_rate)
    bands = fftconvolve(samples[None, :], gammatone_filters(analysis_rate, centres), axes=1)[:, :samples.size]
    envelopes = np.abs(hilbert(bands, axis=1))
    weights = (np.hamming(window) ** 2)[None, ::-1]
    energies = np.empty((centres.size, MODULATION_CENTRES_HZ.size))
    for k, centre in enumerate(MODULATION_CENTRES_HZ):
        b, a = iirpeak(centre, MODULATION_Q, fs=analysis_rate)
        modulated = lfilter(b, a, envelopes, axis=1)
        # Windowed energy of every frame: correlate the squared signal with the squared window.
        frame_energy = fftconvolve(modulated * modulated, weights, mode="valid", axes=1)[:, ::hop]
        energies[:, k] = frame_energy.mean(axis=1)
    return ModulationSpectrum(energies, centres, MODULATION_CENTRES_HZ.copy())


def srmr(audio: np.ndarray, sample_rate: int, *, analysis_rate: int = 16_000,
         adaptive_bandwidth: bool = True) -> float:
    """Speech-to-reverberation modulation energy ratio of one utterance (no reference needed).

    Args:
        audio: ``(samples,)`` float mono in [-1, 1], at least 256 ms long.
        sample_rate: in Hz; resampled to ``analysis_rate``.
        analysis_rate: 16000 (default) or 8000 Hz (narrowband input).
        adaptive_bandwidth: choose K* from the speech bandwidth as the paper does (default);
            False sums modulation bands 5-8 in the denominator.

    Returns:
        The ratio (dimensionless, higher = less reverberant); docs/metrics.md lists the values
        measured on the bundled ARCTIC sentence, dry and reverberant.
    """
    spectrum = modulation_spectrum(audio, sample_rate, analysis_rate=analysis_rate)
    return spectrum.ratio(adaptive_bandwidth=adaptive_bandwidth)

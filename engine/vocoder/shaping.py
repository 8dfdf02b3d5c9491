"""A singer's output shaped in two fixed bands: the singer's formant and the brightness above it.

Trained singers, operatic ones most, sing with a peak of energy near 3 kHz (the singer's formant:
the third to fifth formants clustered) and, with more vocal effort, a flatter tilt than they speak
with. A converter that sings with the speaker's own spectrum (``psola``'s grains are the speech's
own periods) has neither, so issue 14 asks for both as a shaping whose depth is a parameter:

* ``formant_db``: a peaking filter at ``formant_hz``, ``formant_octaves`` wide (between its
  half-gain points, in dB);
* ``brightness_db``: a high shelf whose gain reaches half its value at ``brightness_hz``.

Both are second-order sections after Bristow-Johnson's audio-EQ cookbook, run causally in float64
with their state carried from call to call, so a signal shaped in pieces equals the whole and no
latency is added. At 0 dB a section is left out (the output is untouched to the bit).

Both default to 0 dB. dev-data's real singers, against their own readings, show no singer's formant
and a darker treble, and neither band moved ``psola``'s songs nearer their singing on any frame-wise
measure (``scripts/sung_spectrum_probe.py``; docs/results.md, "The singer's formant and brightness").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

#: the gains either band may take, in dB
GAIN_RANGE_DB = (-12.0, 12.0)
#: where the singer's formant may be centred, and the shelf's corner, in Hz
FORMANT_RANGE_HZ = (1500.0, 5000.0)
BRIGHTNESS_RANGE_HZ = (1000.0, 8000.0)
#: the width the peak may take, in octaves
OCTAVES_RANGE = (0.25, 3.0)
#: the highest fraction of the sample rate a band's frequency may reach (its response must fit under Nyquist)
MAX_FRACTION_OF_RATE = 0.4


def _within(owner: str, name: str, value: float, bounds: tuple[float, float], unit: str) -> None:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ConfigError(f"{owner}.{name}={value!r} must be within {low:g}..{high:g}{unit}")


@dataclass(frozen=True)
class ShapingConfig:
    """The two bands (module docstring); both 0 dB leaves the output untouched."""

    formant_db: float = 0.0
    formant_hz: float = 3000.0
    formant_octaves: float = 1.0
    brightness_db: float = 0.0
    brightness_hz: float = 4000.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _within(owner, "formant_db", self.formant_db, GAIN_RANGE_DB, " dB")
        _within(owner, "brightness_db", self.brightness_db, GAIN_RANGE_DB, " dB")
        _within(owner, "formant_hz", self.formant_hz, FORMANT_RANGE_HZ, " Hz")
        _within(owner, "brightness_hz", self.brightness_hz, BRIGHTNESS_RANGE_HZ, " Hz")
        _within(owner, "formant_octaves", self.formant_octaves, OCTAVES_RANGE, " octaves")

    @property
    def active(self) -> bool:
        return self.formant_db != 0.0 or self.brightness_db != 0.0

    def sections(self, sample_rate: int) -> np.ndarray:
        """The ``(n, 6)`` second-order sections (``b0 b1 b2 1 a1 a2``) at ``sample_rate``; ``n`` is 0-2."""
        rows = []
        for gain, hz, make in ((self.formant_db, self.formant_hz, self._peak),
                               (self.brightness_db, self.brightness_hz, _high_shelf)):
            if gain == 0.0:
                continue
            if hz > MAX_FRACTION_OF_RATE * sample_rate:
                raise ConfigError(f"{type(self).__name__}: a band at {hz:g} Hz needs a sample rate of at least "
                                  f"{hz / MAX_FRACTION_OF_RATE:g} Hz; this one runs at {sample_rate} Hz")
            rows.append(make(gain, 2.0 * math.pi * hz / sample_rate))
        return np.array(rows, dtype=np.float64).reshape(-1, 6)

    def _peak(self, gain_db: float, w0: float) -> np.ndarray:
        return _peaking(gain_db, w0, self.formant_octaves)


def _normalised(b: tuple[float, float, float], a: tuple[float, float, float]) -> np.ndarray:
    return np.array([b[0] / a[0], b[1] / a[0], b[2] / a[0], 1.0, a[1] / a[0], a[2] / a[0]])


def _peaking(gain_db: float, w0: float, octaves: float) -> np.ndarray:
    """A peaking section: ``gain_db`` at ``w0`` (rad/sample), ``octaves`` between its half-gain points."""
    amp = 10.0 ** (gain_db / 40.0)
    alpha = math.sin(w0) * math.sinh(math.log(2.0) / 2.0 * octaves * w0 / math.sin(w0))
    cos = math.cos(w0)
    return _normalised((1.0 + alpha * amp, -2.0 * cos, 1.0 - alpha * amp),
                       (1.0 + alpha / amp, -2.0 * cos, 1.0 - alpha / amp))


def _high_shelf(gain_db: float, w0: float) -> np.ndarray:
    """A high shelf (slope 1): 0 dB at DC, ``gain_db`` at Nyquist, half of it (in dB) at ``w0``."""
    amp = 10.0 ** (gain_db / 40.0)
    cos, root = math.cos(w0), 2.0 * math.sqrt(amp) * math.sin(w0) / math.sqrt(2.0)
    return _normalised((amp * ((amp + 1.0) + (amp - 1.0) * cos + root), -2.0 * amp * ((amp - 1.0) + (amp + 1.0) * cos),
                        amp * ((amp + 1.0) + (amp - 1.0) * cos - root)),
                       ((amp + 1.0) - (amp - 1.0) * cos + root, 2.0 * ((amp - 1.0) - (amp + 1.0) * cos),
                        (amp + 1.0) - (amp - 1.0) * cos - root))


class Shaper:
    """:class:`ShapingConfig`'s sections at one sample rate; each call carries its ``state`` on."""

    def __init__(self, config: ShapingConfig, sample_rate: int) -> None:
        self.config = config
        self.sos = config.sections(sample_rate)
        if self.sos.shape[0]:   # imported here, not in the audio thread's first shaped call
            from scipy.signal import sosfilt

            self._sosfilt = sosfilt

    def init_state(self) -> np.ndarray:
        return np.zeros((self.sos.shape[0], 2))

    def __call__(self, audio: np.ndarray, state: np.ndarray) -> np.ndarray:
        """``audio`` shaped (float64); ``state`` (from :meth:`init_state`) is updated in place."""
        if self.sos.shape[0] == 0 or audio.shape[0] == 0:
            return np.asarray(audio, np.float64)
        out, state[...] = self._sosfilt(self.sos, np.asarray(audio, np.float64), zi=state)
        return out

    def run(self, audio: np.ndarray, state: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """What a synthesiser calls on each output piece: ``audio`` shaped, and the state to keep (``None``,
        the state a stream starts with, until there is a section to run; with none, ``audio`` as it came)."""
        if self.sos.shape[0] == 0 or audio.shape[0] == 0:
            return audio, state
        if state is None:
            state = self.init_state()
        return self(audio, state), state

    def response_db(self, freqs_hz: np.ndarray, sample_rate: int) -> np.ndarray:
        """The shaping's gain (dB) at ``freqs_hz``."""
        if self.sos.shape[0] == 0:
            return np.zeros(np.shape(freqs_hz))
        from scipy.signal import sosfreqz

        _, h = sosfreqz(self.sos, worN=2.0 * np.pi * np.asarray(freqs_hz, np.float64) / sample_rate)
        return 20.0 * np.log10(np.abs(h))

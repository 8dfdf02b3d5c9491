"""Run-time parameter changes: what OSC (or a preset, or a UI) asks the live engine to do.

Senders validate and enqueue :class:`ParamChange` objects; the live worker applies them
between blocks. Nothing that produces them touches audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: the parameter names the live engine understands, and what their value is
PARAMETERS: dict[str, str] = {
    "mode": "str: 'speech', 'singing' or 'bypass'",
    "mix": "float 0..1: dry/wet",
    "gain": "float dB -60..24: output gain",
    "note": "(int note 0..127, float velocity 0..1): live melody; velocity 0 = note off",
    "transpose": "float semitones -24..24",
    "duration": "float 0..1: world-dur vowel shortening",
    "fx": "(str plugin name, str parameter, float value)",
    "preset": "str: a preset name (never a path)",
}


@dataclass(frozen=True)
class ParamChange:
    """One change, applied by the live worker between blocks.

    Attributes:
        name: one of :data:`PARAMETERS`.
        value: as :data:`PARAMETERS` describes it (already validated by the sender).
        source: who asked (e.g. ``"osc 127.0.0.1:53211"``), for logs.
    """

    name: str
    value: Any
    source: str = ""

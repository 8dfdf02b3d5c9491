"""The two directions voxflip converts in, named so that they cannot be confused.

Internally a direction is ``Direction.TO_SPEECH`` (singing in, speech out) or
``Direction.TO_SINGING`` (speech in, singing out); the papers' "S2S" and "STS" are one letter
apart and are not used as names in the code. The values are the public names: the CLI's
``--to speech|singing`` and the OSC ``/voxflip/mode`` strings.
"""

from __future__ import annotations

import enum

from .errors import OptionError


class Direction(enum.Enum):
    """Which way a converter goes. The values are the public names (``--to speech``, OSC modes)."""

    TO_SPEECH = "speech"     # singing in, speech out
    TO_SINGING = "singing"   # speech in, singing out

    @property
    def source(self) -> str:
        """What goes in: ``"singing"`` or ``"speech"``."""
        return "singing" if self is Direction.TO_SPEECH else "speech"

    @classmethod
    def parse(cls, value: Direction | str) -> Direction:
        if isinstance(value, Direction):
            return value
        for direction in cls:
            if value in (direction.value, direction.name.lower()):
                return direction
        raise OptionError("to", value, "is not a direction; use one of", see=tuple(d.value for d in cls))

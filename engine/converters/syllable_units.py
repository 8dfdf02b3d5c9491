"""Syllable units of speech, found as the speech arrives: what speech-to-singing sings.

Each unit is an onset (the unvoiced consonants and stop closures before a voiced
nucleus), the nucleus (until the next syllable starts: a voiced onset or an
energy dip, see :mod:`voxflip.engine.features.syllables`) and, before a pause,
a coda. Pauses between phrases belong to no unit. Frames are kept in a
:class:`FrameStore` so the singer can read them back at any speed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..features.syllables import SyllableConfig, SyllableTracker
from ..features.world import Frames
from .frame_store import FrameStore


@dataclass
class Unit:
    """A syllable of the source speech, in absolute source frame indices."""

    onset: int      # first onset frame (== nucleus when there is no onset)
    nucleus: int    # first nucleus frame
    coda: int       # first coda frame (== end when there is no coda)
    end: int        # one past the last frame

    @property
    def nucleus_frames(self) -> int:
        return self.coda - self.nucleus


class UnitTracker:
    """Cuts a stream of analysed frames into :class:`Unit` s (causally) and keeps the frames."""

    def __init__(self, config: SyllableConfig, frame_s: float, bins: int) -> None:
        self.syllables = SyllableTracker(config, frame_s)
        self.store = FrameStore(bins)
        self.units: deque[Unit] = deque()   # complete, not yet taken
        self.current: Unit | None = None    # nucleus still growing
        self.pending_start: int | None = None  # first unvoiced/closure frame since the last nucleus
        self.last_sound = -1                # last frame that was not silence
        self.frames_in = 0
        self.total = 0                      # units completed so far

    def feed(self, frames: Frames, first_frame: int, input_end_frame: int | None = None) -> None:
        """Store frames ``first_frame..`` and update the units (frames at/after the input's end are ignored)."""
        self.store.append(frames)
        pause = self.syllables._pause
        for i in range(len(frames)):
            index = first_frame + i
            if input_end_frame is not None and index >= input_end_frame:
                break
            f0 = float(frames.f0_hz[i])
            event = self.syllables.update(f0 > 0, float(frames.level_db[i]), f0)
            self.frames_in += 1
            if not event.silent:
                self.last_sound = index
            if event.voiced:
                if self.current is not None and not event.syllable_start:
                    # The nucleus goes on (a short unvoiced gap inside it is absorbed).
                    self.current.coda = self.current.end = index + 1
                    self.pending_start = None
                    continue
                self._close(end_at=None)
                onset = self.pending_start if self.pending_start is not None else index
                self.current = Unit(onset=onset, nucleus=index, coda=index + 1, end=index + 1)
                self.pending_start = None
            else:
                if self.pending_start is None and not (event.silent and self.current is None):
                    self.pending_start = index
                if self.syllables.quiet_run >= pause:
                    if self.current is not None:
                        # A pause: the sounds between the nucleus and the pause are its coda.
                        self._close(end_at=self.last_sound + 1)
                    self.pending_start = None

    def close(self) -> None:
        """The input has ended: the growing unit is complete (with whatever followed it as coda)."""
        self._close(end_at=self.last_sound + 1)

    def take(self) -> Unit | None:
        """The oldest complete unit not taken yet, or None."""
        return self.units.popleft() if self.units else None

    def _close(self, end_at: int | None) -> None:
        unit = self.current
        if unit is None:
            return
        if end_at is not None and end_at > unit.coda:
            unit.end = end_at
        self.units.append(unit)
        self.total += 1
        self.current = None

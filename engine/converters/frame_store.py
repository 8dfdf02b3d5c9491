"""A growable, trimmable store of analysis frames addressed by absolute frame index."""

from __future__ import annotations

import numpy as np

from ..features.world import Frames


class FrameStore:
    """Frames ``base .. base + len - 1`` of a stream, appended at the end, dropped from the front."""

    def __init__(self, bins: int, capacity: int = 256) -> None:
        self.bins = bins
        self.base = 0
        self._n = 0
        self._f0 = np.zeros(capacity)
        self._level = np.zeros(capacity)
        self._sp = np.zeros((capacity, bins))
        self._ap = np.zeros((capacity, bins))

    @property
    def end(self) -> int:
        """Absolute index one past the last frame held."""
        return self.base + self._n

    def append(self, frames: Frames) -> None:
        m = len(frames)
        if self._n + m > self._f0.shape[0]:
            cap = max(2 * self._f0.shape[0], self._n + m)
            for name in ("_f0", "_level"):
                old = getattr(self, name)
                new = np.zeros(cap)
                new[: self._n] = old[: self._n]
                setattr(self, name, new)
            for name in ("_sp", "_ap"):
                old = getattr(self, name)
                new = np.zeros((cap, self.bins))
                new[: self._n] = old[: self._n]
                setattr(self, name, new)
        sl = slice(self._n, self._n + m)
        self._f0[sl] = frames.f0_hz
        self._level[sl] = frames.level_db
        self._sp[sl] = frames.sp
        self._ap[sl] = frames.ap
        self._n += m

    def drop_before(self, index: int) -> None:
        """Forget frames before absolute ``index``."""
        k = min(max(0, index - self.base), self._n)
        if k == 0:
            return
        for arr in (self._f0, self._level, self._sp, self._ap):
            arr[: self._n - k] = arr[k : self._n]
        self._n -= k
        self.base += k

    def f0_values(self) -> np.ndarray:
        """The F0 of every frame held (0: unvoiced), a read-only view."""
        view = self._f0[:self._n]
        view.setflags(write=False)
        return view

    def f0(self, index: int) -> float:
        return float(self._f0[index - self.base])

    def interpolate_many(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`interpolate` at each of ``positions`` at once: ``(n, bins)`` envelopes and aperiodicities,
        row for row the same numbers."""
        positions = np.asarray(positions, np.float64)
        lo = np.floor(positions)
        frac = (positions - lo)[:, None]
        i = np.clip(lo.astype(np.int64) - self.base, 0, self._n - 1)
        j = np.minimum(i + 1, self._n - 1)
        return (self._sp[i] * (1.0 - frac) + self._sp[j] * frac,
                self._ap[i] * (1.0 - frac) + self._ap[j] * frac)

    def interpolate(self, position: float) -> tuple[np.ndarray, np.ndarray]:
        """Envelope and aperiodicity at a fractional absolute frame position (linear)."""
        lo = int(np.floor(position))
        frac = position - lo
        i = min(max(lo - self.base, 0), self._n - 1)
        j = min(i + 1, self._n - 1)
        sp = self._sp[i] * (1.0 - frac) + self._sp[j] * frac
        ap = self._ap[i] * (1.0 - frac) + self._ap[j] * frac
        return sp, ap

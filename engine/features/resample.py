"""pedalboard's streaming resampler with the face of a polyphase stage: for a ratio that is not an integer.

Its output is aligned with its input and does not depend on the blocks: the first :attr:`latency`
input samples' worth of output is held back until enough input has arrived. The streaming engine's
resampler (:class:`voxflip.streaming.streamer.MonoResampler`) uses it between rates whose ratio is
not an integer, and the content student's stream (:mod:`.content_student`) to read 24 kHz audio at 16 kHz.
"""

from __future__ import annotations

import numpy as np


class PedalboardResampler:
    """Mono ``source_rate`` -> ``target_rate`` in blocks of any size (module docstring)."""

    def __init__(self, source_rate: int, target_rate: int) -> None:
        from pedalboard.io import StreamResampler

        self._r = StreamResampler(float(source_rate), float(target_rate), 1)
        self.latency = int(self._r.input_latency)
        self._fed = False   # pedalboard's resampler cannot flush before it has seen a sample

    def process(self, x: np.ndarray) -> np.ndarray:
        if not x.shape[0]:
            return np.zeros(0, np.float32)
        self._fed = True
        return self._r.process(np.asarray(x, np.float32)[None, :])[0]

    def flush(self) -> np.ndarray:
        return self._r.process()[0] if self._fed else np.zeros(0, np.float32)

    def reset(self) -> None:
        self._r.reset()
        self._fed = False

"""Turn blocks of any size into the converter's fixed grid of windows.

The chunker keeps the input of the stream in a buffer and hands out, for chunk
``k``, the window ``[k*C - context, (k+1)*C + lookahead)`` as soon as the
stream has reached its end. Samples before the start of the stream are zeros.
Because windows sit on a fixed grid, the sequence of windows (and so the
converted output) is the same whatever the block sizes were.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class Chunker:
    """Fixed-grid window scheduler over a growing buffer.

    Args:
        chunk_samples: C, the hop between windows.
        context_samples: history before each chunk.
        lookahead_samples: future after each chunk.
    """

    def __init__(self, chunk_samples: int, context_samples: int, lookahead_samples: int) -> None:
        if chunk_samples <= 0 or context_samples < 0 or lookahead_samples < 0:
            raise ValueError(
                f"chunk_samples={chunk_samples} must be > 0 and context_samples={context_samples}, "
                f"lookahead_samples={lookahead_samples} must be >= 0"
            )
        self.chunk_samples = chunk_samples
        self.context_samples = context_samples
        self.lookahead_samples = lookahead_samples
        self.window_samples = context_samples + chunk_samples + lookahead_samples
        self._capacity = max(4 * self.window_samples, 4096)
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(self._capacity, dtype=np.float64)
        self._buf_start = -self.context_samples  # absolute index of _buf[0]
        self._fill = self.context_samples         # zeros before the stream
        self.samples_in = 0                        # real samples pushed (padding excluded)
        self._padded = 0
        self.next_chunk = 0

    @property
    def available(self) -> int:
        """Absolute index one past the last sample held (real or padding)."""
        return self.samples_in + self._padded

    def push(self, samples: np.ndarray, *, padding: bool = False) -> None:
        """Append samples (1-D) to the stream."""
        n = samples.shape[0]
        if n == 0:
            return
        self._make_room(n)
        self._buf[self._fill : self._fill + n] = samples
        self._fill += n
        if padding:
            self._padded += n
        else:
            if self._padded:
                raise RuntimeError("cannot push audio after the end of the stream was padded")
            self.samples_in += n

    def pad_to_end(self) -> None:
        """Append zeros so that every chunk holding a real sample gets its full window."""
        chunks = -(-self.samples_in // self.chunk_samples)
        needed = chunks * self.chunk_samples + self.lookahead_samples - self.available
        if needed > 0:
            self.push(np.zeros(needed), padding=True)

    def chunks_pending(self) -> int:
        """How many windows are ready to be taken."""
        ready = (self.available - self.lookahead_samples) // self.chunk_samples
        return max(0, ready - self.next_chunk)

    def windows(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(chunk_index, window)`` for every window that is complete."""
        while self.chunks_pending() > 0:
            k = self.next_chunk
            lo = k * self.chunk_samples - self.context_samples - self._buf_start
            window = self._buf[lo : lo + self.window_samples]
            self.next_chunk += 1
            yield k, window

    def _make_room(self, n: int) -> None:
        # Drop what no future window needs, then grow if still short.
        keep_from = self.next_chunk * self.chunk_samples - self.context_samples - self._buf_start
        if keep_from > 0 and self._fill + n > self._buf.shape[0]:
            self._buf[: self._fill - keep_from] = self._buf[keep_from : self._fill]
            self._fill -= keep_from
            self._buf_start += keep_from
        if self._fill + n > self._buf.shape[0]:
            new = np.zeros(max(2 * self._buf.shape[0], self._fill + n), dtype=np.float64)
            new[: self._fill] = self._buf[: self._fill]
            self._buf = new

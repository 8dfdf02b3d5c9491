"""Type stubs of the C++ MAST kernel (trainer/_mast.cpp); trainer/mast.py defines the search."""

import numpy as np
import numpy.typing as npt

def mast(score: npt.NDArray[np.float32], max_skip: int) -> npt.NDArray[np.int64]:
    """The best monotonic path of a ``(T_singing, T_speech)`` score: one singing frame per speech frame."""

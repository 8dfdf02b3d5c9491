"""Type stubs of the compiled pulse synthesiser (engine/vocoder/_pulses.cpp); the docstrings are in the extension."""

import numpy as np
import numpy.typing as npt

def place_pulses(
    f0: npt.ArrayLike, hop: int, sample_rate: float, unvoiced_hz: float, phase: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], float]: ...
def frame_responses(
    f0: npt.ArrayLike,
    sp: npt.ArrayLike,
    ap: npt.ArrayLike,
    periodic: npt.NDArray[np.complex128],
    noise: npt.NDArray[np.complex128],
) -> None: ...
def pulse_responses(
    frame: npt.ArrayLike,
    weight: npt.ArrayLike,
    gain: npt.ArrayLike,
    advance: npt.ArrayLike,
    pulse_noise: npt.ArrayLike,
    periodic: npt.ArrayLike,
    noise: npt.ArrayLike,
    advance_table: npt.ArrayLike,
    out: npt.NDArray[np.float64],
) -> None: ...
def overlap_add(buffer: npt.NDArray[np.float64], starts: npt.ArrayLike, responses: npt.ArrayLike) -> None: ...

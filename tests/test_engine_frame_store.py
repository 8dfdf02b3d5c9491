"""The frame store the speech -> singing converters read their envelopes from."""

from __future__ import annotations

import numpy as np

from voxflip.engine.converters.frame_store import FrameStore
from voxflip.engine.features.world import Frames


def _frames(n: int, bins: int, rng: np.random.Generator) -> Frames:
    return Frames(rng.uniform(0, 300, n), np.ones(n), rng.uniform(-60, 0, n), rng.uniform(0, 1, (n, bins)),
                  rng.uniform(0, 1, (n, bins)))


def test_reading_many_positions_at_once_gives_the_same_numbers_as_one_at_a_time():
    rng = np.random.default_rng(5)
    store = FrameStore(bins=9, capacity=4)          # grows while appending
    store.append(_frames(30, 9, rng))
    store.drop_before(7)                            # absolute frames 7..29 remain
    positions = np.concatenate([rng.uniform(7, 29, 40), [7.0, 28.5, 29.0, 3.0, 40.0]])   # edges, and beyond
    sp, ap = store.interpolate_many(positions)
    for k, position in enumerate(positions):
        one_sp, one_ap = store.interpolate(float(position))
        np.testing.assert_array_equal(sp[k], one_sp)
        np.testing.assert_array_equal(ap[k], one_ap)
    assert sp.shape == ap.shape == (positions.shape[0], 9)

"""Flatten in Verilator: images become one vector beat each, in PyTorch's order."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hw.flatten import Flatten
from sim import golden

from stimuli import image_beats, lane_values

_rng = np.random.default_rng(7707)
# (lane shape, channels, height, width): corners and a random shape.
CASES = [(unsigned(3), 2, 3, 2), (signed(8), 1, 1, 1),
         (signed(int(_rng.integers(2, 12))), int(_rng.integers(1, 5)),
          int(_rng.integers(1, 5)), int(_rng.integers(1, 5)))]


@pytest.fixture(scope="module")
def flattens(design):
    return design([Flatten(shape, c, h * w) for shape, c, h, w in CASES], "flattens")


@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda n: str(CASES[n]))
def test_flatten_matches_golden(flattens, case):
    shape, c, h, w = CASES[case]
    rng = np.random.default_rng(case)
    for seed, (stall, images) in enumerate([(0.0, 3), (0.3, 5), (0.3, 8), (0.6, 4)]):
        x = lane_values(rng, shape, (images, c, h, w))
        res = flattens.check({f"i_{case}": image_beats(x)},
                             {f"o_{case}": golden.flatten(x).tolist()},
                             stall=stall, seed=seed, extra=seed == 1)
        if stall == 0.0:
            assert res.cycles <= images * h * w + 4

"""Pad in Verilator: zero (or constant) borders around a stream of images, under stalls."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hw.pad import Pad

from stimuli import image_beats, lane_values

_rng = np.random.default_rng(2201)


def _case():
    shape = (signed if _rng.random() < 0.5 else unsigned)(int(_rng.integers(2, 13)))
    return (shape, int(_rng.integers(1, 5)), int(_rng.integers(1, 7)), int(_rng.integers(1, 7)),
            int(_rng.integers(1, 3)), 0)


# (lane shape, channels, height, width, padding, border value): corners and random shapes.
CASES = [(unsigned(8), 3, 5, 4, 1, 0), (signed(4), 1, 1, 1, 2, 0), _case(), _case(),
         (signed(6), 2, 3, 5, 1, -7)]


@pytest.fixture(scope="module")
def pads(design):
    return design([Pad(*case) for case in CASES], "pads")


@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda n: str(CASES[n]))
def test_pad_matches_numpy(pads, case):
    shape, c, h, w, p, value = CASES[case]
    rng = np.random.default_rng(case)
    for seed, (stall, images) in enumerate([(0.0, 2), (0.3, 3), (0.3, 4), (0.6, 2)]):
        x = lane_values(rng, shape, (images, c, h, w))
        expected = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=value)
        # After the last image, the top border of the next one needs no input.
        border = [[value] * c] * (p * (w + 2 * p) + p)
        res = pads.check({f"i_{case}": image_beats(x)}, {f"o_{case}": image_beats(expected)},
                         stall=stall, seed=seed, extra=seed == 1, free={f"o_{case}": border})
        if stall == 0.0:
            # One padded pixel per cycle.
            assert res.cycles <= images * (h + 2 * p) * (w + 2 * p) + 4

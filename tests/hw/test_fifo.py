"""StreamFIFO in Verilator: every beat comes out once, in order, under random stalls."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hw.fifo import StreamFIFO
from hw.lanes import lanes

from stimuli import lane_values

# (lane shape, lanes per beat, depth): fixed corners and a random shape (fixed seed).
_rng = np.random.default_rng(1101)
CASES = [(unsigned(1), 3, 1), (unsigned(4), 2, 2), (signed(8), 4, 5),
         (signed(int(_rng.integers(2, 17))), int(_rng.integers(1, 6)), int(_rng.integers(3, 40)))]


@pytest.fixture(scope="module")
def fifos(design):
    return design([StreamFIFO(lanes(shape, n), depth) for shape, n, depth in CASES], "fifos")


@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda n: str(CASES[n]))
def test_fifo_passes_every_beat_in_order(fifos, case):
    shape, n, depth = CASES[case]
    rng = np.random.default_rng(case)
    for seed, (stall, count) in enumerate([(0.0, 50), (0.3, 200), (0.3, 3 * depth + 7),
                                           (0.6, 150), (0.9, 40)]):
        beats = lane_values(rng, shape, (count, n)).tolist()
        res = fifos.check({f"i_{case}": beats}, {f"o_{case}": beats}, stall=stall, seed=seed,
                          extra=seed == 1)
        if stall == 0.0:
            # Nothing in the way: a beat per cycle once the FIFO runs, at every depth
            # (StreamFIFO rounds depths 1 and 2 up to 3, see hw/fifo.py).
            assert res.cycles <= count + 4


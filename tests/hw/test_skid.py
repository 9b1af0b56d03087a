"""SkidBuffer in Verilator: every beat once, in order, a beat per cycle, under random stalls."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hw.lanes import lanes
from hw.skid import SkidBuffer

from stimuli import lane_values

# (lane shape, lanes per beat): fixed corners and a random shape (fixed seed).
_rng = np.random.default_rng(1201)
CASES = [(unsigned(1), 1), (signed(8), 4),
         (signed(int(_rng.integers(2, 17))), int(_rng.integers(1, 6)))]


@pytest.fixture(scope="module")
def skids(design):
    return design([SkidBuffer(lanes(shape, n)) for shape, n in CASES], "skids")


@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda n: str(CASES[n]))
def test_skid_passes_every_beat_in_order(skids, case):
    shape, n = CASES[case]
    rng = np.random.default_rng(case)
    for seed, (stall, count) in enumerate([(0.0, 50), (0.3, 200), (0.6, 150), (0.9, 40)]):
        beats = lane_values(rng, shape, (count, n)).tolist()
        res = skids.check({f"i_{case}": beats}, {f"o_{case}": beats}, stall=stall, seed=seed,
                          extra=seed == 1)
        if stall == 0.0:
            # No bubble: a beat per cycle after the one cycle of latency.
            ends = res.out_cycles[f"o_{case}"]
            assert ends[-1] - ends[0] == count - 1
            assert res.cycles <= count + 4

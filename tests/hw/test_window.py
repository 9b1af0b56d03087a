"""SlidingWindow in Verilator: every window of a stream of images, under stalls."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hw.window import SlidingWindow
from sim import golden

from stimuli import image_beats, lane_values


def windows(x, k, s):
    """Window beats by direct loops: lane ``(ky * k + kx) * C + c``, raster order."""
    b, c, h, w = x.shape
    beats = []
    for n in range(b):
        for i in range(0, h - k + 1, s):
            for j in range(0, w - k + 1, s):
                beats.append([int(x[n, ch, i + ky, j + kx]) for ky in range(k)
                              for kx in range(k) for ch in range(c)])
    return beats


_rng = np.random.default_rng(3301)


def _case():
    k = int(_rng.integers(1, 4))
    return ((signed if _rng.random() < 0.5 else unsigned)(int(_rng.integers(2, 10))),
            int(_rng.integers(1, 4)), int(_rng.integers(k, 8)), int(_rng.integers(k, 8)), k,
            int(_rng.integers(1, 3)))


# (lane shape, channels, height, width, kernel, stride)
CASES = [(unsigned(8), 2, 6, 5, 3, 1), (signed(5), 3, 7, 7, 2, 2), (signed(4), 1, 4, 4, 4, 1),
         _case(), _case()]


@pytest.fixture(scope="module")
def windows_hw(design):
    return design([SlidingWindow(*case) for case in CASES], "windows")


@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda n: str(CASES[n]))
def test_window_matches_loops_and_conv(windows_hw, case):
    shape, c, h, w, k, s = CASES[case]
    core = windows_hw.core.cores[case]
    rng = np.random.default_rng(case)
    for seed, (stall, images) in enumerate([(0.0, 2), (0.3, 3), (0.3, 2), (0.6, 3)]):
        x = lane_values(rng, shape, (images, c, h, w))
        expected = windows(x, k, s)
        assert len(expected) == images * core.out_height * core.out_width
        # The window lanes are what a conv's weight matrix meets (compiler/plan.py layout).
        wt = rng.integers(-3, 4, size=(2, c, k, k))
        matrix = wt.transpose(0, 2, 3, 1).reshape(2, -1)
        conv = golden.conv2d(x, wt, stride=s)
        np.testing.assert_array_equal(np.array(expected) @ matrix.T,
                                      conv.transpose(0, 2, 3, 1).reshape(-1, 2))
        res = windows_hw.check({f"i_{case}": image_beats(x)}, {f"o_{case}": expected},
                               stall=stall, seed=seed, extra=seed == 1)
        if stall == 0.0:
            # A pixel goes in every cycle.
            assert res.cycles <= images * h * w + 4

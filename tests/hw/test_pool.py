"""WindowMax and GlobalSum in Verilator against the golden model, under stalls."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hw.lanes import shape_for_range, shape_range
from hw.pad import Pad
from hw.pool import GlobalSum, WindowMax
from hw.window import SlidingWindow
from sim import golden

from stimuli import Chain, image_beats, lane_values

_rng = np.random.default_rng(4401)


def _shape():
    return (signed if _rng.random() < 0.5 else unsigned)(int(_rng.integers(1, 12)))


# WindowMax alone on random window beats: (lane shape, channels, window pixels)
MAX_CASES = [(signed(8), 3, 9), (unsigned(1), 2, 4),
             (_shape(), int(_rng.integers(1, 5)), int(_rng.integers(1, 10)))]
# Max pooling as the compiler lowers it, (Pad +) SlidingWindow + WindowMax, against
# golden.maxpool: (lane shape, channels, height, width, padding, kernel, stride)
POOL_CASES = [(signed(6), 2, 6, 6, 0, 2, 2), (unsigned(4), 3, 7, 5, 0, 3, 2),
              (unsigned(5), 2, 5, 4, 1, 3, 2), (signed(5), 3, 7, 6, 1, 3, 2),
              (signed(4), 1, 5, 5, 2, 3, 1)]
# GlobalSum: (input lane shape, channels, pixels)
SUM_CASES = [(signed(8), 4, 16), (unsigned(3), 2, 1),
             (_shape(), int(_rng.integers(1, 6)), int(_rng.integers(2, 50)))]


def _pool_chain(shape, c, h, w, p, k, s):
    # As the compiler pads a max pool: with the lowest value of the lane, which never wins.
    cores = [Pad(shape, c, h, w, p, value=shape_range(shape)[0])] if p else []
    return Chain(*cores, SlidingWindow(shape, c, h + 2 * p, w + 2 * p, k, s),
                 WindowMax(shape, c, k * k))


def _sum_shape(shape, pixels):
    lo, hi = shape_range(shape)
    return shape_for_range(lo * pixels, hi * pixels)      # exactly wide enough


@pytest.fixture(scope="module")
def pools(design):
    # One build: the WindowMax cases, then the pooling chains, then the GlobalSum cases.
    return design([WindowMax(*case) for case in MAX_CASES]
                  + [_pool_chain(*case) for case in POOL_CASES]
                  + [GlobalSum(shape, _sum_shape(shape, pixels), c, pixels)
                     for shape, c, pixels in SUM_CASES], "pools")


@pytest.mark.parametrize("case", range(len(MAX_CASES)), ids=lambda n: str(MAX_CASES[n]))
def test_window_max(pools, case):
    shape, c, win = MAX_CASES[case]
    rng = np.random.default_rng(case)
    for seed, (stall, count) in enumerate([(0.0, 40), (0.3, 150), (0.3, 60), (0.6, 60)]):
        beats = lane_values(rng, shape, (count, win, c))
        if seed == 2:     # many equal values and only the extremes
            lo, hi = shape_range(shape)
            beats = rng.choice([lo, hi], size=beats.shape)
        expected = beats.max(axis=1)
        res = pools.check({f"i_{case}": beats.reshape(count, -1).tolist()},
                          {f"o_{case}": expected.tolist()}, stall=stall, seed=seed,
                          extra=seed == 1)
        if stall == 0.0:
            assert res.cycles <= count + 4


@pytest.mark.parametrize("case", range(len(POOL_CASES)), ids=lambda n: str(POOL_CASES[n]))
def test_maxpool_chain(pools, case):
    shape, c, h, w, p, k, s = POOL_CASES[case]
    port = len(MAX_CASES) + case
    rng = np.random.default_rng(case)
    for seed, (stall, images) in enumerate([(0.0, 2), (0.3, 3), (0.3, 3), (0.6, 2)]):
        x = lane_values(rng, shape, (images, c, h, w))
        if seed == 2:     # the lowest values at the border: the padding must not change them
            x[:, :, 0, :] = shape_range(shape)[0]
        pooled = golden.maxpool(x, kernel=k, stride=s, padding=p)
        # A padded chain may rightly start the next image's border; no extra check there.
        pools.check({f"i_{port}": image_beats(x)}, {f"o_{port}": image_beats(pooled)},
                    stall=stall, seed=seed, extra=seed == 1 and not p)


@pytest.mark.parametrize("case", range(len(SUM_CASES)), ids=lambda n: str(SUM_CASES[n]))
def test_global_sum(pools, case):
    shape, c, pixels = SUM_CASES[case]
    port = len(MAX_CASES) + len(POOL_CASES) + case
    lo, hi = shape_range(shape)
    rng = np.random.default_rng(case)
    for seed, (stall, images) in enumerate([(0.0, 3), (0.3, 5), (0.3, 4), (0.6, 4)]):
        x = lane_values(rng, shape, (images, c, 1, pixels))
        # Every pixel at an extreme in one image: the sum reaches the end of out_shape.
        x[0] = lo if seed % 2 else hi
        res = pools.check({f"i_{port}": image_beats(x)}, {f"o_{port}": golden.gap(x).tolist()},
                          stall=stall, seed=seed, extra=seed == 1)
        if stall == 0.0:
            assert res.cycles <= images * pixels + 4

"""Fork and AddJoin in Verilator, alone and as a residual block, under random stalls."""

import numpy as np
import pytest
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.fifo import StreamFIFO
from hw.join import AddJoin, Fork
from hw.lanes import lanes, shape_for_range, shape_range
from hw.mvu import ConstantMVU
from hw.pad import Pad
from hw.window import SlidingWindow
from sim import golden

from stimuli import image_beats, lane_values

_rng = np.random.default_rng(8801)

# Fork: (lane shape, lanes, outputs)
FORK_CASES = [(signed(5), 3, 2), (unsigned(1), 2, 3),
              (unsigned(int(_rng.integers(1, 12))), int(_rng.integers(1, 5)), 2)]
# AddJoin: (a lane shape, b lane shape, lanes); the output is exactly wide enough.
ADD_CASES = [(signed(4), unsigned(6), 3), (unsigned(8), unsigned(8), 2),
             (signed(int(_rng.integers(1, 14))), signed(int(_rng.integers(1, 14))),
              int(_rng.integers(1, 6)))]


def _sum_shape(a, b):
    (alo, ahi), (blo, bhi) = shape_range(a), shape_range(b)
    return shape_for_range(alo + blo, ahi + bhi)


class Residual(wiring.Component):
    """``x + conv3x3(x)``, padding 1, as the compiler lowers a residual block.

    A Fork sends each pixel to the conv branch (Pad, SlidingWindow, ConstantMVU)
    and to the skip branch, which a FIFO delays until the conv catches up (the
    conv needs about a row of pixels before its first output). ``skip_on_a``
    picks which AddJoin input the skip branch feeds.
    """

    def __init__(self, shape, c, h, w, weights, skip_on_a, depth):
        self.shape, self.c, self.h, self.w = shape, c, h, w
        self.weights, self.skip_on_a, self.depth = weights, skip_on_a, depth
        lo, hi = shape_range(shape)
        matrix = weights.transpose(0, 2, 3, 1).reshape(c, -1)
        acc_lo = int(np.minimum(matrix * lo, matrix * hi).sum(1).min())
        acc_hi = int(np.maximum(matrix * lo, matrix * hi).sum(1).max())
        self.acc_shape = shape_for_range(min(acc_lo, -1), acc_hi)
        self.matrix = matrix
        self.out_shape = _sum_shape(self.acc_shape, shape)
        super().__init__({"i": In(stream.Signature(lanes(shape, c))),
                          "o": Out(stream.Signature(lanes(self.out_shape, c)))})

    def elaborate(self, platform):
        m = Module()
        s, c, h, w = self.shape, self.c, self.h, self.w
        m.submodules.fork = fork = Fork(lanes(s, c), 2)
        m.submodules.pad = pad = Pad(s, c, h, w, 1)
        m.submodules.window = window = SlidingWindow(s, c, h + 2, w + 2, 3)
        m.submodules.mvu = mvu = ConstantMVU(self.matrix.tolist(), in_shape=s,
                                             acc_width=self.acc_shape.width, levels_per_stage=1)
        m.submodules.skip = skip = StreamFIFO(lanes(s, c), self.depth)
        sa, sb = (s, self.acc_shape) if self.skip_on_a else (self.acc_shape, s)
        m.submodules.add = add = AddJoin(sa, sb, self.out_shape, c)
        wiring.connect(m, wiring.flipped(self.i), fork.i)
        wiring.connect(m, fork.o[0], pad.i)
        wiring.connect(m, pad.o, window.i)
        wiring.connect(m, window.o, mvu.i)
        wiring.connect(m, fork.o[1], skip.i)
        conv_in, skip_in = (add.b, add.a) if self.skip_on_a else (add.a, add.b)
        wiring.connect(m, mvu.o, conv_in)
        wiring.connect(m, skip.o, skip_in)
        wiring.connect(m, add.o, wiring.flipped(self.o))
        return m

    def golden(self, x):
        return golden.add(golden.conv2d(x, self.weights, padding=1), x)


def _residuals():
    rng = np.random.default_rng(12)
    w1 = rng.integers(-1, 2, size=(2, 2, 3, 3))
    w2 = rng.choice([-4, -2, -1, 0, 1, 2, 4], size=(3, 3, 3, 3))
    # The skip FIFO holds what the conv branch needs before its first output and more.
    return [Residual(signed(4), 2, 5, 4, w1, True, 2 * 4 + 8),
            Residual(unsigned(3), 3, 4, 6, w2, False, 2 * 6 + 8)]


@pytest.fixture(scope="module")
def joins(design):
    return design([Fork(lanes(shape, n), outs) for shape, n, outs in FORK_CASES]
                  + [AddJoin(a, b, _sum_shape(a, b), n) for a, b, n in ADD_CASES]
                  + _residuals(), "joins")


@pytest.mark.parametrize("case", range(len(FORK_CASES)), ids=lambda n: str(FORK_CASES[n]))
def test_fork_copies_every_beat_to_every_output(joins, case):
    shape, n, outs = FORK_CASES[case]
    rng = np.random.default_rng(case)
    for seed, (stall, count) in enumerate([(0.0, 40), (0.3, 150), (0.3, 60), (0.6, 60)]):
        beats = lane_values(rng, shape, (count, n)).tolist()
        res = joins.check({f"i_{case}": beats}, {f"o_{case}[{j}]": beats for j in range(outs)},
                          stall=stall, seed=seed, extra=seed == 1)
        if stall == 0.0:
            assert res.cycles <= count + 4


@pytest.mark.parametrize("case", range(len(ADD_CASES)), ids=lambda n: str(ADD_CASES[n]))
def test_add_join_matches_golden(joins, case):
    a_shape, b_shape, n = ADD_CASES[case]
    port = len(FORK_CASES) + case
    rng = np.random.default_rng(case)
    for seed, (stall, count) in enumerate([(0.0, 40), (0.3, 150), (0.3, 60), (0.6, 60)]):
        a = lane_values(rng, a_shape, (count, n))
        b = lane_values(rng, b_shape, (count, n))
        res = joins.check({f"a_{port}": a.tolist(), f"b_{port}": b.tolist()},
                          {f"o_{port}": golden.add(a, b).tolist()}, stall=stall, seed=seed,
                          extra=seed == 1)
        if stall == 0.0:
            assert res.cycles <= count + 4


@pytest.mark.parametrize("case", range(2), ids=["skip-on-a", "skip-on-b"])
def test_residual_block_with_delayed_skip(joins, case):
    port = len(FORK_CASES) + len(ADD_CASES) + case
    core = joins.core.cores[port]
    rng = np.random.default_rng(case)
    for seed, (stall, images) in enumerate([(0.0, 3), (0.3, 3), (0.3, 2), (0.6, 2)]):
        x = lane_values(rng, core.shape, (images, core.c, core.h, core.w))
        y = core.golden(x)
        lo, hi = shape_range(core.out_shape)
        assert lo <= y.min() and y.max() <= hi
        # The conv branch may start the next image's border, but no sum comes without
        # the skip branch's pixel: nothing beyond the images.
        res = joins.check({f"i_{port}": image_beats(x)}, {f"o_{port}": image_beats(y)},
                          stall=stall, seed=seed, extra=seed == 1)
        if stall == 0.0:
            # The block streams: a padded image's worth of cycles per image, plus latency.
            assert res.cycles <= images * (core.h + 2) * (core.w + 2) + 40

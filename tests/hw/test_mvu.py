"""ConstantMVU and RomMVU in Verilator against golden.dense (and conv2d), under stalls.

Weights of every form the compiler makes (ternary, powers of two, m-bit integers),
accumulators exactly as wide as the worst case needs, raw or requantized by
thresholds; RomMVU folded with several PE x SIMD choices.
"""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hw.lanes import int_shape, shape_range
from hw.mvu import ConstantMVU, RomMVU
from hw.pad import Pad
from hw.window import SlidingWindow
from sim import golden

from stimuli import Chain, image_beats, lane_values


def random_weights(rng, kind, n, k):
    if kind == "ternary":
        w = rng.integers(-1, 2, size=(n, k))
    elif kind == "pow2":
        w = rng.choice([-1, 1], size=(n, k)) * 2 ** rng.integers(0, 6, size=(n, k))
        w[rng.random((n, k)) < 0.2] = 0
    else:
        w = rng.integers(-128, 128, size=(n, k))
        w[:, 0] = rng.choice([-128, 127, 85, -86], size=n)    # dense and long CSD forms
    w[0] = 0 if n > 2 else w[0]                               # an all-zero row
    return w.astype(np.int64)


def acc_range(w, bias, in_shape, in_pow2=False):
    """Exact worst-case accumulator range per output, in Python integers."""
    lo, hi = shape_range(in_shape)
    if in_pow2:
        lo, hi = int(golden.pow2_value(lo)), int(golden.pow2_value(hi))
    los = [int(b) + sum(min(int(v) * lo, int(v) * hi) for v in row) for row, b in zip(w, bias)]
    his = [int(b) + sum(max(int(v) * lo, int(v) * hi) for v in row) for row, b in zip(w, bias)]
    return min(los), max(his)


def acc_width(lo, hi):
    return max((-lo - 1).bit_length(), hi.bit_length()) + 1


class Case:
    """One MVU: weights, bias, widths and (optionally) thresholds, from a seed."""

    def __init__(self, seed, kind, n, k, in_shape, *, bias=True, bits=None, out_signed=False,
                 pe=None, simd=None, levels=3, in_pow2=False, **opts):
        self.opts = opts        # the pipelining choices of the core
        rng = np.random.default_rng(seed)
        self.in_pow2 = in_pow2
        self.kind, self.in_shape, self.pe, self.simd, self.levels = kind, in_shape, pe, simd, levels
        self.w = random_weights(rng, kind, n, k)
        self.bias = rng.integers(-300, 300, size=n) if bias else np.zeros(n, np.int64)
        lo, hi = acc_range(self.w, self.bias, in_shape, in_pow2)
        self.acc_width = acc_width(lo, hi)
        self.bits, self.out_signed = bits, out_signed
        self.th = None
        if bits:
            # Requantization thresholds over the accumulator range, as the compiler makes them.
            m = (2 ** bits) / (hi - lo + 1) * rng.uniform(0.7, 3.0, n)
            b = rng.uniform(-2 ** bits, 2 ** bits, n) / 2 - m * (lo + hi) / 2 \
                + (0 if not out_signed else -0.5)
            self.th = golden.thresholds_for_requant(m, b, bits=bits, signed=out_signed,
                                                    x_lo=lo, x_hi=hi)

    def kwargs(self):
        kw = dict(in_shape=self.in_shape, acc_width=self.acc_width, bias=self.bias.tolist(),
                  in_pow2=self.in_pow2)
        if self.th is not None:
            kw.update(thresholds=self.th.tolist(), out_shape=int_shape(self.bits, self.out_signed),
                      out_lo=golden.int_range(self.bits, self.out_signed)[0])
        return kw

    def core(self):
        if self.pe is None:
            return ConstantMVU(self.w.tolist(), levels_per_stage=self.levels, **self.kwargs(),
                               **self.opts)
        return RomMVU(self.w.tolist(), pe=self.pe, simd=self.simd, levels_per_stage=self.levels,
                      **self.kwargs(), **self.opts)

    def golden(self, x):
        acc = golden.dense(golden.pow2_value(x) if self.in_pow2 else x, self.w, self.bias)
        assert acc.min() >= -(1 << (self.acc_width - 1)) and acc.max() < 1 << (self.acc_width - 1)
        if self.th is None:
            return acc
        return golden.threshold(acc, self.th, bits=self.bits, signed=self.out_signed)

    def __repr__(self):
        fold = "const" if self.pe is None else f"pe{self.pe}xsimd{self.simd}"
        return (f"{self.kind}-{self.w.shape[0]}x{self.w.shape[1]}-{fold}-{self.in_shape}"
                + (f"-th{self.bits}" if self.bits else "") + ("-pow2codes" if self.in_pow2 else "")
                + f"-lps{self.levels}" + "".join(f"-{k}={v}" for k, v in self.opts.items()))


_rng = np.random.default_rng(6601)
CASES = [
    # ConstantMVU: hard-wired ternary, pow2 and int weights; pipelining choices.
    Case(1, "ternary", 5, 12, signed(4), levels=1),
    Case(2, "pow2", 4, 6, unsigned(8), bias=False, levels=2),
    Case(3, "int", 3, 7, signed(8), bits=3, out_signed=True, levels=None),
    Case(4, str(_rng.choice(["ternary", "pow2", "int"])), int(_rng.integers(1, 7)),
         int(_rng.integers(1, 17)), signed(int(_rng.integers(2, 9))), bits=2),
    # RomMVU: N=6, K=8 folded several ways, with and without thresholds.
    Case(5, "int", 6, 8, signed(8), pe=1, simd=1),
    Case(6, "pow2", 6, 8, unsigned(4), pe=2, simd=4, bits=2),
    Case(7, "ternary", 6, 8, signed(3), pe=3, simd=8, bits=3, out_signed=True),
    Case(8, "int", 6, 8, unsigned(1), pe=6, simd=2, bits=1),
    Case(9, "ternary", 4, 6, signed(2), pe=4, simd=6),
    # Power-of-two activation codes in: exponent addition and one shift per product.
    Case(10, "pow2", 5, 6, unsigned(3), in_pow2=True, bits=3),
    Case(11, "pow2", 6, 8, unsigned(3), pe=2, simd=4, in_pow2=True, bits=2),
    Case(12, "int", 6, 8, unsigned(2), pe=3, simd=2, in_pow2=True),
    # Pipelining: comparisons without registers, a 40-threshold search step per register
    # (signals from the threshold ROM, constants hard-wired), the folded tree pipelined
    # every level or not at all, the weight word straight from the ROM.
    Case(13, "ternary", 4, 9, signed(3), bits=3, levels=2, register_compares=False),
    Case(14, "int", 6, 8, signed(6), pe=2, simd=4, bits=3, levels=None,
         register_compares=False, register_rom=False),
    Case(15, "int", 4, 6, signed(8), pe=2, simd=3, bits=6, levels=1),
    Case(16, "int", 3, 5, signed(8), bits=6, levels=1),
    Case(17, "ternary", 6, 8, signed(4), pe=3, simd=8, bits=2, levels=2, register_rom=False),
]


@pytest.fixture(scope="module")
def mvus(design):
    return design([case.core() for case in CASES] + [conv_chain()], "mvus")


@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda n: repr(CASES[n]))
def test_mvu_matches_golden_dense(mvus, case):
    c = CASES[case]
    core = mvus.core.cores[case]
    rng = np.random.default_rng(100 + case)
    k = c.w.shape[1]
    for seed, (stall, count) in enumerate([(0.0, 30), (0.3, 60), (0.3, 40), (0.6, 30)]):
        x = lane_values(rng, c.in_shape, (count, k))
        if seed == 2:    # inputs that drive every accumulator to its extremes
            lo, hi = shape_range(c.in_shape)
            x[:len(c.w)] = np.where(c.w > 0, hi, lo)
            x[len(c.w):2 * len(c.w)] = np.where(c.w > 0, lo, hi)[:len(x) - len(c.w)]
        res = mvus.check({f"i_{case}": x.tolist()}, {f"o_{case}": c.golden(x).tolist()},
                         stall=stall, seed=seed, extra=seed == 1)
        if stall == 0.0:
            if c.pe is None:    # a vector per cycle
                assert res.cycles <= count + core.latency + 4
            else:               # exactly cycles_per_vector per vector, back to back
                assert res.cycles <= count * core.cycles_per_vector + core.latency + 2
                ends = res.out_cycles[f"o_{case}"]
                assert ends[-1] - ends[0] == (count - 1) * core.cycles_per_vector


# A conv as the compiler lowers it: Pad + SlidingWindow + RomMVU with thresholds, weights
# as compiler/plan.py lays them out, against golden.conv2d with stride and padding.
CONV = dict(shape=signed(4), c=3, h=6, w=5, o=4, k=3, stride=2, padding=1, bits=2)


def _conv_case():
    p = CONV
    rng = np.random.default_rng(77)
    w = rng.integers(-4, 5, size=(p["o"], p["c"], p["k"], p["k"]))
    bias = rng.integers(-20, 20, size=p["o"])
    matrix = w.transpose(0, 2, 3, 1).reshape(p["o"], -1)
    lo, hi = acc_range(matrix, bias, p["shape"])
    m = np.full(p["o"], 2 ** p["bits"] / (hi - lo + 1) * 4)
    b = 2 ** p["bits"] / 2 - m * (lo + hi) / 2          # centred on the accumulator range
    th = golden.thresholds_for_requant(m, b, bits=p["bits"], signed=False, x_lo=lo, x_hi=hi)
    return w, bias, matrix, acc_width(lo, hi), (m, b), th


def conv_chain():
    p = CONV
    w, bias, matrix, width, _, th = _conv_case()
    hp, wp = p["h"] + 2 * p["padding"], p["w"] + 2 * p["padding"]
    return Chain(Pad(p["shape"], p["c"], p["h"], p["w"], p["padding"]),
                 SlidingWindow(p["shape"], p["c"], hp, wp, p["k"], p["stride"]),
                 RomMVU(matrix.tolist(), in_shape=p["shape"], acc_width=width, pe=2, simd=9,
                        bias=bias.tolist(), thresholds=th.tolist(), out_shape=unsigned(p["bits"]),
                        out_lo=0))


def test_conv_chain_matches_golden_conv2d(mvus):
    p = CONV
    port = len(CASES)
    w, bias, _, _, (m, b), th = _conv_case()
    rng = np.random.default_rng(5)
    for seed, (stall, images) in enumerate([(0.0, 2), (0.3, 3), (0.6, 2)]):
        x = lane_values(rng, p["shape"], (images, p["c"], p["h"], p["w"]))
        acc = golden.conv2d(x, w, bias, stride=p["stride"], padding=p["padding"])
        y = golden.threshold(acc, th, bits=p["bits"], signed=False)
        np.testing.assert_array_equal(y, golden.requant(acc, m, b, bits=p["bits"], signed=False))
        mvus.check({f"i_{port}": image_beats(x)}, {f"o_{port}": image_beats(y)}, stall=stall,
                   seed=seed, extra=False)

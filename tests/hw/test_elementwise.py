"""ReLU and Thresholds in Verilator against the golden model, under stalls."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hw.elementwise import Pow2Decode, ReLU, Thresholds
from hw.lanes import int_shape, shape_range
from sim import golden

from stimuli import lane_values

_rng = np.random.default_rng(5501)

# (input lane shape, output lane shape, lanes)
RELU_CASES = [(signed(8), unsigned(7), 4), (signed(1), unsigned(1), 3),
              (unsigned(5), unsigned(5), 2),
              (signed(w := int(_rng.integers(2, 20))), signed(w), int(_rng.integers(1, 8)))]


@pytest.mark.parametrize("case", range(len(RELU_CASES)), ids=lambda n: str(RELU_CASES[n]))
def test_relu(lanewise, case):
    in_shape, out_shape, n = RELU_CASES[case]
    rng = np.random.default_rng(case)
    for seed, (stall, count) in enumerate([(0.0, 40), (0.3, 150), (0.3, 60), (0.6, 60)]):
        x = lane_values(rng, in_shape, (count, n))
        res = lanewise.check({f"i_{case}": x.tolist()}, {f"o_{case}": golden.relu(x).tolist()},
                             stall=stall, seed=seed, extra=seed == 1)
        if stall == 0.0:
            assert res.cycles <= count + 4


def _requant_case(rng, in_shape, channels, bits, out_signed):
    """Per-channel multiplier/offset and the thresholds the compiler would make of them."""
    lo, hi = shape_range(in_shape)
    out_lo, out_hi = golden.int_range(bits, out_signed)
    # Scales that spread the input range over about 0.5 .. 3 times the output range.
    m = (out_hi - out_lo + 1) / (hi - lo + 1) * rng.uniform(0.5, 3.0, channels)
    b = rng.uniform(-(out_hi - out_lo), out_hi - out_lo, channels) / 2 + (out_lo + out_hi) / 2 \
        - m * (lo + hi) / 2
    th = golden.thresholds_for_requant(m, b, bits=bits, signed=out_signed, x_lo=lo, x_hi=hi)
    return m, b, th


# (input lane shape, channels, output bits, output signed)
TH_CASES = [(signed(12), 4, 2, False), (unsigned(8), 3, 3, True), (signed(1), 2, 1, False),
            # Wide outputs: 63 and 255 thresholds, found by binary search in hardware.
            (signed(14), 3, 6, False), (signed(16), 2, 8, True),
            (int_shape(int(_rng.integers(2, 18)), bool(_rng.random() < 0.5)),
             int(_rng.integers(1, 6)), int(_rng.integers(1, 5)), bool(_rng.random() < 0.5))]


def _th_case(case):
    """Multiplier, offset and thresholds of a Thresholds case."""
    in_shape, c, bits, out_signed = TH_CASES[case]
    rng = np.random.default_rng(100 + case)
    m, b, th = _requant_case(rng, in_shape, c, bits, out_signed)
    # One channel's staircase lies wholly beyond the input range (always the lowest
    # code), another's wholly below it (always the highest), as constants may.
    lo, hi = shape_range(in_shape)
    th[0] = hi + 1 + np.arange(th.shape[1])
    if c > 1:
        th[-1] = lo - 5
    return m, b, th


@pytest.fixture(scope="module")
def lanewise(design):
    # One build: the ReLU cases, then the Thresholds cases.
    cores = [ReLU(*case) for case in RELU_CASES]
    for case, (in_shape, c, bits, out_signed) in enumerate(TH_CASES):
        out_lo, _ = golden.int_range(bits, out_signed)
        cores.append(Thresholds(in_shape, int_shape(bits, out_signed), _th_case(case)[2].tolist(),
                                out_lo))
    for code_bits, n in DECODE_CASES:
        cores.append(Pow2Decode(unsigned(code_bits), unsigned(2 ** code_bits - 1), n))
    # The Thresholds cases again, compared (or searched) without pipeline registers.
    for case, (in_shape, c, bits, out_signed) in enumerate(TH_CASES):
        out_lo, _ = golden.int_range(bits, out_signed)
        cores.append(Thresholds(in_shape, int_shape(bits, out_signed), _th_case(case)[2].tolist(),
                                out_lo, pipelined=False))
    return design(cores, "lanewise")


# (code bits, lanes) of Pow2Decode
DECODE_CASES = [(1, 3), (3, 4), (4, 2)]


@pytest.mark.parametrize("case", range(len(DECODE_CASES)))
def test_pow2_decode(lanewise, case):
    code_bits, n = DECODE_CASES[case]
    port = len(RELU_CASES) + len(TH_CASES) + case
    rng = np.random.default_rng(300 + case)
    for seed, (stall, count) in enumerate([(0.0, 40), (0.3, 120), (0.6, 60)]):
        x = lane_values(rng, unsigned(code_bits), (count, n))
        res = lanewise.check({f"i_{port}": x.tolist()},
                             {f"o_{port}": golden.pow2_value(x).tolist()},
                             stall=stall, seed=seed, extra=seed == 1)
        if stall == 0.0:
            assert res.cycles <= count + 4


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "combinational"])
@pytest.mark.parametrize("case", range(len(TH_CASES)), ids=lambda n: str(TH_CASES[n]))
def test_thresholds_equal_requant(lanewise, case, pipelined):
    in_shape, c, bits, out_signed = TH_CASES[case]
    port = len(RELU_CASES) + case
    if not pipelined:
        port += len(TH_CASES) + len(DECODE_CASES)
    core = lanewise.core.cores[port]
    assert core.pipelined == pipelined
    m, b, th = _th_case(case)
    lo, hi = shape_range(in_shape)
    rng = np.random.default_rng(case)
    for seed, (stall, count) in enumerate([(0.0, 40), (0.3, 150), (0.3, 60), (0.6, 60)]):
        x = lane_values(rng, in_shape, (count, c))
        if seed == 2:    # every value at a threshold and either side of it, in every lane
            near = np.unique(np.clip(np.concatenate([th.ravel() - 1, th.ravel(), th.ravel() + 1]),
                                     lo, hi))
            x = np.repeat(near[:, None], c, axis=1)
        expected = golden.threshold(x, th, bits=bits, signed=out_signed)
        # The thresholds made from (m, b) are the requantization itself.
        inner = slice(1, c - 1) if c > 2 else slice(1, 1)
        np.testing.assert_array_equal(
            golden.threshold(x[:, inner], th[inner], bits=bits, signed=out_signed),
            golden.requant(x[:, inner], m[inner], b[inner], bits=bits, signed=out_signed))
        res = lanewise.check({f"i_{port}": x.tolist()}, {f"o_{port}": expected.tolist()},
                             stall=stall, seed=seed, extra=seed == 1)
        if stall == 0.0:     # a beat per cycle, whatever the pipeline's depth
            assert res.cycles <= len(x) + core.latency + 3

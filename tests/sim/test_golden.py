"""The golden model against direct loop definitions, and requant == its threshold form."""

import numpy as np
import pytest

from compiler.ir import Graph, Node, validate_graph
from compiler.passes import infer_ranges
from compiler.passes.requant import lower_requant
from sim import golden

RNG_SEED = 20240


def big_ints(rng, lo, hi, size):
    return rng.integers(lo, hi, size=size, endpoint=True).astype(np.int64)


@pytest.mark.parametrize("trial", range(6))
def test_conv2d_equals_loops(trial):
    rng = np.random.default_rng(RNG_SEED + trial)
    b, c, o = rng.integers(1, 3), rng.integers(1, 4), rng.integers(1, 4)
    k = int(rng.integers(1, 4))
    stride, padding = int(rng.integers(1, 3)), int(rng.integers(0, 3))
    h, w = int(rng.integers(k, 8)), int(rng.integers(k, 8))
    x = big_ints(rng, -2 ** 20, 2 ** 20, (b, c, h, w))
    wt = big_ints(rng, -2 ** 20, 2 ** 20, (o, c, k, k))
    bias = big_ints(rng, -2 ** 30, 2 ** 30, o)
    y = golden.conv2d(x, wt, bias, stride=stride, padding=padding)
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    assert y.shape == (b, o, ho, wo) and y.dtype == np.int64
    for n in range(b):
        for oc in range(o):
            for i in range(ho):
                for j in range(wo):
                    acc = int(bias[oc])
                    for ch in range(c):
                        for u in range(k):
                            for v in range(k):
                                yy, xx = i * stride + u - padding, j * stride + v - padding
                                if 0 <= yy < h and 0 <= xx < w:
                                    acc += int(wt[oc, ch, u, v]) * int(x[n, ch, yy, xx])
                    assert y[n, oc, i, j] == acc
    # Without bias: the same minus the bias.
    np.testing.assert_array_equal(golden.conv2d(x, wt, stride=stride, padding=padding),
                                  y - bias[None, :, None, None])


def test_dense_equals_loops():
    rng = np.random.default_rng(RNG_SEED)
    for _ in range(5):
        b, k, o = rng.integers(1, 4), rng.integers(1, 40), rng.integers(1, 10)
        x = big_ints(rng, -2 ** 24, 2 ** 24, (b, k))
        w = big_ints(rng, -2 ** 24, 2 ** 24, (o, k))
        bias = big_ints(rng, -2 ** 40, 2 ** 40, o)
        y = golden.dense(x, w, bias)
        for n in range(b):
            for oc in range(o):
                assert y[n, oc] == int(bias[oc]) + sum(int(w[oc, i]) * int(x[n, i])
                                                       for i in range(k))
        np.testing.assert_array_equal(golden.dense(x, w), y - bias)


@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 2), (2, 1), (3, 3), (1, 1)])
def test_maxpool_equals_loops(kernel, stride):
    rng = np.random.default_rng(RNG_SEED + kernel * 10 + (stride or 0))
    x = big_ints(rng, -1000, 1000, (2, 3, 7, 6))
    y = golden.maxpool(x, kernel=kernel, stride=stride)
    s = stride or kernel
    ho, wo = (7 - kernel) // s + 1, (6 - kernel) // s + 1
    assert y.shape == (2, 3, ho, wo)
    for n, c, i, j in np.ndindex(*y.shape):
        assert y[n, c, i, j] == max(int(x[n, c, i * s + u, j * s + v])
                                    for u in range(kernel) for v in range(kernel))


def test_gap_add_relu_flatten_equal_loops():
    rng = np.random.default_rng(RNG_SEED)
    x = big_ints(rng, -2 ** 40, 2 ** 40, (3, 4, 5, 6))
    z = big_ints(rng, -2 ** 40, 2 ** 40, (3, 4, 5, 6))
    g = golden.gap(x)
    for n, c in np.ndindex(3, 4):
        assert g[n, c] == sum(int(v) for v in x[n, c].ravel())
    a = golden.add(x, z)
    r = golden.relu(x)
    f = golden.flatten(x)
    for n, c, i, j in np.ndindex(*x.shape):
        assert a[n, c, i, j] == int(x[n, c, i, j]) + int(z[n, c, i, j])
        assert r[n, c, i, j] == max(int(x[n, c, i, j]), 0)
        assert f[n, (c * 5 + i) * 6 + j] == x[n, c, i, j]      # PyTorch's flatten order


def test_requant_equals_definition():
    rng = np.random.default_rng(RNG_SEED)
    for bits, signed in [(1, False), (2, True), (4, False), (4, True), (8, True)]:
        lo, hi = golden.int_range(bits, signed)
        x = big_ints(rng, -5000, 5000, (4, 3, 2, 2))
        m = rng.uniform(0, 0.01, 3)
        c = rng.uniform(-3, 3, 3)
        y = golden.requant(x, m, c, bits=bits, signed=signed)
        for n, ch, i, j in np.ndindex(*x.shape):
            v = float(x[n, ch, i, j]) * float(m[ch]) + float(c[ch])
            assert y[n, ch, i, j] == min(max(int(np.floor(v)), lo), hi)
        # Vectors (B, C) too: channel is axis 1.
        v = golden.requant(x[:, :, 0, 0], m, c, bits=bits, signed=signed)
        np.testing.assert_array_equal(v, y[:, :, 0, 0])


def test_threshold_equals_definition():
    rng = np.random.default_rng(RNG_SEED)
    th = np.sort(big_ints(rng, -50, 50, (3, 7)), axis=1)
    x = big_ints(rng, -60, 60, (5, 3))
    y = golden.threshold(x, th, bits=3, signed=True)
    for n, c in np.ndindex(*x.shape):
        assert y[n, c] == -4 + sum(int(x[n, c]) >= int(t) for t in th[c])


def _requant_params(rng, channels, bits, signed, x_lo, x_hi):
    """Multipliers and offsets of every kind: spread, steep, flat, zero, far off-range."""
    lo, hi = golden.int_range(bits, signed)
    span = (hi - lo + 1) / (x_hi - x_lo + 1)
    m = span * np.exp(rng.uniform(np.log(0.2), np.log(40), channels))
    m[0] = 0.0                                              # constant output
    m[1] = rng.uniform(1, 3)                                # steeper than one step per value
    m[2] = span * 1e-3                                      # flatter than the whole range
    m[3] = 1 / 3                                            # inexact in binary
    c = rng.uniform(lo, hi + 1, channels) - m * (x_lo + x_hi) / 2
    c[0] = rng.uniform(lo - 2, hi + 2)
    c[4] = 1e6                                              # saturated high
    c[5] = -1e6                                             # saturated low
    c[6] = 0.5                                              # round half up
    return m, c


@pytest.mark.parametrize("bits,signed,levels", [(1, False, "linear"), (2, True, "linear"),
                                                (3, False, "linear"), (4, True, "linear"),
                                                (2, False, "pow2"), (3, False, "pow2")])
def test_thresholds_equal_requant_on_every_accumulator_value(bits, signed, levels):
    """Exhaustively: lowering requant to thresholds changes no value in the input's range."""
    rng = np.random.default_rng(RNG_SEED + bits * 2 + signed)
    channels = 12
    for x_bits, x_signed in [(12, True), (9, False), (16, True)]:
        x_lo, x_hi = golden.int_range(x_bits, x_signed)
        m, c = _requant_params(rng, channels, bits, signed, x_lo, x_hi)
        # Through the compiler's pass, as a model gets it.
        g = Graph([Node("x", "input", [], {"shape": [channels], "bits": x_bits,
                                           "signed": x_signed}),
                   Node("q", "requant", ["x"], {"bits": bits, "signed": signed, "levels": levels},
                        {"multiplier": m, "offset": c})], ["q"])
        g = lower_requant(infer_ranges(validate_graph(g)))
        node = g["q"]
        assert node.op == "threshold"
        th = node.tensors["thresholds"]
        np.testing.assert_array_equal(th, golden.thresholds_for_requant(
            m, c, bits=bits, signed=signed, x_lo=x_lo, x_hi=x_hi, levels=levels))
        assert (np.diff(th, axis=1) >= 0).all()
        assert (th >= x_lo).all() and (th <= x_hi + 1).all()
        x = np.repeat(np.arange(x_lo, x_hi + 1, dtype=np.int64)[:, None], channels, axis=1)
        np.testing.assert_array_equal(
            golden.threshold(x, th, bits=bits, signed=signed),
            golden.requant(x, m, c, bits=bits, signed=signed, levels=levels))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale, dtype", [(1, np.float32), (2 ** 12, np.float64)])
def test_float_blas_path_equals_int64(seed, scale, dtype, monkeypatch):
    """conv2d and dense take float32 or float64 BLAS where the bound allows; the result is
    the int64 one."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(2, 5, 9, 7)) * scale
    w = rng.integers(-100, 100, size=(6, 5, 3, 3))
    b = rng.integers(-1000, 1000, size=6)
    xv = rng.integers(-2 ** 8, 2 ** 8, size=(3, 40)) * scale
    wv = rng.integers(-2 ** 8, 2 ** 8, size=(4, 40))
    assert golden._sum_dtype(x, w, b) is dtype and golden._sum_dtype(xv, wv, b[:4]) is dtype
    fast = golden.conv2d(x, w, b, stride=2, padding=1), golden.dense(xv, wv, b[:4])
    monkeypatch.setattr(golden, "_sum_dtype", lambda *a: np.int64)
    slow = golden.conv2d(x, w, b, stride=2, padding=1), golden.dense(xv, wv, b[:4])
    for f, s in zip(fast, slow):
        np.testing.assert_array_equal(f, s)


def test_sums_at_the_float_limits():
    """Float32 holds every integer up to 2**24, float64 up to 2**53: a bound at the limit
    takes that type, a sum of limit + 1 (rounded there) the next one; both stay exact."""
    nxt = {np.float32: np.float64, np.float64: np.int64}
    for limit, dtype in ((golden.FLOAT32_EXACT, np.float32), (golden.FLOAT_EXACT, np.float64)):
        for x, w, total, kind in ((np.array([[limit // 2, limit // 2]]), np.array([[1, 1]]),
                                   limit, dtype),
                                  (np.array([[limit // 2, 1]]), np.array([[2, 1]]),
                                   limit + 1, nxt[dtype])):
            assert golden._sum_dtype(x, w, None) is kind
            assert int(golden.dense(x, w)[0, 0]) == total
            assert int(golden.conv2d(x.reshape(1, 2, 1, 1), w.reshape(1, 2, 1, 1))[0, 0, 0, 0]) \
                == total


def test_sums_beyond_float_exactness_use_int64():
    """Near 2**62 float64 would round: the bound sends such products to int64."""
    x = np.array([[2 ** 40, -(2 ** 40) + 1]])
    w = np.array([[2 ** 21, 2 ** 21 - 1]])
    assert golden._sum_dtype(x, w, None) is np.int64
    expected = 2 ** 40 * 2 ** 21 + (-(2 ** 40) + 1) * (2 ** 21 - 1)
    assert int(golden.dense(x, w)[0, 0]) == expected

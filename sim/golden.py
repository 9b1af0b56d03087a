"""The golden integer model: the one definition of every op's arithmetic.

Hardware is generated to match these functions bit for bit, and the tests hold it
to that. All functions take and return ``int64`` arrays with a leading batch
axis: feature maps are ``(B, C, H, W)``, vectors ``(B, K)``. Nothing here rounds
or saturates unless the op says so; widths are chosen by the compiler so that
no op can overflow.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["conv2d", "dense", "relu", "maxpool", "gap", "flatten", "add", "requant",
           "threshold", "thresholds_for_requant", "int_range", "pow2_value", "pow2_decode",
           "level_targets"]


def int_range(bits, signed):
    """The integers a ``bits``-bit value can hold."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _i64(x):
    return np.asarray(x, dtype=np.int64)


#: Integers of magnitude up to these are exact in IEEE float32 and float64 (24 and 53
#: significand bits), and so is every sum of them that stays within.
FLOAT32_EXACT = 2 ** 24
FLOAT_EXACT = 2 ** 53


def _sum_dtype(x, weight, bias):
    """The cheapest type in which ``bias + sum w * x`` is exact: float32, float64 or int64.

    Every partial sum of a dot product is bounded by ``max|x| * sum|w|`` (plus
    the bias); while that bound is within 2**24 (2**53), every product and
    partial sum is an integer float32 (float64) holds exactly, whatever order
    the BLAS adds them in, fused multiply-adds included.
    """
    if x.size == 0 or weight.size == 0:
        return np.float32
    xmax = max(-int(x.min()), int(x.max()))
    wsum = int(np.abs(weight.reshape(weight.shape[0], -1)).sum(axis=1).max())
    bmax = int(np.abs(bias).max()) if bias is not None and np.size(bias) else 0
    bound = xmax * wsum + bmax
    if bound <= FLOAT32_EXACT:
        return np.float32
    return np.float64 if bound <= FLOAT_EXACT else np.int64


def conv2d(x, weight, bias=None, *, stride=1, padding=0):
    """``y[b,o,i,j] = bias[o] + sum_{c,u,v} w[o,c,u,v] * xp[b,c,i*s+u,j*s+v]``, xp zero-padded.

    Exact: a matrix product of the weights and the windows (im2col), in float32
    or float64 BLAS where no partial sum can leave the integers that type holds
    (:func:`_sum_dtype`), in int64 otherwise; one image at a time, so the window
    matrix stays small.
    """
    x, w = _i64(x), _i64(weight)
    dtype = _sum_dtype(x, w, bias)
    o, c, k, _ = w.shape
    n, _, h, wd = x.shape
    ho = (h + 2 * padding - k) // stride + 1
    wo = (wd + 2 * padding - k) // stride + 1
    w2 = w.reshape(o, c * k * k).astype(dtype)
    y = np.empty((n, o, ho, wo), np.int64)
    for i in range(n):
        image = x[i].astype(dtype)
        if padding:
            image = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))
        win = sliding_window_view(image, (k, k), axis=(1, 2))[:, ::stride, ::stride]
        # (C, Ho, Wo, k, k) -> (Ho*Wo, C*k*k), the order of w.reshape(O, -1).
        cols = win.transpose(1, 2, 0, 3, 4).reshape(ho * wo, c * k * k)
        # The products are integers the type holds exactly: the cast to int64 is exact.
        y[i] = (w2 @ cols.T).reshape(o, ho, wo)
    if bias is not None:
        y += _i64(bias)[None, :, None, None]
    return y


def dense(x, weight, bias=None):
    """``y[b,o] = bias[o] + sum_k w[o,k] * x[b,k]`` (exact, as :func:`conv2d`)."""
    x, w = _i64(x), _i64(weight)
    dtype = _sum_dtype(x, w, bias)
    y = (x.astype(dtype) @ w.T.astype(dtype)).astype(np.int64)
    if bias is not None:
        y = y + _i64(bias)[None, :]
    return y


def relu(x):
    return np.maximum(_i64(x), 0)


def maxpool(x, *, kernel, stride=None, padding=0):
    """Max over ``kernel x kernel`` windows at ``stride`` (default: the kernel).

    ``padding`` pixels of the smallest int64 surround the map: they never win,
    because every window overlaps the map (the padding is smaller than the
    kernel), so the result is that of any lower bound of the values.
    """
    stride = stride or kernel
    x = _i64(x)
    if padding:
        lowest = np.iinfo(np.int64).min
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)),
                   constant_values=lowest)
    win = sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    return win.max(axis=(4, 5))


def gap(x):
    """Global average pool as a sum over H and W (the division belongs to the next scale)."""
    return _i64(x).sum(axis=(2, 3))


def flatten(x):
    x = _i64(x)
    return x.reshape(x.shape[0], -1)


def add(a, b):
    return _i64(a) + _i64(b)


#: The largest code whose value ``2**(c-1)`` an int64 holds.
POW2_MAX_CODE = 63


def pow2_value(code):
    """The value of a power-of-two activation code: ``0`` if ``c == 0`` else ``2**(c-1)``.

    Raises ``ValueError`` for a code whose value does not fit int64 (``c > 63``)
    or a negative code, instead of wrapping around.
    """
    c = _i64(code)
    if c.size and (c.max() > POW2_MAX_CODE or c.min() < 0):
        raise ValueError(f"pow2 codes must lie in [0, {POW2_MAX_CODE}] (2**62 is the largest "
                         f"int64 power of two), got [{int(c.min())}, {int(c.max())}]")
    return np.where(c > 0, np.left_shift(np.int64(1), np.maximum(c - 1, 0)), 0).astype(np.int64)


def pow2_decode(x):
    return pow2_value(x)


def level_targets(bits, signed, levels="linear"):
    """``t[j]``: the output is at least code ``lo + j + 1`` iff ``x*m + c >= t[j]``.

    Linear levels: ``t = lo+1, ..., hi`` (this is ``clamp(floor(x*m + c))``).
    Power-of-two levels (unsigned codes ``0 .. 2**bits - 1`` standing for
    ``0, 1, 2, 4, ...``): the output is the nearest level, ties upwards, to
    ``x*m + c - 0.5`` (``c`` carries the ``+0.5`` of round-half-up as in the
    linear case), so ``t[j] = (value(j) + value(j+1)) / 2 + 0.5``.
    """
    lo, hi = int_range(bits, signed)
    if levels == "linear":
        return np.arange(lo + 1, hi + 1, dtype=np.float64)
    if levels != "pow2" or signed:
        raise ValueError(f"unknown activation levels {levels!r} (signed={signed})")
    v = pow2_value(np.arange(0, hi + 1)).astype(np.float64)
    return (v[:-1] + v[1:]) / 2 + 0.5


def _per_channel(t, ndim):
    t = np.asarray(t)
    return t.reshape((1, -1) + (1,) * (ndim - 2))


def requant(x, multiplier, offset, *, bits, signed, levels="linear"):
    """``clamp(floor(x * multiplier[c] + offset[c]))`` to a ``bits``-bit integer.

    Evaluated in IEEE float64, which makes it a well-defined function of the
    integer ``x`` (exact for ``|x| < 2**53``) and monotone non-decreasing in ``x``
    for ``multiplier >= 0``. The hardware computes the same function with
    thresholds (:func:`thresholds_for_requant`). With ``levels="pow2"`` the
    result is the code ``#{j : x*m + c >= t[j]}`` of :func:`level_targets`.
    """
    x = _i64(x)
    lo, hi = int_range(bits, signed)
    m = _per_channel(np.asarray(multiplier, np.float64), x.ndim)
    c = _per_channel(np.asarray(offset, np.float64), x.ndim)
    # In place: a ResNet activation batch is hundreds of MB per temporary.
    v = x.astype(np.float64)
    with np.errstate(over="ignore"):        # IEEE: a product too large is inf, then clamped
        np.multiply(v, m, out=v)
        np.add(v, c, out=v)
    if levels == "linear":
        np.floor(v, out=v)
        np.maximum(v, lo, out=v)
        np.minimum(v, hi, out=v)
        return v.astype(np.int64)
    t = level_targets(bits, signed, levels)
    return (v[..., None] >= t).sum(axis=-1).astype(np.int64) + lo


def threshold(x, thresholds, *, bits, signed):
    """``lo + #{k : x >= thresholds[c, k]}``: a per-channel staircase."""
    x = _i64(x)
    th = _i64(thresholds)
    lo, _ = int_range(bits, signed)
    xc = np.moveaxis(x, 1, -1)                    # channels last: (..., C)
    if th.shape[1] > 1 and np.any(th[:, 1:] < th[:, :-1]):
        # Unsorted thresholds: the definition itself, memory x.size * L.
        count = (xc[..., None] >= th).sum(axis=-1)
    else:
        # Sorted (as the IR requires): the count is a binary search, memory x.size
        # (a 12-bit output has 4,095 thresholds per channel).
        count = np.empty(xc.shape, np.int64)
        for c in range(th.shape[0]):
            count[..., c] = np.searchsorted(th[c], xc[..., c], side="right")
    return np.moveaxis(count, -1, 1).astype(np.int64) + lo


def thresholds_for_requant(multiplier, offset, *, bits, signed, x_lo, x_hi, levels="linear"):
    """Thresholds that make :func:`threshold` equal :func:`requant` on ``[x_lo, x_hi]``.

    ``thresholds[c, k]`` is the smallest ``x`` in ``[x_lo, x_hi]`` with
    ``requant(x) >= lo + k + 1``, or ``x_hi + 1`` if there is none. Found by a
    binary search that evaluates :func:`requant`'s own float expression, so the
    two agree exactly, float rounding included (the function is monotone).
    """
    m = np.asarray(multiplier, np.float64)[:, None]
    c = np.asarray(offset, np.float64)[:, None]
    target = level_targets(bits, signed, levels)[None, :]              # (1, L)
    shape = (m.shape[0], target.shape[1])
    below = np.full(shape, int(x_lo), dtype=np.int64)                   # answer >= below
    above = np.full(shape, int(x_hi) + 1, dtype=np.int64)               # answer <= above
    while np.any(below < above):
        mid = (below + above) // 2                                      # always <= x_hi
        with np.errstate(over="ignore"):
            reached = mid.astype(np.float64) * m + c >= target
        above = np.where(reached, mid, above)
        below = np.where(reached, below, mid + 1)
    return above

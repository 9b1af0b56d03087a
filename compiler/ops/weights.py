"""Weight kinds of the MAC ops (``conv2d``, ``dense``): their attributes and checks.

All weights are stored as integers, the real weight being ``scale * w``:

``ternary``
    ``w`` in {-1, 0, +1}; ``weight_bits`` is 2.
``pow2``
    ``w`` is 0 or ``±2**e`` with ``0 <= e <= 2**(weight_bits - 1) - 2``: a sign
    bit and ``weight_bits - 1`` bits that code zero or one of the exponents.
``int``
    ``w`` is a signed ``weight_bits``-bit integer.
``ternary2``
    asymmetric ternary (LAT2): every positive ``w`` equals one integer ``P`` and
    every negative one ``-N``, with ``1 <= P, N <= 2**(weight_bits - 1) - 1``.
``codebook``
    kernel codebook (KQ), ``conv2d`` only: ``w[o, c] = codebook[indices[o, c]]``,
    ``B <= 2**weight_bits`` kernels of ``entry_bits``-bit signed integers
    (``weight_bits`` is the index width).
"""

import numpy as np

from .. import limits
from .base import Attr, fail, finite, within

__all__ = ["WEIGHT_KINDS", "WEIGHT_ATTRS", "pow2_max_exponent", "check_weights",
           "stored_weight_bits", "csd_counts", "mac_channel_ranges", "mac_range"]

WEIGHT_KINDS = ("ternary", "pow2", "int", "ternary2", "codebook")


def pow2_max_exponent(bits):
    """Largest exponent a ``bits``-bit power-of-two weight can code."""
    return 2 ** (bits - 1) - 2


def _kind(v):
    return None if v in WEIGHT_KINDS else f"must be one of {', '.join(WEIGHT_KINDS)}"


def _weight_scale(v):
    ok = finite(v) or (isinstance(v, list) and 1 <= len(v) <= limits.MAX_CHANNELS
                       and all(finite(x) for x in v))
    return None if ok else ("must be a finite number or a list of at most "
                            f"{limits.MAX_CHANNELS} of them")


WEIGHT_ATTRS = {
    "weight_kind": Attr(str, check=_kind, doc="ternary, pow2, int, ternary2 or codebook"),
    "weight_bits": Attr(int, check=within(1, max(hi for _, hi in limits.WEIGHT_BITS.values())),
                        doc="bits per stored weight"),
    "weight_scale": Attr(object, required=False, check=_weight_scale,
                         doc="real value of one weight step (informative)"),
}


def check_weights(node):
    """Check that the integers of a weight tensor fit its declared kind and bits.

    Vectorised and linear in the number of weights; no value is negated or
    multiplied before it is known to be small, so int64 cannot wrap.
    """
    w = node.tensors["weight"].astype(np.int64)
    kind, bits = node.attrs["weight_kind"], node.attrs["weight_bits"]
    lo_bits, hi_bits = limits.WEIGHT_BITS[kind]
    if not lo_bits <= bits <= hi_bits:
        fail(node, f"attribute 'weight_bits' = {bits}: {kind} weights take "
                   + (f"{lo_bits}" if lo_bits == hi_bits else f"{lo_bits} to {hi_bits}")
                   + " bits")
    if kind == "ternary":
        bad = ~np.isin(w, (-1, 0, 1))
        expect = "in {-1, 0, 1}"
    elif kind == "pow2":
        emax = pow2_max_exponent(bits)
        # Range first: |w| of a value outside it (say -2**63) is not taken.
        bad = (w < -(2 ** emax)) | (w > 2 ** emax)
        mag = np.where(bad, 0, np.abs(np.where(bad, 0, w)))
        is_pow2 = (mag & (mag - 1)) == 0
        bad |= (mag != 0) & ~is_pow2
        expect = f"0 or ±2**e with e <= {emax}"
    elif kind == "ternary2":
        hi = 2 ** (bits - 1) - 1
        pos, neg = np.unique(w[w > 0]), np.unique(w[w < 0])
        if len(pos) > 1 or len(neg) > 1:
            fail(node, "ternary2 weights must take one positive and one negative value, found "
                       f"{len(pos)} positive and {len(neg)} negative values")
        bad = (w < -hi) | (w > hi)
        expect = f"one positive and one negative value within [{-hi}, {hi}]"
    elif kind == "codebook":
        _check_codebook(node, w, bits)
        return
    else:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        bad = (w < lo) | (w > hi)
        expect = f"within [{lo}, {hi}]"
    if node.attrs.get("entry_bits") is not None or "codebook" in node.tensors \
            or "indices" in node.tensors:
        fail(node, "'entry_bits', 'codebook' and 'indices' belong to codebook weights only")
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        fail(node, f"weight{list(idx)} = {int(w[idx])} is not a {bits}-bit {kind} value "
                   f"({expect})")


def _check_codebook(node, w, bits):
    if node.op != "conv2d":
        fail(node, "codebook weights are for conv2d layers only")
    t = node.tensors
    for key in ("codebook", "indices"):
        if key not in t:
            fail(node, f"codebook weights need tensor '{key}'")
    if node.attrs.get("entry_bits") is None:
        fail(node, "codebook weights need attribute 'entry_bits'")
    cb, idx = t["codebook"].astype(np.int64), t["indices"].astype(np.int64)
    if w.ndim != 4:
        fail(node, f"tensor 'weight' has shape {list(w.shape)}, expected [O, C, k, k]")
    if cb.ndim != 3 or cb.shape[1:] != w.shape[2:]:
        fail(node, f"tensor 'codebook' has shape {list(cb.shape)}, expected "
                   f"[B, {w.shape[2]}, {w.shape[3]}] for {w.shape[2]}x{w.shape[3]} kernels")
    if idx.shape != w.shape[:2]:
        fail(node, f"tensor 'indices' has shape {list(idx.shape)}, expected {list(w.shape[:2])}")
    if len(cb) > 2 ** bits:
        fail(node, f"{len(cb)} codebook kernels need more than the {bits}-bit indices "
                   "('weight_bits') can address")
    eb = node.attrs["entry_bits"]
    lo, hi = -(2 ** (eb - 1)), 2 ** (eb - 1) - 1
    if cb.min() < lo or cb.max() > hi:
        fail(node, f"codebook entries must be {eb}-bit signed integers within [{lo}, {hi}]")
    if idx.min() < 0 or idx.max() >= len(cb):
        fail(node, f"tensor 'indices' must lie in [0, {len(cb) - 1}]")
    if not np.array_equal(cb[idx], w):
        o, c = (int(i) for i in np.argwhere(np.any(cb[idx] != w, axis=(2, 3)))[0])
        fail(node, f"weight[{o}, {c}] is not codebook[indices[{o}, {c}]]")


def stored_weight_bits(node):
    """Bits that store a layer's weights: one code per weight, or KQ's indices + codebook."""
    a, t = node.attrs, node.tensors
    if a.get("weight_kind") == "codebook":
        return int(t["indices"].size * a["weight_bits"] + t["codebook"].size * a["entry_bits"])
    return int(t["weight"].size * a["weight_bits"])


def csd_counts(weights):
    """Per weight: ``(digits, top shift)`` of its canonical signed digits, vectorised.

    The non-adjacent form of ``n = |w|`` has a non-zero digit exactly where
    ``n ^ 3n`` has a one above bit 0 (``hw.csd.csd_digits`` builds the same
    digits one by one); the highest is the top shift (``-1`` for a zero weight).
    """
    n = np.abs(np.asarray(weights, dtype=np.int64)).astype(np.uint64)
    marks = (n ^ (np.uint64(3) * n)) >> np.uint64(1)
    digits = np.bitwise_count(marks).astype(np.int64)
    top = np.where(marks == 0, -1, np.floor(np.log2(np.maximum(marks, 1))).astype(np.int64))
    return digits, top


def _signed_sums(weight):
    """Per output channel, the sums of the positive and of the negative weights (Python ints)."""
    w = weight.reshape(weight.shape[0], -1)
    if w.size and (int(w.max()) > 2 ** 31 or int(w.min()) < -2 ** 31):
        w = w.astype(object)      # beyond the limits: exact, if slow
    else:
        w = w.astype(np.int64)    # |w| <= 2**31 and <= 2**24 of them per row: no overflow
    pos = np.where(w > 0, w, 0).sum(axis=1)
    neg = np.where(w < 0, w, 0).sum(axis=1)
    return [int(v) for v in pos], [int(v) for v in neg]


def mac_channel_ranges(weight, bias, x_lo, x_hi):
    """Per-output-channel ``(lo, hi)`` of ``bias + w . x`` for ``x`` in ``[x_lo, x_hi]``.

    ``hi`` takes ``x_hi`` under positive weights and ``x_lo`` under negative ones,
    ``lo`` the reverse: two sums per channel, exact in Python ints.
    """
    pos, neg = _signed_sums(weight)
    b = [0] * len(pos) if bias is None else [int(v) for v in bias]
    lo = np.array([p * x_lo + n * x_hi + c for p, n, c in zip(pos, neg, b)], dtype=object)
    hi = np.array([p * x_hi + n * x_lo + c for p, n, c in zip(pos, neg, b)], dtype=object)
    return lo, hi


def mac_range(node, x_lo, x_hi):
    """``(lo, hi)`` of a MAC node's outputs; every partial sum must fit the accumulator limit.

    A MAC's partial sums are bounded by ``|bias| + sum |w| * |x|``, which must lie
    within :data:`compiler.limits.ACC_BITS` (the golden model is int64, and the
    requantizers evaluate in float64, exact below 2**53).
    """
    w, bias = node.tensors["weight"], node.tensors.get("bias")
    pos, neg = _signed_sums(w)
    b = [0] * len(pos) if bias is None else [abs(int(v)) for v in bias]
    xmax = max(abs(int(x_lo)), abs(int(x_hi)))
    mag = max((p - n) * xmax + c for p, n, c in zip(pos, neg, b))
    if mag > limits.ACC_MAX:
        fail(node, f"its partial sums (sum of |bias| and |w| * |x|) can reach [{-mag:,}, "
                   f"{mag:,}], beyond the {limits.ACC_BITS}-bit accumulator limit "
                   f"[{limits.ACC_MIN:,}, {limits.ACC_MAX:,}]")
    lo, hi = mac_channel_ranges(w, bias, x_lo, x_hi)
    return int(min(lo)), int(max(hi))

"""Exact value ranges, and so widths, of every node.

The range of a node is the set of integers it can produce for *any* input in the
input's declared range, computed from the actual weights: for a MAC layer each
output channel's worst cases are ``sum(max(w*lo, w*hi))`` and ``sum(min(...))``.
The widths derived from these ranges can never overflow, and they are tight: an
input exists that reaches each bound (see ``tests/compiler/test_passes.py``).
Partial sums of a MAC lie within the same range whenever the input range
contains 0, which is why folded hardware can accumulate in the final width.

Every range, and every partial sum of a MAC, must fit the accumulator limit
(:data:`compiler.limits.ACC_BITS`) that the golden model's int64 and
``requant``'s float64 handle exactly; :func:`infer_ranges` refuses a graph that
could exceed it, with the numbers.
"""

import numpy as np

from sim import golden

from .. import limits
from ..errors import GraphError

__all__ = ["infer_ranges", "mac_channel_ranges", "mac_magnitude"]


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


def mac_magnitude(weight, bias, x_lo, x_hi):
    """The largest ``|bias| + sum |w| * |x|`` of any output channel: bounds every partial sum."""
    pos, neg = _signed_sums(weight)
    b = [0] * len(pos) if bias is None else [abs(int(v)) for v in bias]
    xmax = max(abs(int(x_lo)), abs(int(x_hi)))
    return max((p - n) * xmax + c for p, n, c in zip(pos, neg, b))


def _check_acc(node, lo, hi, what="values"):
    if lo < limits.ACC_MIN or hi > limits.ACC_MAX:
        raise GraphError(f"its {what} can reach [{lo:,}, {hi:,}], beyond the "
                         f"{limits.ACC_BITS}-bit accumulator limit "
                         f"[{limits.ACC_MIN:,}, {limits.ACC_MAX:,}]", node=node.name)


def _node_range(node, srcs):
    op = node.op
    if op == "input":
        return golden.int_range(node.attrs["bits"], node.attrs["signed"])
    x = srcs[0]
    if op in ("conv2d", "dense"):
        x_lo, x_hi = x.lo, x.hi
        if op == "conv2d" and node.attrs["padding"] > 0:
            x_lo, x_hi = min(x_lo, 0), max(x_hi, 0)   # padding feeds zeros
        w, b = node.tensors["weight"], node.tensors.get("bias")
        mag = mac_magnitude(w, b, x_lo, x_hi)
        _check_acc(node, -mag, mag, "partial sums (sum of |bias| and |w| * |x|)")
        lo, hi = mac_channel_ranges(w, b, x_lo, x_hi)
        return min(lo), max(hi)
    if op == "relu":
        return max(x.lo, 0), max(x.hi, 0)
    if op in ("maxpool", "flatten"):
        return x.lo, x.hi
    if op == "pow2_decode":
        return int(golden.pow2_value(x.lo)), int(golden.pow2_value(x.hi))
    if op == "gap":
        n = x.shape[1] * x.shape[2]
        return x.lo * n, x.hi * n
    if op == "add":
        return srcs[0].lo + srcs[1].lo, srcs[0].hi + srcs[1].hi
    if op == "requant":
        kw = dict(bits=node.attrs["bits"], signed=node.attrs["signed"],
                  levels=node.attrs.get("levels") or "linear")
        m, c = node.tensors["multiplier"], node.tensors["offset"]
        ends = golden.requant(np.array([[x.lo] * len(m), [x.hi] * len(m)]), m, c, **kw)
        return int(ends[0].min()), int(ends[1].max())
    if op == "threshold":
        kw = dict(bits=node.attrs["bits"], signed=node.attrs["signed"])
        th = node.tensors["thresholds"]
        ends = golden.threshold(np.array([[x.lo] * len(th), [x.hi] * len(th)]), th, **kw)
        return int(ends[0].min()), int(ends[1].max())
    raise AssertionError(op)


def infer_ranges(graph):
    """Set ``lo`` and ``hi`` (Python ints) on every node of a validated graph.

    Raises :class:`~compiler.errors.GraphError` if a node's values could leave
    the accumulator limit.
    """
    for node in graph.nodes:
        lo, hi = _node_range(node, [graph[s] for s in node.inputs])
        node.lo, node.hi = int(lo), int(hi)
        _check_acc(node, node.lo, node.hi)
    return graph

"""Exact value ranges, and so widths, of every node.

The range of a node is the set of integers it can produce for *any* input in the
input's declared range, computed from the actual weights: for a MAC layer each
output channel's worst cases are ``sum(max(w*lo, w*hi))`` and ``sum(min(...))``.
The widths derived from these ranges can never overflow, and they are tight: an
input exists that reaches each bound (see ``tests/compiler/test_passes.py``).
Partial sums of a MAC lie within the same range whenever the input range
contains 0, which is why folded hardware can accumulate in the final width.
"""

import numpy as np

from sim import golden

__all__ = ["infer_ranges", "mac_channel_ranges"]


def mac_channel_ranges(weight, bias, x_lo, x_hi):
    """Per-output-channel ``(lo, hi)`` of ``bias + w . x`` for ``x`` in ``[x_lo, x_hi]``."""
    w = weight.reshape(weight.shape[0], -1).astype(object)   # Python ints: no overflow
    a, b = w * x_lo, w * x_hi
    hi = np.maximum(a, b).sum(axis=1)
    lo = np.minimum(a, b).sum(axis=1)
    if bias is not None:
        bias = bias.astype(object)
        hi, lo = hi + bias, lo + bias
    return lo, hi


def _node_range(node, srcs):
    op = node.op
    if op == "input":
        return golden.int_range(node.attrs["bits"], node.attrs["signed"])
    x = srcs[0]
    if op in ("conv2d", "dense"):
        x_lo, x_hi = x.lo, x.hi
        if op == "conv2d" and node.attrs["padding"] > 0:
            x_lo, x_hi = min(x_lo, 0), max(x_hi, 0)   # padding feeds zeros
        lo, hi = mac_channel_ranges(node.tensors["weight"], node.tensors.get("bias"), x_lo, x_hi)
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
    """Set ``lo`` and ``hi`` (Python ints) on every node of a validated graph."""
    for node in graph.nodes:
        lo, hi = _node_range(node, [graph[s] for s in node.inputs])
        node.lo, node.hi = int(lo), int(hi)
    return graph

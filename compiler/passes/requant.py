"""Lower ``requant`` to ``threshold``: requantization without multipliers.

``requant`` is ``clamp(floor(x * m[c] + c[c]))``: a monotone staircase of the
integer accumulator ``x``. Over the accumulator's finite range it is exactly
``lo + #{k : x >= T[c, k]}`` for the thresholds ``T`` computed by
:func:`sim.golden.thresholds_for_requant`, so the hardware needs only
comparators: no multiplier, no rounding logic, and any per-channel real scale
(batch norm included) is exact. ``docs/architecture.md`` explains the choice.
"""

import numpy as np

from sim import golden

from ..ir import Node
from ..ops import Requant, Threshold, is_op

__all__ = ["lower_requant"]


def lower_requant(graph):
    """Replace each ``requant`` node by an equivalent ``threshold`` node.

    Needs ranges on the producers (:func:`~compiler.passes.ranges.infer_ranges`).
    """
    nodes = []
    for node in graph.nodes:
        if is_op(node, Threshold):
            # From a package: any int64. Clamped to [lo, hi + 1] of the input, they
            # count the same for every possible input and need no wider comparators.
            src = graph[node.inputs[0]]
            th = np.clip(node.tensors["thresholds"].astype(np.int64), src.lo, src.hi + 1)
            node.tensors = dict(node.tensors, thresholds=th)
        if is_op(node, Requant):
            src = graph[node.inputs[0]]
            th = golden.thresholds_for_requant(
                node.tensors["multiplier"], node.tensors["offset"],
                bits=node.attrs["bits"], signed=node.attrs["signed"], x_lo=src.lo, x_hi=src.hi,
                levels=node.attrs.get("levels") or "linear")
            node = Node(node.name, Threshold.name, list(node.inputs),
                        {"bits": node.attrs["bits"], "signed": node.attrs["signed"],
                         "scale": node.attrs.get("scale"),
                         "levels": node.attrs.get("levels") or "linear"},
                        {"thresholds": th.astype(np.int64)}, node.shape, node.lo, node.hi)
        nodes.append(node)
    graph.replace_nodes(nodes)
    return graph

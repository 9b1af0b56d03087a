"""Exact value ranges, and so widths, of every node.

The range of a node is the set of integers it can produce for *any* input in the
input's declared range, computed from the actual weights: for a MAC layer each
output channel's worst cases are ``sum(max(w*lo, w*hi))`` and ``sum(min(...))``.
The widths derived from these ranges can never overflow, and they are tight: an
input exists that reaches each bound (see ``tests/compiler/passes/test_ranges.py``).
Partial sums of a MAC lie within the same range whenever the input range
contains 0, which is why folded hardware can accumulate in the final width.

Every range, and every partial sum of a MAC, must fit the accumulator limit
(:data:`compiler.limits.ACC_BITS`) that the golden model's int64 and
``requant``'s float64 handle exactly; :func:`infer_ranges` refuses a graph that
could exceed it, with the numbers.
"""

from .. import limits
from ..errors import GraphError
from ..ops import op_of
from ..ops.weights import mac_channel_ranges

__all__ = ["infer_ranges", "mac_channel_ranges"]


def infer_ranges(graph):
    """Set ``lo`` and ``hi`` (Python ints) on every node of a validated graph, from its op.

    Raises :class:`~compiler.errors.GraphError` if a node's values could leave
    the accumulator limit (:data:`compiler.limits.ACC_BITS`).
    """
    for node in graph.nodes:
        lo, hi = op_of(node).value_range(node, [graph[s] for s in node.inputs])
        node.lo, node.hi = int(lo), int(hi)
        if node.lo < limits.ACC_MIN or node.hi > limits.ACC_MAX:
            raise GraphError(f"its values can reach [{node.lo:,}, {node.hi:,}], beyond the "
                             f"{limits.ACC_BITS}-bit accumulator limit "
                             f"[{limits.ACC_MIN:,}, {limits.ACC_MAX:,}]", node=node.name)
    return graph

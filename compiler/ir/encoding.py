"""What the integers on an edge stand for: the value itself, or a pow2 code.

A ``requant``/``threshold`` with ``levels="pow2"`` emits codes ``c`` that stand
for ``0`` or ``2**(c-1)``. Ops that only compare or move values (their op's
``passes_codes``: max pool, flatten, relu) pass codes through unchanged,
because the code order is the value order; every other op computes with
values, and reads ``pow2_value(c)``.
"""

from ..ops import op_of
from .graph import Graph

__all__ = ["encodings"]


def encodings(graph: Graph) -> dict[str, str]:
    """``{node name: "linear" | "pow2"}``: the encoding of each node's output."""
    enc = {}
    for node in graph.nodes:
        enc[node.name] = op_of(node).encoding(node, [enc[s] for s in node.inputs])
    return enc

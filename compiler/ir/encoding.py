"""What the integers on an edge stand for: the value itself, or a pow2 code.

A ``requant``/``threshold`` with ``levels="pow2"`` emits codes ``c`` that stand
for ``0`` or ``2**(c-1)``. Ops that only compare or move values (``maxpool``,
``flatten``, ``relu``) pass codes through unchanged, because the code order is
the value order; every other op computes with values, and reads
``pow2_value(c)``.
"""

__all__ = ["encodings", "CODE_PASSING_OPS"]

CODE_PASSING_OPS = ("maxpool", "flatten", "relu")


def encodings(graph):
    """``{node name: "linear" | "pow2"}``: the encoding of each node's output."""
    enc = {}
    for node in graph.nodes:
        if node.op in ("requant", "threshold"):
            enc[node.name] = node.attrs.get("levels") or "linear"
        elif node.op in CODE_PASSING_OPS:
            enc[node.name] = enc[node.inputs[0]]
        else:
            enc[node.name] = "linear"
    return enc

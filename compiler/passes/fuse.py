"""Algebraic fusions that shrink the graph without changing a single output bit."""

from ..ir import Node
from ..ops import Relu, Requant, Threshold, is_op

__all__ = ["fuse_relu"]


def fuse_relu(graph):
    """Fold a ``relu`` into the ``requant`` that feeds it.

    ``relu(clamp(floor(x*m + c), lo, hi))`` with a signed ``bits``-bit output is
    ``clamp(floor(x*m + c), 0, hi)``: the same requant with an unsigned
    ``bits - 1``-bit output. A ``relu`` after an unsigned value is dropped.
    Applies only where the producer has no other consumer.
    """
    rename = {}
    nodes = []
    for node in graph.nodes:
        node.inputs = [rename.get(s, s) for s in node.inputs]
        if is_op(node, Relu):
            src = next(n for n in nodes if n.name == node.inputs[0])
            only_consumer = sum(node.inputs[0] in n.inputs for n in graph.nodes) == 1
            if only_consumer and is_op(src, Requant, Threshold) and not src.attrs["signed"]:
                rename[node.name] = src.name
                continue
            if only_consumer and is_op(src, Requant) and src.attrs["bits"] >= 2:
                fused = Node(node.name, Requant.name, list(src.inputs),
                             dict(src.attrs, bits=src.attrs["bits"] - 1, signed=False),
                             dict(src.tensors), node.shape)
                nodes[nodes.index(src)] = fused
                rename[src.name] = node.name
                continue
        nodes.append(node)
    graph.outputs = [rename.get(o, o) for o in graph.outputs]
    graph.replace_nodes(nodes)
    return graph

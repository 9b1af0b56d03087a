"""Structural checks of a whole graph, and shape inference on the way."""

from ..errors import GraphError
from .ops import validate_node

__all__ = ["validate_graph"]


def validate_graph(graph):
    """Check every node and the wiring between them; set each node's ``shape``.

    Raises :class:`~compiler.errors.GraphError` naming the first node at fault.
    """
    seen = {}
    for node in graph.nodes:
        if not isinstance(node.name, str) or not node.name:
            raise GraphError(f"a node has an invalid name {node.name!r}")
        if node.name in seen:
            raise GraphError("the name is used by two nodes", node=node.name)
        for src in node.inputs:
            if src not in seen:
                later = any(n.name == src for n in graph.nodes)
                raise GraphError(f"input '{src}' " + ("comes later in the node list (the list "
                                 "must be in topological order)" if later else "does not exist"),
                                 node=node.name)
        node.shape = validate_node(node, [seen[src].shape for src in node.inputs])
        seen[node.name] = node
    inputs = [n.name for n in graph.nodes if n.op == "input"]
    if len(inputs) != 1:
        raise GraphError(f"a graph needs exactly one input node, found {len(inputs)}"
                         + (f" ({', '.join(inputs)})" if inputs else ""))
    if len(graph.outputs) != 1:
        raise GraphError(f"a graph needs exactly one output, found {len(graph.outputs)}")
    for out in graph.outputs:
        if out not in seen:
            raise GraphError(f"output '{out}' is not a node of the graph")
    used = set(graph.outputs)
    for node in reversed(graph.nodes):
        if node.name in used:
            used.update(node.inputs)
    for node in graph.nodes:
        if node.name not in used:
            raise GraphError("the node does not lead to the output", node=node.name)
    return graph

"""Structural checks of a whole graph, and shape inference on the way."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .. import limits
from ..errors import GraphError
from ..ops import op_of

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["validate_graph"]

# A user's name, or one the compiler derived from it by appending ".suffix" parts.
_DERIVED = re.compile(rf"{limits.NAME_PATTERN}(\.{limits.NAME_PATTERN})*")
_SUFFIX_ROOM = 16      # ".partials", ".value": what the passes append to a name


def validate_graph(graph: Graph, names: str | None = None) -> Graph:
    """Check every node and the wiring between them; set each node's ``shape``.

    ``names`` is the pattern every node name must match: packages use
    :data:`compiler.limits.NAME_PATTERN`; by default the names the compiler
    derives from those (``conv1.sums``) are accepted too. Two names may not
    differ only in case (they name files of the build).

    Raises :class:`~compiler.errors.GraphError` naming the first node at fault.
    """
    pattern = re.compile(names) if names else _DERIVED
    longest = limits.MAX_NAME_LENGTH + (0 if names else _SUFFIX_ROOM)
    if len(graph.nodes) > limits.MAX_NODES:
        raise GraphError(f"{len(graph.nodes):,} nodes, more than the limit of "
                         f"{limits.MAX_NODES:,}")
    seen, folded = {}, {}
    for node in graph.nodes:
        if (not isinstance(node.name, str) or len(node.name) > longest
                or not pattern.fullmatch(node.name)):
            raise GraphError(f"a node has an invalid name {node.name!r:.120}: letters, digits "
                             f"and '_', not starting with a digit, at most "
                             f"{limits.MAX_NAME_LENGTH} characters")
        if node.name in seen:
            raise GraphError("the name is used by two nodes", node=node.name)
        if node.name.lower() in folded:
            raise GraphError(f"the name differs only in case from '{folded[node.name.lower()]}' "
                             "(they would name the same file on some systems)", node=node.name)
        folded[node.name.lower()] = node.name
        for src in node.inputs:
            if src not in seen:
                later = any(n.name == src for n in graph.nodes)
                raise GraphError(f"input '{src}' " + ("comes later in the node list (the list "
                                 "must be in topological order)" if later else "does not exist"),
                                 node=node.name)
        node.shape = op_of(node).validate(node, [seen[src].shape for src in node.inputs])
        seen[node.name] = node
    inputs = [n.name for n in graph.nodes if op_of(n).is_input]
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

"""Graph validation: a defect is refused with the node and field named."""

import pytest

from compiler.errors import GraphError
from compiler.ir import Graph, Node, validate_graph


def test_unsupported_op_is_named():
    g = Graph([Node("x", "input", [], {"shape": [4], "bits": 8, "signed": True}),
               Node("s", "softmax", ["x"])], ["s"])
    with pytest.raises(GraphError, match="node 's': unsupported op 'softmax'"):
        validate_graph(g)

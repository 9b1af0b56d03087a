"""A graph as deep as the node limit allows plans and converts (both recursed too deep)."""

import pytest

from compiler import limits
from compiler.cost import FABRICS
from compiler.ir import Graph, Node
from compiler.passes import prepare
from compiler.plan import make_plan


@pytest.fixture(scope="module")
def chain_plan():
    """input -> 1,000 relus -> add(input, last): a join whose branch is 1,000 stages long."""
    nodes = [Node("x", "input", [], {"shape": [2, 3, 3], "bits": 4, "signed": True})]
    for i in range(1000):
        nodes.append(Node(f"r{i}", "relu", [nodes[-1].name]))
    nodes.append(Node("a", "add", ["x", nodes[-1].name]))
    assert len(nodes) <= limits.MAX_NODES
    return make_plan(prepare(Graph(nodes, ["a"])), FABRICS["ecp5"], placement="hardwired")


def test_join_buffer_of_a_long_branch(chain_plan):
    assert len(chain_plan.stages) == 1002
    assert chain_plan["a"].inputs == ["x", "r999"]
    # Every relu passes beats one for one, so the skip needs no more than a beat.
    assert chain_plan.fifo_depths.get(("a", 0), 0) <= 1 and chain_plan.cycles == 9

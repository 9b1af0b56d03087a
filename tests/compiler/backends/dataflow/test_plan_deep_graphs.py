"""A graph as deep as the node limit allows plans and converts (both recursed too deep)."""

import pytest

from compiler import limits
from compiler.backends.dataflow.cost import FABRICS
from compiler.ir import Graph, Node
from compiler.passes import prepare
from compiler.backends.dataflow.plan import make_plan


@pytest.fixture(scope="module")
def chain():
    """input -> 1,000 relus -> add(input, last): a join whose branch is 1,000 stages long."""
    nodes = [Node("x", "input", [], {"shape": [2, 3, 3], "bits": 4, "signed": True})]
    for i in range(1000):
        nodes.append(Node(f"r{i}", "relu", [nodes[-1].name]))
    nodes.append(Node("a", "add", ["x", nodes[-1].name]))
    assert len(nodes) <= limits.MAX_NODES
    return Graph(nodes, ["a"])


@pytest.fixture(scope="module")
def chain_plan(chain):
    return make_plan(prepare(chain), FABRICS["ecp5"], placement="hardwired")


def test_join_buffer_of_a_long_branch(chain_plan):
    assert len(chain_plan.stages) == 1002
    assert chain_plan["a"].inputs == ["x", "r999"]
    # Every relu passes beats one for one, so no beat count asks for a buffer; the
    # skip holds the long branch's latency, at most an image of the fork's beats.
    assert chain_plan.fifo_depths.get(("a", 0), 0) <= 1 + chain_plan["x"].out_beats
    assert chain_plan.cycles == 9


def test_deep_design_converts_to_verilog(chain_plan):
    # ready passes combinationally through every stage, and Amaranth's cycle check
    # walks that path recursively, a few frames per cell.
    from compiler.driver.build import accelerator_verilog
    text = accelerator_verilog(chain_plan)
    assert "module accel" in text and text.count("module ") >= 1000


def test_deep_design_builds_its_board_files(chain, tmp_path):
    from compiler import qpk
    from compiler.driver.build import BuildOptions, build
    path = tmp_path / "chain.qpk"
    qpk.save(chain, path)
    result = build(str(path), BuildOptions(out=tmp_path / "out", verify=0, synth=False),
                   stream=open(tmp_path / "log", "w"))
    assert (tmp_path / "out" / "accel.v").exists() and result.ok

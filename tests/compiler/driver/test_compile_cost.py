"""The compiler refuses work that would exhaust the machine, before doing it."""

import numpy as np
import pytest

from compiler.driver.compile_cost import check_cost, graph_cost, plan_cost
from compiler.backends.dataflow.cost import FABRICS
from compiler.errors import BuildError
from compiler.ir import Graph, Node, validate_graph
from compiler.passes import prepare
from compiler.backends.dataflow.plan import make_plan


def wide(bits, channels=64, size=8):
    return validate_graph(Graph([
        Node("input", "input", [], {"shape": [channels, size, size], "bits": 8, "signed": True}),
        Node("conv", "conv2d", ["input"], {"kernel": 1, "weight_kind": "ternary",
                                           "weight_bits": 2},
             {"weight": np.ones((channels, channels, 1, 1), np.int8)}),
        Node("q", "requant", ["conv"], {"bits": bits, "signed": True},
             {"multiplier": np.ones(channels), "offset": np.zeros(channels)}),
    ], ["q"]))


def test_a_small_model_costs_little():
    cost = graph_cost(wide(4), verify_inputs=32)
    check_cost(cost, memory=16 << 30, max_seconds=60)
    assert cost.bytes < 50 << 20 and cost.seconds < 10


def test_huge_threshold_tables_are_refused_with_the_culprit():
    # The largest table compiler.limits admits, on a machine with little memory.
    cost = graph_cost(wide(12, channels=512))
    with pytest.raises(BuildError, match=r"threshold table of 'q' \(512 x 4,095\)"):
        check_cost(cost, memory=64 << 20, max_seconds=1e9)


def test_huge_golden_maps_are_refused():
    g = wide(4, channels=16, size=512)           # the largest map compiler.limits admits
    with pytest.raises(BuildError, match="golden values of"):
        check_cost(graph_cost(g, verify_inputs=32), memory=2 << 30, max_seconds=1e9)


def test_hours_of_elaboration_are_refused():
    plan = make_plan(prepare(wide(4, channels=64)), FABRICS["ecp5"], placement="hardwired")
    cost = plan_cost(plan, verify_inputs=1)
    check_cost(cost, memory=16 << 30, max_seconds=3600)
    with pytest.raises(BuildError, match=r"hours.*hard-wired layer 'q'"):
        check_cost(cost, memory=16 << 30, max_seconds=cost.seconds / 2)

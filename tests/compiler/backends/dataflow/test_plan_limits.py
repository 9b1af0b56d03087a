"""What the planner refuses because the HDL cannot build it.

Amaranth asserted on too wide a signal; a model without stages had no clock.
"""

import numpy as np
import pytest

from compiler import limits
from compiler.backends.dataflow.cost import FABRICS
from compiler.errors import BuildError
from compiler.ir import Graph, Node
from compiler.passes import prepare
from compiler.backends.dataflow.plan import make_plan


def _vector_net(k, bits):
    rng = np.random.default_rng(0)
    return Graph([Node("x", "input", [], {"shape": [k], "bits": bits, "signed": True}),
                  Node("d", "dense", ["x"], {"weight_kind": "ternary", "weight_bits": 2},
                       {"weight": rng.integers(-1, 2, size=(2, k)).astype(np.int8)})], ["d"])


def _conv_requant(bits):
    rng = np.random.default_rng(1)
    return Graph([
        Node("x", "input", [], {"shape": [2, 6, 6], "bits": 8, "signed": True}),
        Node("c", "conv2d", ["x"], {"kernel": 3, "padding": 1, "weight_kind": "int",
                                    "weight_bits": 4},
             {"weight": rng.integers(-7, 8, size=(4, 2, 3, 3)).astype(np.int8)}),
        Node("q", "requant", ["c"], {"bits": bits, "signed": True},
             {"multiplier": np.full(4, 3.0), "offset": np.zeros(4)})], ["q"])


def test_too_wide_input_beat_refused():
    with pytest.raises(BuildError, match=r"node 'x': its output beat would be 4,096 lanes x "
                                         r"16 bits = 65,536 bits, wider than the 65,280"):
        make_plan(prepare(_vector_net(4096, 16)), FABRICS["ecp5"], placement="rom",
                  target_cycles=64)


def test_widest_allowed_beat_plans():
    plan = make_plan(prepare(_vector_net(4080, 16)), FABRICS["ecp5"], placement="rom",
                     target_cycles=64)
    assert max(b for s in plan.stages for _, _, b in s.signals()) \
        <= limits.MAX_SIGNAL_BITS


def test_a_long_staircase_folds_without_a_wide_threshold_word():
    # 4,095 thresholds per channel: a folded MVU reads one per lane and search step
    # (hw.mvu.RomLayout), so no signal holds a group's staircase.
    g = prepare(_conv_requant(12))
    plan = make_plan(g, FABRICS["ecp5"], placement="rom", target_cycles=36)
    assert plan["q"].pe == 4 and plan["q"].search_steps == 12
    assert max(b for s in plan.stages for _, _, b in s.signals()) <= limits.MAX_SIGNAL_BITS


@pytest.mark.parametrize("nodes", [
    [Node("x", "input", [], {"shape": [3], "bits": 8, "signed": True})],
    [Node("x", "input", [], {"shape": [3, 1, 1], "bits": 8, "signed": True}),
     Node("f", "flatten", ["x"])],
])
def test_a_model_that_computes_nothing_is_refused(nodes):
    # Its accelerator would be wires without a clock, which the bench cannot drive.
    with pytest.raises(BuildError, match="is the input itself: the model computes nothing"):
        make_plan(prepare(Graph(nodes, [nodes[-1].name])), FABRICS["ecp5"])

"""The whole accelerator in Amaranth's simulator equals the golden model, under stalls."""

import re

import numpy as np
import pytest

from compiler.ir import interpret
from compiler.driver.build import accelerator_verilog, output_array, stream_beats
from compiler.backends.dataflow.cost import FABRICS
from compiler.backends.dataflow.lower import Accelerator
from compiler.passes import prepare
from compiler.backends.dataflow.plan import make_plan
from graphs import random_inputs, small_cnn
from sim.pysim import run_streams


@pytest.mark.parametrize("kind,placement,target", [
    ("ternary", "hardwired", None),
    ("pow2", "rom", 400),
    ("int", "rom", 3000),
])
def test_accelerator_matches_golden(kind, placement, target):
    rng = np.random.default_rng(7)
    g = small_cnn(rng, kind)
    plan = make_plan(prepare(g), FABRICS["ecp5"], placement=placement, target_cycles=target)
    x = random_inputs(rng, g, 3)
    got, _ = run_streams(Accelerator(plan), {"i": stream_beats(x)}, {"o": len(x)},
                         stall=0.3, seed=2)
    np.testing.assert_array_equal(output_array(got["o"], plan.graph), interpret.run(g, x))


def test_verilog_has_no_multiplier_and_is_deterministic():
    rng = np.random.default_rng(8)
    g = prepare(small_cnn(rng, "int", 4))
    for placement in ("hardwired", "rom"):
        plan = make_plan(g, FABRICS["xilinx"], placement=placement, target_cycles=2000)
        text = accelerator_verilog(plan)
        assert not re.search(r"[\w)\]] \* [\w(]", text), "a multiplication in the Verilog"
        assert accelerator_verilog(make_plan(g, FABRICS["xilinx"], placement=placement,
                                             target_cycles=2000)) == text

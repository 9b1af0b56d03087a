"""The cost model's calibration: factors per family and part, and the data behind them."""

import json

import numpy as np
import pytest

from compiler.backends.dataflow import calibration
from compiler.backends.dataflow.cost import FABRICS, Resources
from compiler.backends.dataflow.plan import make_plan
from compiler.passes import prepare
from graphs import small_cnn

DATA = json.loads(calibration.DATA.read_text())


@pytest.fixture(scope="module")
def graph():
    return prepare(small_cnn(np.random.default_rng(3), "ternary"))


def test_scale_multiplies_luts_and_ffs_of_a_part_not_block_ram(monkeypatch):
    monkeypatch.setattr(calibration, "_FACTORS", {"ecp5": {
        "luts": {"hardwired": 0.5, "rom": 2.0, "other": 1.0},
        "ffs": {"hardwired": 1.0, "rom": 1.5, "other": 1.0}}})
    res = calibration.scale("ecp5", "rom", Resources(1000, 100, 7))
    assert (res.luts, res.ffs, res.brams) == (2000, 150, 7)
    assert calibration.scale("xilinx", "rom", Resources(1000, 100, 7)).luts == 1000


@pytest.mark.parametrize("placement", ["hardwired", "rom"])
def test_plan_estimate_is_its_parts_calibrated(graph, placement):
    plan = make_plan(graph, FABRICS["xilinx"], placement=placement,
                     target_cycles=None if placement == "hardwired" else 800)
    parts = plan.parts()
    expect = Resources()
    for part, res in parts.items():
        expect += calibration.scale("xilinx", part, res)
    assert plan.resources.as_dict() == expect.as_dict()
    raw = sum(r.luts for r in parts.values())
    stages = sum(s.resources.luts for s in plan.stages)
    assert raw >= stages            # FIFOs and skid buffers on top of the stages
    for s in plan.stages:
        assert plan.estimate(s).luts == calibration.scale(
            "xilinx", calibration.part_of(s), s.resources).luts


@pytest.mark.parametrize("family", ["xilinx", "ecp5"])
def test_every_reference_design_is_within_15_percent(family):
    """The stored measurements (Yosys on each reference design, `python -m bench.calibrate
    --write`) against the stored factors: the fit the planner uses holds on every one."""
    factors = DATA["factors"][family]
    designs = [d for d in DATA["designs"] if d["family"] == family]
    assert len(designs) >= 6
    for d in designs:
        for resource in ("luts",):
            est = sum(factors[resource][p] * v[resource] for p, v in d["parts"].items())
            measured = d["measured"][resource]
            assert abs(est - measured) <= 0.15 * measured, (d["design"], est, measured)

"""Planning: placement, folding to a cycle budget, and refusing what cannot fit."""

import numpy as np
import pytest

from compiler.backends.dataflow.cost import FABRICS
from compiler.errors import BuildError
from compiler.passes import prepare
from compiler.backends.dataflow.plan import READY_CHAIN, check_budget, make_plan
from graphs import small_cnn


@pytest.fixture(scope="module")
def graph():
    return prepare(small_cnn(np.random.default_rng(3), "ternary"))


def test_stages_fuse_requantization_into_mvus(graph):
    plan = make_plan(graph, FABRICS["ecp5"], placement="hardwired")
    kinds = [(s.name, s.kind) for s in plan.stages]
    assert kinds == [("input", "input"), ("act1", "conv"), ("act2", "conv"),
                     ("res1_act", "conv"), ("res2_q", "conv"), ("res_add", "add"),
                     ("res_out", "threshold"), ("pool", "maxpool"), ("gap", "gap"),
                     ("fc", "dense")]
    assert plan["act1"].nodes == ["conv1", "act1"] and plan["fc"].thresholds is None
    # Hard-wired: one vector per cycle, so the padded 10x10 input map sets the rate.
    assert plan.cycles == 100 and plan.bottleneck.name in ("act1", "act2")


def test_join_buffer_sized_for_skip(graph):
    plan = make_plan(graph, FABRICS["ecp5"], placement="hardwired")
    # Skip branch (input 1 of res_add) waits for two 3x3 pad-1 convs on a 4x4 map.
    assert plan.fifo_depths[("res_add", 1)] >= 4 + 1


def test_skid_buffers_follow_the_fifos_of_mac_stages_and_joins(graph):
    # A FIFO's level counter moves with the ready it is given: behind a skid buffer
    # that ready is a register, not the end of a path through pad, window and MVU.
    plan = make_plan(graph, FABRICS["ecp5"], placement="hardwired")
    assert ("res_add", 1) in plan.fifo_depths and ("res_add", 1) in plan.skids
    for name, i in plan.fifo_depths:
        assert (name, i) in plan.skids, (name, i)
    slow = make_plan(graph, FABRICS["ice40"], placement="hardwired", clock_mhz=50)
    assert slow.fifo_depths and slow.skids == []


def test_no_ready_path_crosses_more_than_a_few_stages(graph):
    # After the residual add, ready would run from gap through pool, the requantizer
    # and the add into the enable of the add's input skids; a skid cuts it.
    plan = make_plan(graph, FABRICS["ecp5"], placement="hardwired")
    assert ("res_out", 0) in plan.skids and ("pool", 0) not in plan.skids

    def crossed(name):
        """The most stages a ready path from a consumer's register crosses up to `name`'s."""
        return 1 + max((crossed(c.name) for c, _ in plan.consumers(name)
                        if not c.skid_before), default=0)
    for s in plan.stages[1:]:
        assert crossed(s.name) <= READY_CHAIN, s.name


@pytest.mark.parametrize("target", [200, 500, 1500, 5000])
def test_target_cycles_met_with_least_parallelism(graph, target):
    plan = make_plan(graph, FABRICS["ecp5"], placement="rom", target_cycles=target)
    for s in plan.stages:
        if s.is_mvu:
            assert s.placement == "rom"
            assert s.mvu_cycles <= max(target, s.vectors)
            # No smaller PE x SIMD would also meet the target.
            assert all((s.n // pe) * (s.k // simd) * s.vectors > target
                       for pe in range(1, s.n + 1) if s.n % pe == 0
                       for simd in range(1, s.k + 1) if s.k % simd == 0
                       if pe * simd < s.pe * s.simd) or s.pe * s.simd == 1


def test_auto_folds_the_layers_that_would_idle(graph):
    """Balanced folding: auto keeps the hard-wired design's rate with fewer LUTs, the
    layers on the small maps after the pool folded to that rate and no faster needed."""
    hard = make_plan(graph, FABRICS["ecp5"], placement="hardwired")
    auto = make_plan(graph, FABRICS["ecp5"], budget={"luts": 10**6, "ffs": 10**6,
                                                     "brams": 1000})
    assert auto.cycles == hard.cycles and auto.resources.luts < hard.resources.luts
    folded = [s for s in auto.mvus if s.placement == "rom"]
    assert folded and any(s.placement == "hardwired" for s in auto.mvus)
    for s in folded:
        assert s.cycles <= auto.cycles and hard[s.name].cycles < hard.cycles
        assert s.fold_for(auto.cycles) == (s.pe, s.simd)


def test_auto_folds_when_hardwired_does_not_fit(graph):
    hard = make_plan(graph, FABRICS["ice40"], placement="hardwired")
    budget = {"luts": hard.resources.luts // 2, "ffs": 10 ** 6, "brams": 1000}
    auto = make_plan(graph, FABRICS["ice40"], budget=budget)
    assert {s.placement for s in auto.stages if s.is_mvu} == {"rom"}
    assert auto.resources.luts <= 0.8 * budget["luts"]
    check_budget(auto, "tiny")


def test_refuses_with_numbers_and_remedy(graph):
    plan = make_plan(graph, FABRICS["ice40"], budget={"luts": 100, "ffs": 100, "brams": 1},
                     placement="hardwired")
    with pytest.raises(BuildError) as info:
        check_budget(plan, "tiny")
    msg = str(info.value)
    assert "does not fit tiny" in msg and "luts: needs ~" in msg and "tiny has 100" in msg
    assert "--weights rom" in msg


def test_fold_override(graph):
    plan = make_plan(graph, FABRICS["ecp5"], placement="hardwired", overrides={"conv2": (2, 4)})
    s = plan["act2"]
    assert (s.placement, s.pe, s.simd) == ("rom", 2, 4)
    with pytest.raises(BuildError, match="PE must divide"):
        make_plan(graph, FABRICS["ecp5"], overrides={"conv2": (3, 4)})
    with pytest.raises(BuildError, match="no convolution or dense layer"):
        make_plan(graph, FABRICS["ecp5"], overrides={"nope": (1, 1)})


def _wide_requant_graph(bits):
    """input -> 3x3 conv -> signed ``bits``-bit requant (2**bits - 1 thresholds) -> gap -> dense."""
    from compiler.ir import Graph, Node
    from graphs import calibrate, random_inputs
    rng = np.random.default_rng(5)
    nodes = [
        Node("input", "input", [], {"shape": [2, 6, 6], "bits": 8, "signed": True}),
        Node("conv", "conv2d", ["input"],
             {"kernel": 3, "stride": 1, "padding": 1, "weight_kind": "int", "weight_bits": 4},
             {"weight": rng.integers(-8, 8, size=(3, 2, 3, 3)).astype(np.int8)}),
        Node("wide", "requant", ["conv"], {"bits": bits, "signed": True},
             {"multiplier": np.ones(3), "offset": np.full(3, 0.5)}),
        Node("gap", "gap", ["wide"]),
        Node("flat", "flatten", ["gap"]),
        Node("fc", "dense", ["flat"], {"weight_kind": "int", "weight_bits": 4},
             {"weight": rng.integers(-8, 8, size=(2, 3)).astype(np.int8)}),
    ]
    graph = Graph(nodes, ["fc"], name="wide")
    return prepare(calibrate(graph, random_inputs(rng, graph, 8), rng))


@pytest.mark.parametrize("family", ["xilinx", "ecp5", "ice40"])
def test_searched_staircase_counts_its_table_in_luts(family):
    """A wide requantizer's thresholds are read combinationally: LUTs, never block RAM.

    The estimate used to price the table of a searched staircase as a memory,
    which for thousands of thresholds meant block RAMs that were then dropped:
    a 17-bit residual requantizer (131,071 thresholds a channel) was estimated
    at a few thousand LUTs, passed the budget, and its elaboration never ended.
    """
    fabric = FABRICS[family]
    graph = _wide_requant_graph(10)
    levels = 2 ** 10 - 1
    for placement in ("hardwired", "rom"):
        plan = make_plan(graph, fabric, placement=placement)
        s = plan["wide"]
        assert s.thresholds.shape == (3, levels) and s.kind == "conv"
        # at least a LUT-ROM bit per 2**inputs thresholds of every lane that searches
        table = -(-levels // 2 ** fabric.lut_inputs) * s.acc_width
        lanes = 3 if placement == "hardwired" else s.pe
        assert s.resources.luts >= lanes * table
    # ... so a board with fewer LUTs than the hard-wired table refuses it
    budget = {"luts": 3 * table - 1, "ffs": 10 ** 6, "brams": 10 ** 4}
    with pytest.raises(BuildError, match="does not fit"):
        check_budget(make_plan(graph, fabric, budget=budget, placement="hardwired"), "board")


def test_fastest_rom_design_is_no_faster_than_a_fold_override(graph):
    """A layer the user folds to 1x1 sets the pace; the others fold down to it, not further.

    The search for the fastest folded design used to start from the stages
    that are not MVUs only, so next to a slow overridden layer every other
    layer came out fully parallel: the same cycles per inference for many more
    LUTs (a random configuration took 9,300 LUTs where 1,100 kept the pace).
    """
    plan = make_plan(graph, FABRICS["ecp5"], placement="rom", overrides={"conv2": (1, 1)})
    pace = plan["act2"].cycles
    assert plan.cycles == pace and (plan["act2"].pe, plan["act2"].simd) == (1, 1)
    for s in plan.stages:
        if s.is_mvu and s.name != "act2":
            assert s.placement == "rom" and s.mvu_cycles <= pace
            assert all((s.n // pe) * (s.k // simd) * s.vectors > pace
                       for pe in range(1, s.n + 1) if s.n % pe == 0
                       for simd in range(1, s.k + 1) if s.k % simd == 0
                       if pe * simd < s.pe * s.simd), s.name


@pytest.mark.parametrize("brams", [0, 4, 1000])
def test_folded_roms_go_to_spare_block_ram(graph, brams):
    """With block RAM to spare, the folded stages' shallow weight ROMs move there, the most
    LUTs saved per block RAM first, never past the budget's share of block RAM; the
    design's LUTs only go down."""
    budget = {"luts": 10**6, "ffs": 10**6, "brams": brams}
    plan = make_plan(graph, FABRICS["xilinx"], budget=budget, placement="rom",
                     target_cycles=500)
    logic = make_plan(graph, FABRICS["xilinx"], budget=None, placement="rom",
                      target_cycles=500)
    blocks = [s for s in plan.mvus if s.rom_style == "block"]
    assert plan.resources.brams <= 0.8 * brams
    assert not any(s.rom_style for s in logic.mvus)
    assert plan.parts()["rom"].luts == logic.parts()["rom"].luts - sum(
        s.rom_cost(plan.fabric).luts - s.rom_cost(plan.fabric, "block").luts for s in blocks)
    if brams >= 1000:
        assert blocks == plan.mvus
    if brams == 0:
        assert not blocks
    for s in blocks:       # the RomMVU gets the attribute synthesis reads
        assert s.mvu().rom_attrs == {"ram_style": "block"}

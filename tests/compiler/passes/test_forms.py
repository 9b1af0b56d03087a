"""Weight forms (ternary2, codebook) and pow2 activations: IR checks, rewrites, hardware."""

import numpy as np
import pytest

from compiler.ir import interpret
from compiler.driver.build import output_array, stream_beats
from compiler.backends.dataflow.cost import FABRICS
from compiler.errors import GraphError
from compiler.ir import Graph, Node, validate_graph
from compiler.backends.dataflow.lower import Accelerator
from compiler.passes import prepare
from compiler.backends.dataflow.plan import make_plan
from graphs import codebook_conv, random_inputs, small_cnn
from sim import golden
from sim.pysim import run_streams

FORMS = [("ternary2", "linear"), ("codebook", "linear"), ("pow2", "pow2"), ("ternary", "pow2"),
         ("int", "pow2")]


@pytest.mark.parametrize("kind,levels", FORMS)
def test_rewrites_keep_every_output_bit(kind, levels):
    for seed in range(3):
        rng = np.random.default_rng(seed)
        g = small_cnn(rng, kind, act_levels=levels)
        x = random_inputs(rng, g, 64)
        prepared = prepare(g)
        assert not any(n.attrs.get("weight_kind") in ("ternary2", "codebook")
                       for n in prepared.nodes)
        np.testing.assert_array_equal(interpret.run(prepared, x), interpret.run(g, x))


def test_pow2_requant_is_nearest_level_and_thresholds_agree():
    rng = np.random.default_rng(0)
    m, c = rng.uniform(0.01, 0.5, size=4), rng.uniform(-2, 2, size=4)
    x = np.arange(-300, 301)[None, None, :].repeat(4, axis=1)[..., None]       # (1, 4, 601, 1)
    codes = golden.requant(x, m, c, bits=3, signed=False, levels="pow2")
    values = golden.pow2_value(codes)
    real = x * m[None, :, None, None] + c[None, :, None, None] - 0.5
    levels = golden.pow2_value(np.arange(8))
    # The nearest level, ties upwards; everything above the top level saturates.
    dist = np.abs(real[..., None] - levels)
    nearest = levels[np.argmax(-dist + 1e-9 * levels, axis=-1)]
    np.testing.assert_array_equal(values, nearest)
    th = golden.thresholds_for_requant(m, c, bits=3, signed=False, x_lo=-300, x_hi=300,
                                       levels="pow2")
    np.testing.assert_array_equal(golden.threshold(x, th, bits=3, signed=False), codes)


def _one_conv(weight, kind, bits):
    return Graph([Node("input", "input", [], {"shape": [2, 4, 4], "bits": 4, "signed": True}),
                  Node("c", "conv2d", ["input"], {"kernel": 3, "weight_kind": kind,
                                                  "weight_bits": bits}, {"weight": weight})],
                 ["c"])


def test_ternary2_needs_one_positive_and_one_negative_value():
    w = np.zeros((1, 2, 3, 3), np.int64)
    w[0, 0, 0, :3] = [3, -2, 3]
    validate_graph(_one_conv(w, "ternary2", 3))
    w[0, 1, 0, 0] = 2
    with pytest.raises(GraphError, match="node 'c'.*one positive and one negative"):
        validate_graph(_one_conv(w, "ternary2", 3))
    w[0, 1, 0, 0] = 0
    with pytest.raises(GraphError, match="node 'c'"):
        validate_graph(_one_conv(w, "ternary2", 2))          # 3 needs more than 2 bits


def test_codebook_must_reproduce_the_weights():
    rng = np.random.default_rng(3)
    node = codebook_conv(rng, "c", "input", 2, 3, kernels=4, index_bits=2)
    g = Graph([Node("input", "input", [], {"shape": [2, 5, 5], "bits": 4, "signed": True}), node],
              ["c"])
    validate_graph(g)
    node.tensors["weight"] = node.tensors["weight"].copy()
    node.tensors["weight"][1, 0, 0, 0] += 1
    with pytest.raises(GraphError, match=r"node 'c'.*weight\[1, 0\] is not codebook"):
        validate_graph(g)
    node.tensors["weight"][1, 0, 0, 0] -= 1
    node.attrs["weight_bits"] = 1
    with pytest.raises(GraphError, match="4 codebook kernels need more than the 1-bit"):
        validate_graph(g)


def test_codebook_hardware_follows_the_codebook_size():
    rng = np.random.default_rng(4)
    node = codebook_conv(rng, "c", "input", 8, 32, kernels=4, index_bits=2)
    g = Graph([Node("input", "input", [], {"shape": [8, 6, 6], "bits": 4, "signed": True}), node],
              ["c"])
    prepared = prepare(g)
    (record,) = prepared.metadata["weight_forms"]
    assert record["partial_maps"] <= 8 * 3          # a partial map per (channel, non-zero kernel)
    assert record["built_adders"] < record["direct_adders"] / 2


@pytest.mark.parametrize("kind,levels,placement,target", [
    ("ternary2", "linear", "hardwired", None),
    ("ternary2", "linear", "rom", 600),
    ("codebook", "linear", "hardwired", None),
    ("codebook", "linear", "rom", 800),
    ("pow2", "pow2", "hardwired", None),
    ("pow2", "pow2", "rom", 500),
])
def test_accelerator_matches_golden(kind, levels, placement, target):
    rng = np.random.default_rng(11)
    g = small_cnn(rng, kind, act_levels=levels)
    plan = make_plan(prepare(g), FABRICS["ecp5"], placement=placement, target_cycles=target)
    if levels == "pow2":
        assert any(s.in_pow2 for s in plan.mvus), "no MVU took pow2 codes directly"
    x = random_inputs(rng, g, 3)
    got, _ = run_streams(Accelerator(plan), {"i": stream_beats(x)}, {"o": len(x)},
                         stall=0.3, seed=5)
    np.testing.assert_array_equal(output_array(got["o"], plan.graph), interpret.run(g, x))

"""Fusing a relu into the requant before it: the same output bits, one stage less."""

import numpy as np

from compiler.ir import Graph, Node, interpret, validate_graph
from compiler.passes import fuse_relu
from graphs import random_inputs


def test_fuse_relu_into_signed_requant():
    rng = np.random.default_rng(5)
    g = Graph([
        Node("x", "input", [], {"shape": [2, 3, 3], "bits": 6, "signed": True}),
        Node("q", "requant", ["x"], {"bits": 4, "signed": True},
             {"multiplier": np.array([0.3, 0.7]), "offset": np.array([0.5, -1.2])}),
        Node("r", "relu", ["q"]),
    ], ["r"])
    x = random_inputs(rng, validate_graph(g), 32)
    fused = validate_graph(fuse_relu(g.copy()))
    assert [n.op for n in fused.nodes] == ["input", "requant"]
    assert fused.outputs == ["r"] and fused["r"].attrs == {"bits": 3, "signed": False,
                                                            "scale": None, "levels": "linear"}
    np.testing.assert_array_equal(interpret.run(g, x), interpret.run(fused, x))


def test_relu_after_unsigned_requant_disappears():
    g = Graph([
        Node("x", "input", [], {"shape": [4], "bits": 6, "signed": True}),
        Node("q", "requant", ["x"], {"bits": 4, "signed": False},
             {"multiplier": np.ones(4), "offset": np.zeros(4)}),
        Node("r", "relu", ["q"]),
        Node("d", "dense", ["r"], {"weight_kind": "ternary", "weight_bits": 2},
             {"weight": np.ones((2, 4), np.int8)}),
    ], ["d"])
    fused = validate_graph(fuse_relu(validate_graph(g).copy()))
    assert [n.name for n in fused.nodes] == ["x", "q", "d"] and fused["d"].inputs == ["q"]

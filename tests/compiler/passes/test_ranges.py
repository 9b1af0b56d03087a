"""Range inference: passes never change a result, and the widths they infer are exact."""

import numpy as np
import pytest

from compiler.ir import interpret
from compiler.ir import Graph, Node, bits_for_range, validate_graph
from compiler.passes import infer_ranges, prepare
from graphs import random_inputs, random_weights, small_cnn


@pytest.mark.parametrize("kind", ["ternary", "pow2", "int"])
def test_prepare_keeps_every_output(kind):
    rng = np.random.default_rng(1)
    g = small_cnn(rng, kind)
    p = prepare(g)
    assert not any(n.op == "requant" for n in p.nodes)
    x = random_inputs(rng, g, 64)
    np.testing.assert_array_equal(interpret.run(g, x), interpret.run(p, x))


@pytest.mark.parametrize("kind", ["ternary", "pow2", "int"])
def test_values_stay_in_inferred_ranges(kind):
    rng = np.random.default_rng(2)
    g = prepare(small_cnn(rng, kind))
    values = interpret.run_all(g, random_inputs(rng, g, 64))
    for node in g.nodes:
        v = values[node.name]
        assert node.lo <= v.min() and v.max() <= node.hi, node.name


def single_layer(rng, kind, bits, op, x_bits, x_signed, bias):
    shape = [3, 3, 3] if op == "conv2d" else [12]
    weight_shape = (6, 3, 3, 3) if op == "conv2d" else (6, 12)
    attrs = {"weight_kind": kind, "weight_bits": bits}
    if op == "conv2d":
        attrs.update(kernel=3)
    tensors = {"weight": random_weights(rng, weight_shape, kind, bits)}
    if bias:
        tensors["bias"] = rng.integers(-100, 100, size=6).astype(np.int32)
    return validate_graph(Graph([
        Node("x", "input", [], {"shape": shape, "bits": x_bits, "signed": x_signed}),
        Node("y", op, ["x"], attrs, tensors)], ["y"]))


@pytest.mark.parametrize("kind,bits", [("ternary", 2), ("pow2", 4), ("int", 5)])
@pytest.mark.parametrize("op", ["conv2d", "dense"])
@pytest.mark.parametrize("x_bits,x_signed", [(8, True), (4, False)])
def test_accumulator_range_is_reached(kind, bits, op, x_bits, x_signed):
    """The inferred bounds are attained, so the width is the least that cannot overflow."""
    rng = np.random.default_rng(bits + x_bits)
    g = infer_ranges(single_layer(rng, kind, bits, op, x_bits, x_signed, bias=True))
    x_node, y = g["x"], g["y"]
    w = y.tensors["weight"].reshape(6, -1).astype(np.int64)
    b = y.tensors["bias"].astype(np.int64)
    sums_hi = np.where(w > 0, x_node.hi, x_node.lo) * w
    sums_lo = np.where(w > 0, x_node.lo, x_node.hi) * w
    c_hi = int(np.argmax(sums_hi.sum(1) + b))
    c_lo = int(np.argmin(sums_lo.sum(1) + b))
    shape = tuple(x_node.shape)
    worst_hi = np.where(w[c_hi] > 0, x_node.hi, x_node.lo).reshape(shape)[None]
    worst_lo = np.where(w[c_lo] > 0, x_node.lo, x_node.hi).reshape(shape)[None]
    assert interpret.run(g, worst_hi).max() == y.hi
    assert interpret.run(g, worst_lo).min() == y.lo
    width, signed = bits_for_range(y.lo, y.hi)
    assert signed == (y.lo < 0)
    # One bit less cannot hold both ends.
    lo_min = -(1 << (width - 2)) if signed else 0
    hi_max = (1 << (width - 2)) - 1 if signed else (1 << (width - 1)) - 1
    assert y.lo < lo_min or y.hi > hi_max


@pytest.mark.parametrize("lo,hi,width,signed", [
    (0, 0, 1, False), (0, 1, 1, False), (0, 255, 8, False), (0, 256, 9, False),
    (-1, 0, 1, True), (-128, 127, 8, True), (-129, 0, 9, True), (-1, 128, 9, True),
])
def test_bits_for_range(lo, hi, width, signed):
    assert bits_for_range(lo, hi) == (width, signed)

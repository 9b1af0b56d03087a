"""Random graphs for tests: small CNNs with real-looking requantization."""

import numpy as np

from compiler import interpret
from compiler.ir import Graph, Node, validate_graph
from compiler.ir.ops import pow2_max_exponent

__all__ = ["random_weights", "small_cnn", "calibrate", "random_inputs"]


def random_weights(rng, shape, kind, bits):
    if kind == "ternary":
        return rng.choice([-1, 0, 1], size=shape, p=[0.3, 0.4, 0.3]).astype(np.int8)
    if kind == "pow2":
        emax = min(pow2_max_exponent(bits), 6)
        mag = 2 ** rng.integers(0, emax + 1, size=shape)
        sign = rng.choice([-1, 0, 1], size=shape, p=[0.4, 0.2, 0.4])
        return (sign * mag).astype(np.int8)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8)


def _requant(name, src, channels, bits, signed, rng):
    return Node(name, "requant", [src], {"bits": bits, "signed": signed},
                {"multiplier": np.ones(channels), "offset": np.full(channels, 0.5)})


def calibrate(graph, x, rng):
    """Set each requant's multiplier so its output uses most of its range on ``x``."""
    validate_graph(graph)
    for node in graph.nodes:
        if node.op != "requant":
            continue
        values = interpret.run_all(graph, x)[node.inputs[0]]
        c = values.shape[1]
        per_c = np.moveaxis(values, 1, 0).reshape(c, -1)
        top = np.percentile(np.abs(per_c), 99, axis=1) + 1
        levels = 2 ** (node.attrs["bits"] - (1 if node.attrs["signed"] else 0))
        node.tensors["multiplier"] = levels / top * rng.uniform(0.6, 1.2, size=c)
        node.tensors["offset"] = rng.uniform(-1, 1.5, size=c)
    return graph


def random_inputs(rng, graph, n):
    inp = graph.input
    bits, signed = inp.attrs["bits"], inp.attrs["signed"]
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    return rng.integers(lo, hi + 1, size=(n, *inp.attrs["shape"]))


def small_cnn(rng, kind="ternary", bits=None, *, channels=(4, 8), size=8, classes=10,
              act_bits=3, calib=16):
    """The issue's test network: 3x3 convs (one with stride 2), a residual block,
    max pool, global average pool and a dense classifier."""
    bits = bits or {"ternary": 2, "pow2": 4, "int": 4}[kind]
    c1, c2 = channels
    wk = {"weight_kind": kind, "weight_bits": bits}
    conv = lambda name, src, cin, cout, stride=1: Node(  # noqa: E731
        name, "conv2d", [src], {"kernel": 3, "stride": stride, "padding": 1, **wk},
        {"weight": random_weights(rng, (cout, cin, 3, 3), kind, bits)})
    nodes = [
        Node("input", "input", [], {"shape": [1, size, size], "bits": 8, "signed": True}),
        conv("conv1", "input", 1, c1), _requant("act1", "conv1", c1, act_bits, False, rng),
        conv("conv2", "act1", c1, c2, stride=2), _requant("act2", "conv2", c2, act_bits, False, rng),
        conv("res1", "act2", c2, c2), _requant("res1_act", "res1", c2, act_bits, False, rng),
        conv("res2", "res1_act", c2, c2), _requant("res2_q", "res2", c2, act_bits + 2, True, rng),
        Node("res_add", "add", ["res2_q", "act2"]),
        _requant("res_out", "res_add", c2, act_bits, False, rng),
        Node("pool", "maxpool", ["res_out"], {"kernel": 2}),
        Node("gap", "gap", ["pool"]),
        Node("flat", "flatten", ["gap"]),
        Node("fc", "dense", ["flat"], wk,
             {"weight": random_weights(rng, (classes, c2), kind, bits),
              "bias": rng.integers(-50, 50, size=classes).astype(np.int32)}),
    ]
    graph = Graph(nodes, ["fc"], name=f"small_cnn_{kind}")
    x = random_inputs(rng, graph, calib)
    return calibrate(graph, x, rng)

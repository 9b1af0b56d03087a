"""Random graphs for tests: small CNNs with real-looking requantization."""

import numpy as np

from compiler.ir import interpret
from compiler.ir import Graph, Node, validate_graph
from compiler.ops import pow2_max_exponent

__all__ = ["random_weights", "small_cnn", "calibrate", "random_inputs", "engine_net"]


def random_weights(rng, shape, kind, bits):
    if kind == "ternary2":
        t = random_weights(rng, shape, "ternary", 2).astype(np.int64)
        hi = 2 ** (bits - 1) - 1
        p, n = rng.integers(1, hi + 1, size=2)
        return (p * (t > 0) - n * (t < 0)).astype(np.int16)
    if kind == "ternary":
        return rng.choice([-1, 0, 1], size=shape, p=[0.3, 0.4, 0.3]).astype(np.int8)
    if kind == "pow2":
        emax = min(pow2_max_exponent(bits), 6)
        mag = 2 ** rng.integers(0, emax + 1, size=shape)
        sign = rng.choice([-1, 0, 1], size=shape, p=[0.4, 0.2, 0.4])
        return (sign * mag).astype(np.int8)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8)


def codebook_conv(rng, name, src, cin, cout, *, kernels=3, index_bits=2, entry_bits=6,
                  stride=1, padding=1, k=3):
    """A KQ-style conv2d: ``kernels`` codebook kernels, one random index per (o, c)."""
    lo, hi = -(2 ** (entry_bits - 1)), 2 ** (entry_bits - 1) - 1
    cb = rng.integers(lo // 2, hi // 2 + 1, size=(kernels, k, k))
    cb[0] = 0                                   # a zero kernel, as k-means often finds
    idx = rng.integers(0, kernels, size=(cout, cin))
    return Node(name, "conv2d", [src],
                {"kernel": k, "stride": stride, "padding": padding, "weight_kind": "codebook",
                 "weight_bits": index_bits, "entry_bits": entry_bits},
                {"weight": cb[idx].astype(np.int64), "codebook": cb, "indices": idx})


def _requant(name, src, channels, bits, signed, rng, levels="linear"):
    return Node(name, "requant", [src], {"bits": bits, "signed": signed, "levels": levels},
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
        if node.attrs.get("levels") == "pow2":
            levels = 2 ** (2 ** node.attrs["bits"] - 2)
        node.tensors["multiplier"] = levels / top * rng.uniform(0.6, 1.2, size=c)
        node.tensors["offset"] = rng.uniform(-1, 1.5, size=c)
    return graph


def random_inputs(rng, graph, n):
    inp = graph.input
    bits, signed = inp.attrs["bits"], inp.attrs["signed"]
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    return rng.integers(lo, hi + 1, size=(n, *inp.attrs["shape"]))


def small_cnn(rng, kind="ternary", bits=None, *, channels=(4, 8), size=8, classes=10,
              act_bits=3, calib=16, act_levels="linear"):
    """The issue's test network: 3x3 convs (one with stride 2), a residual block,
    max pool, global average pool and a dense classifier.

    ``kind`` is a weight kind; ``codebook`` applies to the convolutions (the
    classifier gets 4-bit ints). ``act_levels="pow2"`` makes the unsigned
    activations power-of-two codes.
    """
    bits = bits or {"ternary": 2, "pow2": 4, "int": 4, "ternary2": 5, "codebook": 2}[kind]
    c1, c2 = channels
    wk = {"weight_kind": kind, "weight_bits": bits}

    conv_kind = kind

    def conv(name, src, cin, cout, stride=1):
        if conv_kind == "codebook":
            return codebook_conv(rng, name, src, cin, cout, index_bits=bits, stride=stride)
        return Node(name, "conv2d", [src], {"kernel": 3, "stride": stride, "padding": 1, **wk},
                    {"weight": random_weights(rng, (cout, cin, 3, 3), kind, bits)})

    def rq(name, src, channels, bits_, signed, rng_):
        return _requant(name, src, channels, bits_, signed, rng_,
                        levels=act_levels if not signed else "linear")

    if kind == "codebook":
        wk = {"weight_kind": "int", "weight_bits": 4}
        kind, bits = "int", 4
    nodes = [
        Node("input", "input", [], {"shape": [1, size, size], "bits": 8, "signed": True}),
        conv("conv1", "input", 1, c1), rq("act1", "conv1", c1, act_bits, False, rng),
        conv("conv2", "act1", c1, c2, stride=2), rq("act2", "conv2", c2, act_bits, False, rng),
        conv("res1", "act2", c2, c2), rq("res1_act", "res1", c2, act_bits, False, rng),
        conv("res2", "res1_act", c2, c2), rq("res2_q", "res2", c2, act_bits + 2, True, rng),
        Node("res_add", "add", ["res2_q", "act2"]),
        rq("res_out", "res_add", c2, act_bits, False, rng),
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


def engine_net(rng, kind="ternary", bits=2, *, channels=8, size=8, classes=10, act_bits=3,
               calib=16):
    """A network the layer engine schedules, as small as it gets: a stem conv, one
    residual block with an identity shortcut, global average pool and a dense
    classifier (``channels`` a multiple of the engine's SIMD lanes)."""
    c = channels
    wk = {"weight_kind": kind, "weight_bits": bits}

    def conv(name, src, cin, cout):
        return Node(name, "conv2d", [src], {"kernel": 3, "stride": 1, "padding": 1, **wk},
                    {"weight": random_weights(rng, (cout, cin, 3, 3), kind, bits)})

    nodes = [
        Node("input", "input", [], {"shape": [1, size, size], "bits": 8, "signed": True}),
        conv("conv1", "input", 1, c), _requant("act1", "conv1", c, act_bits, False, rng),
        conv("res1", "act1", c, c), _requant("res1_act", "res1", c, act_bits, False, rng),
        conv("res2", "res1_act", c, c), _requant("res2_q", "res2", c, act_bits + 2, True, rng),
        Node("res_add", "add", ["res2_q", "act1"]),
        _requant("res_out", "res_add", c, act_bits, False, rng),
        Node("gap", "gap", ["res_out"]), Node("flat", "flatten", ["gap"]),
        Node("fc", "dense", ["flat"], wk,
             {"weight": random_weights(rng, (classes, c), kind, bits),
              "bias": rng.integers(-50, 50, size=classes).astype(np.int32)}),
    ]
    graph = Graph(nodes, ["fc"], name=f"engine_net_{kind}")
    return calibrate(graph, random_inputs(rng, graph, calib), rng)

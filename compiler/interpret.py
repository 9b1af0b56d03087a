"""Run a graph on the golden integer model (:mod:`sim.golden`)."""

import numpy as np

from sim import golden

from .ir import CODE_PASSING_OPS, encodings

__all__ = ["run", "run_all"]


def _eval(node, args):
    a, t = node.attrs, node.tensors
    op = node.op
    if op == "conv2d":
        return golden.conv2d(args[0], t["weight"], t.get("bias"),
                             stride=a["stride"], padding=a["padding"])
    if op == "dense":
        return golden.dense(args[0], t["weight"], t.get("bias"))
    if op == "relu":
        return golden.relu(args[0])
    if op == "maxpool":
        return golden.maxpool(args[0], kernel=a["kernel"], stride=a["stride"])
    if op == "gap":
        return golden.gap(args[0])
    if op == "flatten":
        return golden.flatten(args[0])
    if op == "add":
        return golden.add(args[0], args[1])
    if op == "requant":
        return golden.requant(args[0], t["multiplier"], t["offset"],
                              bits=a["bits"], signed=a["signed"],
                              levels=a.get("levels") or "linear")
    if op == "pow2_decode":
        return golden.pow2_decode(args[0])
    if op == "threshold":
        return golden.threshold(args[0], t["thresholds"], bits=a["bits"], signed=a["signed"])
    raise AssertionError(op)


def run_all(graph, x):
    """Every node's output for a batch ``x`` of integer inputs; a dict by node name."""
    x = np.asarray(x)
    inp = graph.input
    shape = tuple(inp.attrs["shape"])
    if x.shape[1:] != shape:
        raise ValueError(f"input batch has shape {x.shape}, expected (B, {', '.join(map(str, shape))})")
    lo, hi = golden.int_range(inp.attrs["bits"], inp.attrs["signed"])
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"input values must lie in [{lo}, {hi}]")
    values = {}
    enc = encodings(graph)
    for node in graph.nodes:
        if node.op == "input":
            values[node.name] = x.astype(np.int64)
            continue
        args = [values[s] for s in node.inputs]
        if node.op not in CODE_PASSING_OPS + ("pow2_decode",):
            # pow2 codes feed computing ops as their values (compiler.ir.encoding).
            args = [golden.pow2_value(v) if enc[s] == "pow2" else v
                    for v, s in zip(args, node.inputs)]
        values[node.name] = _eval(node, args)
    return values


def run(graph, x):
    """The output of ``graph`` for a batch ``x`` of integer inputs."""
    return run_all(graph, x)[graph.outputs[0]]

"""Run a graph on the golden integer model: each node by its op (``op.golden``)."""

import numpy as np

from sim import golden

from ..ops import op_of
from .encoding import encodings

__all__ = ["run", "run_all"]


def run_all(graph, x):
    """Every node's output for a batch ``x`` of integer inputs; a dict by node name."""
    x = np.asarray(x)
    inp = graph.input
    shape = tuple(inp.attrs["shape"])
    if x.shape[1:] != shape:
        raise ValueError(f"input batch has shape {x.shape}, expected (B, "
                         f"{', '.join(map(str, shape))})")
    lo, hi = golden.int_range(inp.attrs["bits"], inp.attrs["signed"])
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"input values must lie in [{lo}, {hi}]")
    values = {}
    enc = encodings(graph)
    for node in graph.nodes:
        op = op_of(node)
        if op.is_input:
            values[node.name] = x.astype(np.int64)
            continue
        args = [values[s] for s in node.inputs]
        if op.computes:
            # pow2 codes feed computing ops as their values (compiler.ir.encoding).
            args = [golden.pow2_value(v) if enc[s] == "pow2" else v
                    for v, s in zip(args, node.inputs)]
        values[node.name] = op.golden(node, args)
    return values


def run(graph, x):
    """The output of ``graph`` for a batch ``x`` of integer inputs."""
    return run_all(graph, x)[graph.outputs[0]]

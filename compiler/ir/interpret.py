"""Run a graph on the golden integer model: each node by its op (``op.golden``).

The golden convolutions are one matrix product per image, a few milliseconds
each (:func:`sim.golden.conv2d`). numpy's OpenBLAS splits each one over every
core and then waits for the slowest thread; on a shared machine one of them is
often descheduled, and a ResNet-18 image took 1.8 s of wall time (0.9 s of CPU)
with two threads against 0.55 s (0.28 s) with one. So the graph runs with one
BLAS thread.
"""

import numpy as np
from numpy.typing import ArrayLike

from sim import golden

from ..ops import op_of
from .encoding import encodings
from .graph import Graph

__all__ = ["run", "run_all"]

_blas = None


def _one_blas_thread():
    """A context in which numpy's BLAS uses one thread."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController
        _blas = ThreadpoolController().select(user_api="blas")   # found once: ~1 ms
    return _blas.limit(limits=1)


def run_all(graph: Graph, x: ArrayLike) -> dict[str, np.ndarray]:
    """Every node's output for a batch ``x`` of integer inputs; a dict by node name."""
    with _one_blas_thread():
        return _run_all(graph, x)


def _run_all(graph, x):
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


def run(graph: Graph, x: ArrayLike) -> np.ndarray:
    """The output of ``graph`` for a batch ``x`` of integer inputs."""
    return run_all(graph, x)[graph.outputs[0]]

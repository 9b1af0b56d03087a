"""What compiling a model will cost the compiler itself, checked before the work starts.

A package of a few kilobytes can describe a design whose threshold tables,
hard-wired adder trees or golden-model feature maps take gigabytes and hours
to build. The planner knows every one of those sizes before anything large is
allocated, so the build estimates its own memory and time and refuses, with
the numbers and the part responsible, when they exceed what the machine has.

The rates are measured on this project's own designs (``python -m bench.compile_cost``
prints them again): elaborating and converting one hard-wired adder term takes
about 1.5 ms and 20 KB of Python objects, one threshold comparison about 0.4 ms
and 8 KB; Verilator spends about 2 ms per generated line, and a design emits
about 10 lines per such item.
"""

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import BuildError
from ..ops import Conv2d, Requant, is_op

__all__ = ["CompileCost", "graph_cost", "plan_cost", "check_cost", "machine_memory"]

#: Seconds and bytes per hard-wired adder term (elaboration + Verilog conversion).
TERM_SECONDS, TERM_BYTES = 1.5e-3, 20_000
#: Seconds and bytes per threshold comparison.
COMPARE_SECONDS, COMPARE_BYTES = 4e-4, 8_000
#: Per entry of a threshold table or ROM word of 64 bits computed in numpy/Python.
TABLE_SECONDS, TABLE_BYTES = 2e-6, 64
#: Verilator: seconds per hard-wired item (about 10 lines of Verilog at 2 ms per line).
VERILATOR_SECONDS = 2e-2
#: The golden model keeps every node's output for the batch (int64); while it computes one
#: node a few more copies of that node's map exist (float64 requant, the sum's own type).
GOLDEN_COPIES = 3
#: Time the compiler may take before it asks the user (override: SHIFTADD_MAX_COMPILE_S).
DEFAULT_MAX_SECONDS = 4 * 3600


@dataclass
class CompileCost:
    """Estimated seconds and bytes, with the largest contributions named."""
    seconds: float = 0.0
    bytes: int = 0
    parts: list = field(default_factory=list)      # (what, seconds, bytes)

    def add(self, what, seconds, nbytes):
        self.seconds += seconds
        self.bytes += int(nbytes)
        self.parts.append((what, seconds, int(nbytes)))

    def __iadd__(self, other):
        self.seconds += other.seconds
        self.bytes += other.bytes
        self.parts += other.parts
        return self

    def worst(self, key):
        return max(self.parts, key=key)[0] if self.parts else "nothing"


def machine_memory():
    """Physical memory of this machine in bytes (or None where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def graph_cost(graph, verify_inputs=0):
    """What :func:`compiler.passes.prepare` and the golden model will take for ``graph``.

    Needs shapes (a validated graph). Counts the threshold tables the requant
    lowering computes and the feature maps the golden model holds for
    ``verify_inputs`` inputs.
    """
    cost = CompileCost()
    batch = max(int(verify_inputs), 1)
    largest = None
    for node in graph.nodes:
        if is_op(node, Requant):
            entries = node.shape[0] * (2 ** node.attrs["bits"] - 1)
            cost.add(f"threshold table of '{node.name}' ({node.shape[0]:,} x "
                     f"{2 ** node.attrs['bits'] - 1:,})", entries * TABLE_SECONDS * 20,
                     entries * 8 * 4)
        if verify_inputs:
            elements = int(np.prod(node.shape, dtype=object))
            window = 0
            if is_op(node, Conv2d):
                # sim.golden.conv2d multiplies one image's window matrix at a time.
                k = node.attrs["kernel"]
                window = elements * graph[node.inputs[0]].shape[0] * k * k // max(node.shape[0], 1)
            cost.add(f"golden values of '{node.name}' ({'x'.join(map(str, node.shape))})",
                     (batch * elements + batch * window) * 2e-8,
                     (batch * elements + window) * 8)
            if largest is None or elements > largest[1]:
                largest = (node, elements)
    if largest is not None:
        node, elements = largest
        cost.add(f"golden values of '{node.name}' ({'x'.join(map(str, node.shape))}) while "
                 "they are computed", 0.0, batch * elements * 8 * (GOLDEN_COPIES - 1))
    return cost


def plan_cost(plan, verify_inputs=0):
    """What elaboration, Verilog conversion and Verilator will take for a plan.

    Each stage says how many adder terms and comparisons its cores elaborate
    (``Stage.elaboration``); the rates above turn them into seconds and bytes.
    """
    cost = CompileCost()
    verilator = VERILATOR_SECONDS if verify_inputs else 0.0
    for s in plan.stages:
        terms, compares, what = s.elaboration()
        if terms or compares:
            cost.add(what, terms * (TERM_SECONDS + verilator)
                     + compares * (COMPARE_SECONDS + verilator),
                     terms * TERM_BYTES + compares * COMPARE_BYTES)
    return cost


def _fmt_bytes(n):
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000


def check_cost(cost, *, memory=None, max_seconds=None):
    """Refuse a compilation that needs more memory or time than the machine allows."""
    memory = machine_memory() if memory is None else memory
    if max_seconds is None:
        max_seconds = float(os.environ.get("SHIFTADD_MAX_COMPILE_S", DEFAULT_MAX_SECONDS))
    # Half the machine: the compiler is not alone, and estimates are estimates.
    if memory is not None and cost.bytes > memory // 2:
        raise BuildError(f"compiling this model needs an estimated {_fmt_bytes(cost.bytes)} "
                         f"of memory, more than half of this machine's {_fmt_bytes(memory)}; "
                         f"the largest part is the {cost.worst(lambda p: p[2])}. Use fewer "
                         "channels or activation bits, or fold the layers (--weights rom)")
    if cost.seconds > max_seconds:
        raise BuildError(f"compiling this model would take an estimated "
                         f"{cost.seconds / 3600:,.1f} hours (limit {max_seconds / 3600:g} h, "
                         "SHIFTADD_MAX_COMPILE_S); the largest part is the "
                         f"{cost.worst(lambda p: p[1])}. Fold the layers (--weights rom) or "
                         "use fewer channels or activation bits")

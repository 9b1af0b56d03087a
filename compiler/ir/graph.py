"""The dataflow graph: typed nodes joined by integer tensors.

A :class:`Graph` is a list of :class:`Node` in topological order with one input
node and one or more output nodes. Every value flowing along an edge is a tensor
of integers without a batch dimension: a feature map ``(C, H, W)`` or a vector
``(K,)``. What each op computes is defined once, in :mod:`sim.golden`; the
attributes and tensors each op takes are listed in :mod:`compiler.ops`.

Passes fill in, for every node, its output ``shape`` and the exact range
``[lo, hi]`` of the integers it can produce; widths follow from the range.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hw.lanes import shape_for_range


def bits_for_range(lo: int, hi: int) -> tuple[int, bool]:
    """Width and signedness of the narrowest two's complement type holding ``[lo, hi]``."""
    if int(lo) > int(hi):
        raise ValueError(f"empty range [{lo}, {hi}]")
    shape = shape_for_range(int(lo), int(hi))
    return shape.width, shape.signed


def smallest_int_dtype(arr):
    """The narrowest of int8/16/32/64 holding every value of ``arr``."""
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    for dt in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    raise ValueError(f"integers in [{lo}, {hi}] do not fit int64")


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    # Filled by passes.
    shape: tuple[int, ...] | None = None
    lo: int | None = None
    hi: int | None = None

    @property
    def width(self) -> int:
        return bits_for_range(self.lo, self.hi)[0]

    @property
    def signed(self) -> bool:
        return bits_for_range(self.lo, self.hi)[1]

    @property
    def is_feature_map(self) -> bool:
        return len(self.shape) == 3

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def beats(self) -> int:
        """Stream beats per inference: one per pixel of a feature map, one for a vector."""
        return self.shape[1] * self.shape[2] if self.is_feature_map else 1

    def copy(self) -> Node:
        return Node(self.name, self.op, list(self.inputs), dict(self.attrs),
                    {k: np.array(v, copy=True) for k, v in self.tensors.items()},
                    self.shape, self.lo, self.hi)


@dataclass
class Graph:
    nodes: list[Node]
    outputs: list[str]
    name: str = "model"
    metadata: dict[str, Any] = field(default_factory=dict)
    producer: dict[str, Any] | None = None      # who wrote the package, as the .qpk says

    def __post_init__(self):
        self._index = None

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self):
        return len(self.nodes)

    def __getitem__(self, name: str) -> Node:
        if self._index is None or len(self._index) != len(self.nodes):
            self._index = {n.name: n for n in self.nodes}
        return self._index[name]

    def __contains__(self, name: str) -> bool:
        return any(n.name == name for n in self.nodes)

    @property
    def input(self) -> Node:
        from ..ops import op_of
        return next(n for n in self.nodes if op_of(n).is_input)

    @property
    def output(self) -> Node:
        """The single output node (the compiler builds one output stream)."""
        return self[self.outputs[0]]

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def replace_nodes(self, nodes: Iterable[Node]) -> None:
        self.nodes = list(nodes)
        self._index = None

    def copy(self) -> Graph:
        return Graph([n.copy() for n in self.nodes], list(self.outputs), self.name,
                     dict(self.metadata), self.producer)

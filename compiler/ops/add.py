"""``add``: the elementwise sum of two tensors of one shape and one scale (a residual join)."""

from dataclasses import dataclass

import numpy as np

from hw.join import AddJoin
from sim import golden

from ..backends.dataflow.cost import Resources
from ..backends.dataflow.stage import Stage
from .base import Op, fail, register

__all__ = ["Add", "AddStage"]


@dataclass(eq=False)
class AddStage(Stage):
    kind = "add"
    is_join = True

    def cost(self, fabric, goal=None, queues=True):
        self.cycles = self.in_beats
        bits = self.out_channels * self.out_lane.width
        # An adder bit a LUT (carry chain) and the output register.
        self.resources = Resources(luts=bits, ffs=bits + 1)

    def cores(self):
        return [("add", AddJoin(self.in_lanes[0], self.in_lanes[1], self.out_lane,
                                self.out_channels))]

    def join_need(self, need_a, need_b):
        return np.maximum(need_a, need_b)


@register
class Add(Op):
    name = "add"
    arity = 2
    doc = "Elementwise sum of two tensors of one shape and one scale."
    engine_role = "add"

    def infer_shape(self, node, in_shapes):
        if in_shapes[0] != in_shapes[1]:
            fail(node, f"inputs have different shapes {list(in_shapes[0])} and "
                       f"{list(in_shapes[1])}")
        return in_shapes[0]

    def value_range(self, node, srcs):
        return srcs[0].lo + srcs[1].lo, srcs[0].hi + srcs[1].hi

    def golden(self, node, args):
        return golden.add(args[0], args[1])

    def dataflow(self, node, builder):
        return AddStage(node.name, [node.name], **builder.streams(node))

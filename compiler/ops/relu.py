"""``relu``: ``max(x, 0)``."""

from dataclasses import dataclass

from hw.elementwise import ReLU as ReLUCore
from sim import golden

from ..backends.dataflow.cost import Resources
from ..backends.dataflow.stage import Stage
from .base import Op, register

__all__ = ["Relu", "ReluStage"]


@dataclass(eq=False)
class ReluStage(Stage):
    kind = "relu"

    def cost(self, fabric, goal=None, queues=True):
        self.cycles = self.in_beats
        # A 2:1 multiplexer per bit (the value or zero), two bits a LUT; registered output.
        self.resources = Resources(luts=self.in_channels * self.lane_in.width // 2,
                                   ffs=self.out_channels * self.out_lane.width + 1)

    def cores(self):
        return [("relu", ReLUCore(self.lane_in, self.out_lane, self.in_channels))]


@register
class Relu(Op):
    name = "relu"
    passes_codes = True       # codes keep the order of their values, and are never negative
    computes = False
    doc = "max(x, 0)."
    engine_role = "relu"

    def value_range(self, node, srcs):
        return max(srcs[0].lo, 0), max(srcs[0].hi, 0)

    def golden(self, node, args):
        return golden.relu(args[0])

    def dataflow(self, node, builder):
        return ReluStage(node.name, [node.name], **builder.streams(node))

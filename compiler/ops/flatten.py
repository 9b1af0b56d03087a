"""``flatten``: ``(C, H, W) -> (C*H*W,)`` in PyTorch's order."""

import math
from dataclasses import dataclass

from hw.flatten import Flatten as FlattenCore
from sim import golden

from ..backends.dataflow import buffers
from ..backends.dataflow.cost import REDUCE_CONTROL_FFS, Resources
from ..backends.dataflow.stage import Stage
from .base import Op, register

__all__ = ["Flatten", "FlattenStage"]


@dataclass(eq=False)
class FlattenStage(Stage):
    pixels: int = 1
    kind = "flatten"

    def cost(self, fabric, goal=None, queues=True):
        self.cycles = self.pixels
        bits = self.out_channels * self.out_lane.width
        # Each output lane is written from one input lane: a LUT per two bits of enable.
        self.resources = Resources(luts=bits // 2, ffs=bits + REDUCE_CONTROL_FFS)

    def cores(self):
        return [("flatten", FlattenCore(self.lane_in, self.in_channels, self.pixels))]

    def need(self):
        return buffers.reduce_need(self.pixels)


@register
class Flatten(Op):
    name = "flatten"
    passes_codes = True
    computes = False
    doc = "(C, H, W) -> (C*H*W,), PyTorch order."
    engine_role = "flatten"

    def infer_shape(self, node, in_shapes):
        return (math.prod(in_shapes[0]),)

    def golden(self, node, args):
        return golden.flatten(args[0])

    def dataflow(self, node, builder):
        src = builder.graph[node.inputs[0]]
        if len(src.shape) == 1 or src.shape[1:] == (1, 1):
            return builder.alias(node, src.name)          # nothing to do in hardware
        return FlattenStage(node.name, [node.name], **builder.streams(node), pixels=src.beats)

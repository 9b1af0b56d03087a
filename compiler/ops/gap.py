"""``gap``: global average pooling as an integer sum over H*W (the 1/(H*W) goes into the
scale of whatever consumes it, exactly)."""

from dataclasses import dataclass

from hw.pool import GlobalSum
from sim import golden

from ..backends.dataflow import buffers
from ..backends.dataflow.cost import REDUCE_CONTROL_FFS, Resources
from ..backends.dataflow.stage import Stage
from .base import Op, register

__all__ = ["Gap", "GapStage"]


@dataclass(eq=False)
class GapStage(Stage):
    pixels: int = 1
    kind = "gap"

    def cost(self, fabric, goal=None, queues=True):
        self.cycles = self.pixels
        bits = self.out_channels * self.out_lane.width
        # An adder bit a LUT; the running sums and the output beat.
        self.resources = Resources(luts=bits, ffs=2 * bits + REDUCE_CONTROL_FFS)

    def cores(self):
        return [("sum", GlobalSum(self.lane_in, self.out_lane, self.in_channels, self.pixels))]

    def need(self):
        return buffers.reduce_need(self.pixels)


@register
class Gap(Op):
    name = "gap"
    doc = ("Global average pool as an integer sum over H*W; the 1/(H*W) belongs to the scale "
           "of whatever consumes it.")
    engine_role = "gap"

    def infer_shape(self, node, in_shapes):
        self.need_fmap(node, in_shapes[0])
        return (in_shapes[0][0],)

    def value_range(self, node, srcs):
        x = srcs[0]
        n = x.shape[1] * x.shape[2]
        return x.lo * n, x.hi * n

    def golden(self, node, args):
        return golden.gap(args[0])

    def dataflow(self, node, builder):
        src = builder.graph[node.inputs[0]]
        return GapStage(node.name, [node.name], **builder.streams(node), pixels=src.beats)

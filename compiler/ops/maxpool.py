"""``maxpool``: the maximum over ``kernel`` x ``kernel`` windows, padded.

The padding holds the smallest value of the lane type (the hardware's lane of
the input; the golden model's int64), so it never wins a window: every window
overlaps the map because the padding is smaller than the kernel, and the
result is the same whichever lower bound pads. ``stride`` defaults to the
kernel (resolved once, at validation).
"""

from dataclasses import dataclass

from hw.lanes import shape_range
from hw.pool import WindowMax
from sim import golden

from .. import limits
from ..backends.dataflow.cost import Resources
from ..backends.dataflow.stage import Stage, Window
from .base import Attr, Op, fail, register, within

__all__ = ["MaxPool", "MaxPoolStage"]


@dataclass(eq=False)
class MaxPoolStage(Stage):
    window: Window = None
    kind = "maxpool"

    def cost(self, fabric, goal=None, queues=True):
        w = self.window
        self.cycles = w.padded_pixels
        lane = self.lane_in
        # A comparator and a 2:1 multiplexer per bit for each of the k*k - 1 comparisons.
        self.resources = w.cost(fabric, lane, self.in_channels) + Resources(
            luts=self.in_channels * (w.kernel ** 2 - 1) * lane.width * 2,
            ffs=self.in_channels * lane.width)

    def cores(self):
        w = self.window
        return w.cores(self.lane_in, self.in_channels) + [
            ("max", WindowMax(self.lane_in, self.in_channels, w.kernel ** 2))]

    def need(self):
        return self.window.need()

    def signals(self):
        return super().signals() + [self.window.signal(self.lane_in, self.in_channels)]


@register
class MaxPool(Op):
    name = "maxpool"
    passes_codes = True          # codes are ordered like their values
    computes = False
    attrs = {
        "kernel": Attr(int, check=within(1, limits.MAX_KERNEL)),
        "stride": Attr(int, required=False, default=None, check=within(1, limits.MAX_STRIDE)),
        "padding": Attr(int, required=False, default=0, check=within(0, limits.MAX_PADDING)),
    }
    doc = ("Max pooling over kernel x kernel windows, padded with the lowest value; stride "
           "defaults to the kernel size.")
    engine_role = "pool"

    def resolve(self, node):
        if node.attrs["stride"] is None:
            node.attrs["stride"] = node.attrs["kernel"]

    def infer_shape(self, node, in_shapes):
        x = in_shapes[0]
        self.need_fmap(node, x)
        k, s, p = node.attrs["kernel"], node.attrs["stride"], node.attrs["padding"]
        if p >= k:
            fail(node, f"padding {p} must be smaller than the kernel {k}")
        if x[1] + 2 * p < k or x[2] + 2 * p < k:
            fail(node, f"kernel {k} is larger than the padded input {x[1] + 2 * p}x"
                       f"{x[2] + 2 * p}")
        return (x[0], (x[1] + 2 * p - k) // s + 1, (x[2] + 2 * p - k) // s + 1)

    def golden(self, node, args):
        a = node.attrs
        return golden.maxpool(args[0], kernel=a["kernel"], stride=a["stride"],
                              padding=a["padding"])

    def dataflow(self, node, builder):
        a = node.attrs
        src = builder.graph[node.inputs[0]]
        streams = builder.streams(node)
        lowest = shape_range(streams["in_lanes"][0])[0]
        window = Window(src.shape[1], src.shape[2], a["kernel"], a["stride"], a["padding"],
                        pad_value=lowest)
        return MaxPoolStage(node.name, [node.name], **streams, window=window)

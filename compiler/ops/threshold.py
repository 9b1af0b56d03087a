"""``threshold``: ``lo + #{k : x >= thresholds[c, k]}``, a per-channel staircase.

What ``requant`` becomes (``docs/architecture.md``: multiplier-free requantization).
"""

from dataclasses import dataclass

import numpy as np

from hw.elementwise import TABLE_BITS, Thresholds
from sim import golden

from ..backends.dataflow.cost import Resources, compare_ffs, threshold_luts
from ..backends.dataflow.stage import Stage
from .base import Op, TensorSpec, fail, register
from .levels import LEVEL_ATTRS, check_levels

__all__ = ["Threshold", "ThresholdStage", "low_code"]


def low_code(node):
    """The code of "below every threshold": the smallest ``bits``-bit value."""
    return golden.int_range(node.attrs["bits"], node.attrs["signed"])[0]


@dataclass(eq=False)
class ThresholdStage(Stage):
    thresholds: np.ndarray = None
    out_lo: int = 0
    kind = "threshold"

    def cost(self, fabric, goal=None, queues=True):
        self.cycles = self.in_beats
        levels, width = self.thresholds.shape[1], self.lane_in.width
        out = self.out_channels * self.out_lane.width
        if width <= TABLE_BITS:
            # A table of codes per lane (hw.elementwise.Thresholds), and the code's register.
            table = fabric.lut_rom_luts(1 << width, self.out_lane.width)
            self.resources = Resources(luts=self.in_channels * table, ffs=2 * out + 1)
            return
        self.resources = Resources(luts=threshold_luts(fabric, self.in_channels, levels, width),
                                   ffs=out + 1 + self.in_channels * compare_ffs(levels, width))

    @property
    def latency_bound(self):
        return super().latency_bound + Thresholds.compare_latency(self.lane_in,
                                                                  self.thresholds.shape[1])

    def elaboration(self):
        n = self.thresholds.size
        return 0, n, f"requantizer '{self.name}' ({n:,} threshold comparisons)"

    def cores(self):
        return [("thresholds", Thresholds(self.lane_in, self.out_lane, self.thresholds,
                                          self.out_lo))]


@register
class Threshold(Op):
    name = "threshold"
    attrs = LEVEL_ATTRS
    tensors = {"thresholds": TensorSpec("int", doc="(C, 2**bits - 1), non-decreasing along "
                                                   "axis 1")}
    doc = "y = lo + #{k : x >= thresholds[c, k]}, lo the smallest `bits`-bit value."
    engine_role = "threshold"

    def infer_shape(self, node, in_shapes):
        x = in_shapes[0]
        check_levels(node, x[0])
        levels = 2 ** node.attrs["bits"] - 1
        th = node.tensors["thresholds"]
        if th.shape != (x[0], levels):
            fail(node, f"tensor 'thresholds' has shape {list(th.shape)}, expected "
                       f"[{x[0]}, {levels}]")
        if levels > 1 and np.any(th[:, 1:] < th[:, :-1]):      # no subtraction: no wrap-around
            fail(node, "tensor 'thresholds' must be non-decreasing along each channel")
        return x

    def value_range(self, node, srcs):
        x = srcs[0]
        th = node.tensors["thresholds"]
        ends = golden.threshold(np.array([[x.lo] * len(th), [x.hi] * len(th)]), th,
                                bits=node.attrs["bits"], signed=node.attrs["signed"])
        return int(ends[0].min()), int(ends[1].max())

    def encoding(self, node, inputs):
        return node.attrs["levels"]

    def golden(self, node, args):
        return golden.threshold(args[0], node.tensors["thresholds"], bits=node.attrs["bits"],
                                signed=node.attrs["signed"])

    def dataflow(self, node, builder):
        return ThresholdStage(node.name, [node.name], **builder.streams(node),
                              thresholds=node.tensors["thresholds"].astype(np.int64),
                              out_lo=low_code(node))

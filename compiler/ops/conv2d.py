"""``conv2d``: a 2-D convolution, zero padding, weights of any kind (``weights.py``).

``y[o, i, j] = bias[o] + sum_{c,u,v} w[o, c, u, v] * xp[c, i*s + u, j*s + v]``.
In the dataflow back end a convolution is a padded sliding window feeding a
MAC stage (``compiler.backends.dataflow.mvu``), with the threshold node that
follows it fused into the MVU's output; a folded MVU gets a queue of windows
so that the window's bursts do not stall it (``compiler.backends.dataflow.rate``).
"""

from dataclasses import dataclass

import numpy as np

from hw.fifo import StreamFIFO
from hw.lanes import lanes
from sim import golden

from .. import limits
from ..backends.dataflow import rate
from ..backends.dataflow.cost import fifo_cost
from ..backends.dataflow.mvu import MvuStage, signed_width
from ..backends.dataflow.stage import Window
from .base import Attr, Op, TensorSpec, fail, register, within
from .threshold import low_code
from .weights import WEIGHT_ATTRS, check_weights, mac_range

__all__ = ["Conv2d", "ConvStage", "window_matrix"]


def window_matrix(weight):
    """(O, C, k, k) -> (O, k*k*C): the lane order of a window beat (ky, kx, c)."""
    w = weight.astype(np.int64)
    return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)


@dataclass(eq=False)
class ConvStage(MvuStage):
    window: Window = None
    queue: int = 0                   # windows queued before a folded MVU (rate.py)
    kind = "conv"

    def cost(self, fabric, goal=None, queues=True):
        w = self.window
        per_window = self.cycles_per_vector
        queue = rate.queue_for_rate(w.padded_height, w.padded_width, w.kernel, w.stride,
                                    per_window, goal=goal) if per_window > 1 and queues else 0
        self.queue = max(queue, 3) if queue else 0        # hw.fifo.StreamFIFO holds at least 3
        self.cycles = int(rate.window_mvu_cycles(w.padded_height, w.padded_width, w.kernel,
                                                 w.stride, per_window, self.queue))
        self.resources = w.cost(fabric, self.lane_in, self.in_channels) + self.mvu_cost(fabric)
        if self.queue:
            self.resources += fifo_cost(fabric, self.lane_in, w.kernel ** 2 * self.in_channels,
                                        self.queue)

    def cores(self):
        w, lane, c = self.window, self.lane_in, self.in_channels
        chain = w.cores(lane, c)
        if self.queue:
            chain.append(("queue", StreamFIFO(lanes(lane, w.kernel ** 2 * c), self.queue)))
        return chain + [("mvu", self.mvu())]

    def need(self):
        return self.window.need()

    def signals(self):
        return super().signals() + [self.window.signal(self.lane_in, self.in_channels)]

    def floor_reason(self):
        w = self.window
        return (f"walks its {w.padded_height}x{w.padded_width} padded input map one pixel per "
                "cycle")


@register
class Conv2d(Op):
    name = "conv2d"
    is_mac = True
    attrs = {
        "kernel": Attr(int, check=within(1, limits.MAX_KERNEL)),
        "stride": Attr(int, required=False, default=1, check=within(1, limits.MAX_STRIDE)),
        "padding": Attr(int, required=False, default=0, check=within(0, limits.MAX_PADDING)),
        **WEIGHT_ATTRS,
        "entry_bits": Attr(int, required=False, check=within(*limits.ENTRY_BITS),
                           doc="codebook weights: bits of a codebook entry"),
    }
    tensors = {
        "weight": TensorSpec("int", doc="(O, C, k, k)"),
        "bias": TensorSpec("int", required=False, doc="(O,), in accumulator units"),
        "codebook": TensorSpec("int", required=False, doc="codebook weights: (B, k, k)"),
        "indices": TensorSpec("int", required=False, doc="codebook weights: (O, C)"),
    }
    doc = "2-D convolution, zero padding."
    engine_role = "conv"

    def check(self, node):
        check_weights(node)

    def infer_shape(self, node, in_shapes):
        x = in_shapes[0]
        self.need_fmap(node, x)
        w = node.tensors["weight"]
        c, h, wd = x
        k, s, p = node.attrs["kernel"], node.attrs["stride"], node.attrs["padding"]
        if w.ndim != 4 or w.shape[1:] != (c, k, k):
            fail(node, f"tensor 'weight' has shape {list(w.shape)}, expected [O, {c}, {k}, {k}] "
                       f"for {c} input channels and kernel {k}")
        if p >= k:
            fail(node, f"padding {p} must be smaller than the kernel {k}")
        if h + 2 * p < k or wd + 2 * p < k:
            fail(node, f"kernel {k} is larger than the padded input {h + 2 * p}x{wd + 2 * p}")
        self.check_1d(node, "bias", w.shape[0])
        return (w.shape[0], (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1)

    def value_range(self, node, srcs):
        x = srcs[0]
        x_lo, x_hi = x.lo, x.hi
        if node.attrs["padding"] > 0:
            x_lo, x_hi = min(x_lo, 0), max(x_hi, 0)   # padding feeds zeros
        return mac_range(node, x_lo, x_hi)

    def golden(self, node, args):
        a = node.attrs
        return golden.conv2d(args[0], node.tensors["weight"], node.tensors.get("bias"),
                             stride=a["stride"], padding=a["padding"])

    def macs(self, node):
        o, c, k, _ = node.tensors["weight"].shape
        return o * c * k * k * node.shape[1] * node.shape[2]

    def dataflow(self, node, builder):
        src = builder.graph[node.inputs[0]]
        out = builder.fuse_threshold(node)
        a = node.attrs
        bias = node.tensors.get("bias")
        return ConvStage(
            out.name, [node.name] + ([out.name] if out is not node else []),
            **builder.streams(node, out), weights=window_matrix(node.tensors["weight"]),
            bias=None if bias is None else bias.astype(np.int64),
            thresholds=(out.tensors["thresholds"].astype(np.int64) if out is not node
                        else None),
            out_lo=low_code(out) if out is not node else 0,
            acc_width=signed_width(node.lo, node.hi), in_pow2=builder.takes_codes(node),
            window=Window(src.shape[1], src.shape[2], a["kernel"], a["stride"], a["padding"]))

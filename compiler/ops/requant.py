"""``requant``: ``clamp(floor(x * multiplier[c] + offset[c]))`` to ``bits`` bits.

Evaluated in IEEE float64 (:func:`sim.golden.requant`); the compiler lowers it to
``threshold`` (``compiler.passes.requant``) before any back end sees it.
"""

import numpy as np

from sim import golden

from .base import Op, TensorSpec, fail, register
from .levels import LEVEL_ATTRS, check_levels

__all__ = ["Requant"]


@register
class Requant(Op):
    name = "requant"
    attrs = LEVEL_ATTRS
    tensors = {
        "multiplier": TensorSpec("float", doc="(C,), >= 0"),
        "offset": TensorSpec("float", doc="(C,)"),
    }
    doc = ("y = clamp(floor(x * multiplier[c] + offset[c])) to `bits` bits; with pow2 levels "
           "the code of the nearest level (sim.golden.requant).")

    def infer_shape(self, node, in_shapes):
        x = in_shapes[0]
        check_levels(node, x[0])
        self.check_1d(node, "multiplier", x[0])
        self.check_1d(node, "offset", x[0])
        m = node.tensors["multiplier"]
        if np.any(m < 0):
            c = int(np.argmax(m < 0))
            fail(node, f"multiplier[{c}] = {float(m[c])} is negative; fold the sign into the "
                       "weights of the producing layer")
        return x

    def value_range(self, node, srcs):
        x = srcs[0]
        m, c = node.tensors["multiplier"], node.tensors["offset"]
        ends = golden.requant(np.array([[x.lo] * len(m), [x.hi] * len(m)]), m, c,
                              bits=node.attrs["bits"], signed=node.attrs["signed"],
                              levels=node.attrs["levels"])
        return int(ends[0].min()), int(ends[1].max())

    def encoding(self, node, inputs):
        return node.attrs["levels"]

    def golden(self, node, args):
        a, t = node.attrs, node.tensors
        return golden.requant(args[0], t["multiplier"], t["offset"], bits=a["bits"],
                              signed=a["signed"], levels=a["levels"])

    def dataflow(self, node, builder):
        fail(node, "a requant reaches the hardware only lowered to thresholds "
                   "(compiler.passes.prepare)")

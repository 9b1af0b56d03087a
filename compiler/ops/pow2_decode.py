"""``pow2_decode``: the value of a power-of-two activation code, ``0`` or ``2**(c-1)``.

Internal: the compiler inserts it where codes meet an op that computes
(``compiler.passes.forms.insert_decodes``); a MAC that follows takes the codes
itself (an exponent addition and one shift), so the decode costs nothing there.
"""

from dataclasses import dataclass

from hw.elementwise import Pow2Decode as Pow2DecodeCore
from sim import golden

from ..backends.dataflow.cost import Resources
from ..backends.dataflow.stage import Stage
from .base import Op, register

__all__ = ["Pow2Decode", "Pow2DecodeStage"]


@dataclass(eq=False)
class Pow2DecodeStage(Stage):
    kind = "pow2_decode"

    def cost(self, fabric, goal=None, queues=True):
        self.cycles = self.in_beats
        self.resources = Resources(luts=self.in_channels * self.lane_in.width // 2,
                                   ffs=self.out_channels * self.out_lane.width + 1)

    def cores(self):
        return [("decode", Pow2DecodeCore(self.lane_in, self.out_lane, self.in_channels))]


@register
class Pow2Decode(Op):
    name = "pow2_decode"
    internal = True
    computes = False
    doc = ("The value of a pow2 activation code: 0 if c == 0 else 2**(c-1). Inserted by the "
           "compiler; hardware fuses it into a following MAC.")

    def value_range(self, node, srcs):
        return int(golden.pow2_value(srcs[0].lo)), int(golden.pow2_value(srcs[0].hi))

    def golden(self, node, args):
        return golden.pow2_decode(args[0])

    def dataflow(self, node, builder):
        if all(builder.op(c).is_mac for c in builder.consumers(node)):
            return builder.alias(node, node.inputs[0])     # the MACs take the codes
        return Pow2DecodeStage(node.name, [node.name], **builder.streams(node))

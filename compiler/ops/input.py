"""``input``: the network input, integers of ``bits`` bits."""

from dataclasses import dataclass

from sim import golden

from .. import limits
from ..backends.dataflow.cost import Resources
from ..backends.dataflow.stage import Stage, lane_of
from .base import Attr, Op, register, shape_problem, within

__all__ = ["Input", "InputStage"]


def _shape(v):
    if not (isinstance(v, list) and len(v) in (1, 3)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in v)):
        return "must be [C, H, W] or [K] with positive integers"
    return shape_problem(v)


@dataclass(eq=False)
class InputStage(Stage):
    kind = "input"

    def cost(self, fabric, goal=None, queues=True):
        self.cycles, self.resources = self.out_beats, Resources()

    def cores(self):
        return []


@register
class Input(Op):
    name = "input"
    arity = 0
    computes = False
    is_input = True
    attrs = {
        "shape": Attr(list, check=_shape),
        "bits": Attr(int, check=within(*limits.INPUT_BITS)),
        "signed": Attr(bool),
        "scale": Attr(float, required=False, doc="real value of one input step"),
    }
    doc = "The network input: integers of `bits` bits, a feature map [C, H, W] or a vector [K]."

    def infer_shape(self, node, in_shapes):
        return tuple(node.attrs["shape"])

    def value_range(self, node, srcs):
        return golden.int_range(node.attrs["bits"], node.attrs["signed"])

    def golden(self, node, args):
        return args[0]

    def dataflow(self, node, builder):
        return InputStage(node.name, [node.name], [], [], lane_of(node), node.channels,
                          node.channels, node.beats, node.beats)

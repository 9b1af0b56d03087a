"""The op registry: every op of the graph IR, one module each.

``op_of(node)`` gives the :class:`~.base.Op` of a node; it knows the node's
attributes, shape, value range, golden arithmetic and what each back end makes
of it. ``is_op(node, Conv2d)`` asks for one op by its class, never its name.
Importing this package registers every op.
"""

from .add import Add
from .base import REGISTRY, Op, get_op, op_of
from .conv2d import Conv2d
from .dense import Dense
from .flatten import Flatten
from .gap import Gap
from .input import Input
from .maxpool import MaxPool
from .pow2_decode import Pow2Decode
from .relu import Relu
from .requant import Requant
from .threshold import Threshold
from .weights import WEIGHT_KINDS, pow2_max_exponent

__all__ = ["REGISTRY", "Op", "op_of", "get_op", "is_op", "WEIGHT_KINDS", "pow2_max_exponent",
           "Add", "Conv2d", "Dense", "Flatten", "Gap", "Input", "MaxPool", "Pow2Decode", "Relu",
           "Requant", "Threshold"]


def is_op(node, *classes):
    """Is ``node`` an op of one of ``classes``?"""
    return isinstance(op_of(node), classes)

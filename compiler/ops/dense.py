"""``dense``: a fully connected layer on a vector, ``bias + W x``, weights of any kind but
codebook (``weights.py``). In the dataflow back end a MAC stage (``mvu.py``) with the
threshold node that follows it fused in."""

from dataclasses import dataclass

import numpy as np

from sim import golden

from ..backends.dataflow.mvu import MvuStage, signed_width
from .base import Op, TensorSpec, fail, register
from .threshold import low_code
from .weights import WEIGHT_ATTRS, check_weights, mac_range

__all__ = ["Dense", "DenseStage"]


@dataclass(eq=False)
class DenseStage(MvuStage):
    kind = "dense"

    def cost(self, fabric, goal=None, queues=True):
        self.cycles = self.mvu_cycles
        self.resources = self.mvu_cost(fabric)

    def cores(self):
        return [("mvu", self.mvu())]

    def floor_reason(self):
        return "computes all its products for each input vector"


@register
class Dense(Op):
    name = "dense"
    is_mac = True
    attrs = dict(WEIGHT_ATTRS)
    tensors = {
        "weight": TensorSpec("int", doc="(O, K)"),
        "bias": TensorSpec("int", required=False, doc="(O,), in accumulator units"),
    }
    doc = "Fully connected layer on a vector."
    engine_role = "dense"

    def check(self, node):
        check_weights(node)

    def infer_shape(self, node, in_shapes):
        x = in_shapes[0]
        if len(x) != 1:
            fail(node, f"input must be a vector (K,), got shape {list(x)}; insert a flatten")
        w = node.tensors["weight"]
        if w.ndim != 2 or w.shape[1] != x[0]:
            fail(node, f"tensor 'weight' has shape {list(w.shape)}, expected [O, {x[0]}]")
        self.check_1d(node, "bias", w.shape[0])
        return (w.shape[0],)

    def value_range(self, node, srcs):
        x = srcs[0]
        return mac_range(node, x.lo, x.hi)

    def golden(self, node, args):
        return golden.dense(args[0], node.tensors["weight"], node.tensors.get("bias"))

    def macs(self, node):
        return int(node.tensors["weight"].size)

    def dataflow(self, node, builder):
        out = builder.fuse_threshold(node)
        bias = node.tensors.get("bias")
        return DenseStage(
            out.name, [node.name] + ([out.name] if out is not node else []),
            **builder.streams(node, out), weights=node.tensors["weight"].astype(np.int64),
            bias=None if bias is None else bias.astype(np.int64),
            thresholds=(out.tensors["thresholds"].astype(np.int64) if out is not node
                        else None),
            out_lo=low_code(out) if out is not node else 0,
            acc_width=signed_width(node.lo, node.hi), in_pow2=builder.takes_codes(node))

"""Low-bit power-of-two weights *and* activations (Long et al., 2020).

Weights: the ``pow2`` method's levels (:mod:`.pow2`), recomputed from the
full-precision shadow weights at every training step, with the gradient going
straight through to the shadow weights (so the discrete weights never drift
from what the gradient was computed for). Activations: every unsigned
(post-ReLU) requantization uses power-of-two levels, ``requant`` attribute
``levels = "pow2"``: a ``b``-bit code ``c`` stands for ``0`` (``c = 0``) or
``2**(c-1)`` times the activation scale, so a multiply by an activation is a
shift too. See ``docs/quantization.md``.

The activation levels are a property of the method here (``act_levels``), read
by the planner; ``quantize(..., act_levels="pow2")`` gives any weight method
power-of-two activations.
"""

from dataclasses import dataclass

from .pow2 import Pow2Method
from .pow2 import make as make_pow2

__all__ = ["Pow2ActMethod", "make"]


@dataclass(frozen=True)
class Pow2ActMethod(Pow2Method):
    act_levels = "pow2"             # class attribute: the planner's default activation levels


def make(weight_bits=None, levels=None):
    base = make_pow2(weight_bits=weight_bits, levels=levels)
    return Pow2ActMethod(name="pow2a", kind="pow2", bits=base.bits, levels=base.levels)

"""Power-of-two weights with INQ's levels (Zhou et al., ICLR 2017).

Per layer, the non-zero levels are ``±2**n`` for ``n2 <= n <= n1`` where
``n1 = floor(log2(4 * max|W| / 3))`` (so that the largest weight rounds to the
top level) and ``n2 = n1 - levels + 1``. A weight goes to level ``b`` when
``(a + b) / 2 <= |W| < 3b / 2`` with ``a`` the next level down (``a = 0`` below
the lowest level), i.e. linear rounding between neighbouring levels; smaller
weights become 0.

The integers are ``w_int = ±2**e`` with ``e = n - n2`` in ``[0, levels - 1]``
and ``scale = 2**n2``, so the IR's ``pow2`` kind with
``levels <= 2**(weight_bits - 1) - 1``. INQ's incremental partition-and-retrain
schedule is not implemented here; fine-tuning uses straight-through estimators
(see ``docs/quantization.md``).
"""

from dataclasses import dataclass

import torch

from ...errors import QuantizeError
from ...ops import pow2_max_exponent
from .base import WeightMethod

__all__ = ["Pow2Method", "make"]


@dataclass(frozen=True)
class Pow2Method(WeightMethod):
    levels: int = 7                 # number of non-zero magnitudes 2**0 .. 2**(levels-1)

    def quantize(self, w):
        w = w.detach()
        mag = w.abs()
        top = mag.max()
        if not top > 0:
            return torch.zeros_like(w), torch.ones((), dtype=w.dtype)
        n1 = torch.floor(torch.log2(top * 4 / 3))
        scale = torch.pow(torch.tensor(2.0, dtype=w.dtype), n1 - (self.levels - 1))
        a = mag / scale             # magnitude in units of the lowest level
        # Level 2**e covers [0.75 * 2**e, 1.5 * 2**e); the lowest, 2**0, covers [0.5, 1.5).
        e = torch.floor(torch.log2(torch.clamp(a, min=0.75) / 0.75))
        e = torch.clamp(e, 0, self.levels - 1)
        w_int = torch.where(a >= 0.5, torch.sign(w) * torch.pow(2.0, e), torch.zeros_like(w))
        return w_int, scale

    def describe(self):
        return {**super().describe(), "levels": self.levels}


def make(weight_bits=None, levels=None):
    if weight_bits is not None and weight_bits < 2:
        raise QuantizeError(f"pow2 weights need at least 2 bits (sign + code), not {weight_bits}")
    if levels is not None and levels < 1:
        raise QuantizeError(f"pow2 'levels' must be >= 1, not {levels}")
    if weight_bits is None and levels is None:
        weight_bits = 4
    elif weight_bits is None:
        weight_bits = 2             # the fewest bits whose exponent code holds `levels`
        while pow2_max_exponent(weight_bits) + 1 < levels:
            weight_bits += 1
    most = pow2_max_exponent(weight_bits) + 1
    if levels is None:
        levels = most
    if levels > most:
        raise QuantizeError(f"{levels} pow2 levels do not fit {weight_bits} bits "
                            f"(at most {most}: one sign bit and a code for zero or an exponent)")
    return Pow2Method(name="pow2", kind="pow2", bits=weight_bits, levels=levels)

"""Uniform symmetric ``m``-bit integers: ``w_int = clamp(round(W / scale))``.

``scale = max|W| / (2**(m-1) - 1)`` per layer; the range is symmetric
(``-2**(m-1)`` is never used) so that negating a channel, which batch-norm
folding may do, stays in range.
"""

from dataclasses import dataclass

import torch

from ...errors import QuantizeError
from .base import WeightMethod

__all__ = ["UniformMethod", "make"]


@dataclass(frozen=True)
class UniformMethod(WeightMethod):

    def quantize(self, w):
        w = w.detach()
        qmax = 2 ** (self.bits - 1) - 1
        top = w.abs().max()
        if not top > 0:
            return torch.zeros_like(w), torch.ones((), dtype=w.dtype)
        scale = top / qmax
        return torch.clamp(torch.round(w / scale), -qmax, qmax), scale


def make(weight_bits=None, levels=None):
    if levels is not None:
        raise QuantizeError("uniform int weights take no 'levels' option; use weight_bits")
    bits = 4 if weight_bits is None else weight_bits
    if not 2 <= bits <= 16:
        raise QuantizeError(f"int weights need 2 to 16 bits, not {bits}")
    return UniformMethod(name="int", kind="int", bits=bits)

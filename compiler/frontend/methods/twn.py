"""Ternary weight networks (Li, Zhang & Liu, 2016): ``w_int`` in {-1, 0, +1}.

Per layer: threshold ``delta = 0.7 * mean|W|`` (the paper's approximation of the
optimal threshold for Gaussian-like weights), ``w_int = sign(W) * [|W| > delta]``
and ``scale = mean(|W| over |W| > delta)``, the scale that minimises
``||W - scale * w_int||^2`` for that ternary pattern.
"""

from dataclasses import dataclass

import torch

from ...errors import QuantizeError
from .base import WeightMethod

__all__ = ["TernaryMethod", "make"]


@dataclass(frozen=True)
class TernaryMethod(WeightMethod):
    threshold: float = 0.7          # delta as a fraction of mean|W|

    def quantize(self, w):
        w = w.detach()
        mag = w.abs()
        delta = self.threshold * mag.mean()
        keep = mag > delta
        w_int = torch.sign(w) * keep.to(w.dtype)
        n = keep.sum()
        # A layer whose weights are all equal in magnitude (or all zero) keeps
        # nothing above delta only if it is all zero; then any positive scale works.
        scale = (mag * keep).sum() / n if n > 0 else torch.ones((), dtype=w.dtype)
        if not scale > 0:
            scale = torch.ones((), dtype=w.dtype)
        return w_int, scale

    def describe(self):
        return {**super().describe(), "threshold": self.threshold}


def make(weight_bits=None, levels=None):
    if weight_bits not in (None, 2):
        raise QuantizeError(f"ternary weights have 2 bits, not {weight_bits}")
    if levels is not None:
        raise QuantizeError("ternary weights take no 'levels' option (the levels are -1, 0, 1)")
    return TernaryMethod(name="ternary", kind="ternary", bits=2)

"""Incremental network quantization (INQ; Zhou, Yao, Guo, Xu & Chen, ICLR 2017).

Per layer the levels are INQ's powers of two, fixed once from the initial
weights: ``n1 = floor(log2(4 * max|W| / 3))``, non-zero levels ``±2**n`` for
``n1 - L + 1 <= n <= n1`` and 0 (the same rule as the one-shot ``pow2`` method).
Then, for each fraction of the schedule (default 50%, 75%, 87.5%, 100%):

1. partition: among the weights not yet quantized, the largest in magnitude
   (INQ's "pruning-inspired" partition) are quantized to their level and
   frozen until the quantized fraction of the layer reaches the target;
2. retrain: the remaining weights stay full precision and are retrained (with
   the frozen ones fixed) to compensate.

At 100% every weight is a level; the last retraining stage only adjusts the
folded batch norms and the final bias. ``w_int = ±2**e``, ``scale = 2**(n1-L+1)``
(IR kind ``pow2``).
"""

from dataclasses import dataclass

import torch

from ...errors import QuantizeError
from ..incremental import largest_unfrozen, retrain
from . import pow2
from .staged import LayerQuantizer, check_fractions, mac_steps, stage_epochs

__all__ = ["INQMethod", "INQLayer", "pow2_levels", "make", "DEFAULT_FRACTIONS"]

DEFAULT_FRACTIONS = (0.5, 0.75, 0.875, 1.0)


def pow2_levels(w, scale, levels):
    """INQ's level rule at a fixed ``scale``: integers ``±2**e`` (``e < levels``) or 0."""
    a = w.abs() / scale
    e = torch.floor(torch.log2(torch.clamp(a, min=0.75) / 0.75))
    e = torch.clamp(e, 0, levels - 1)
    return torch.where(a >= 0.5, torch.sign(w) * torch.pow(2.0, e), torch.zeros_like(w))


def inq_scale(w, levels):
    top = float(w.detach().abs().max())
    if not top > 0:
        return 1.0
    n1 = torch.floor(torch.log2(torch.tensor(top * 4 / 3, dtype=torch.float64)))
    return float(2.0 ** (float(n1) - (levels - 1)))


class INQLayer(LayerQuantizer):
    def __init__(self, weight, bits, levels):
        super().__init__("inq", "pow2", bits, weight)
        self.levels = levels
        self._scale = torch.tensor(inq_scale(weight, levels), dtype=weight.dtype)

    def scale(self):
        return self._scale

    def rule(self, w):
        return pow2_levels(w, self._scale, self.levels) * self._scale

    def quantize(self, w):
        with torch.no_grad():
            w = w.detach()
            ints = torch.where(self.mask, torch.round(self.frozen / self._scale),
                               pow2_levels(w, self._scale, self.levels))
        return ints, self._scale.clone()


@dataclass(frozen=True)
class INQMethod(pow2.Pow2Method):
    fractions: tuple = DEFAULT_FRACTIONS

    def prepare(self, fq, layers, x):
        for step in mac_steps(fq):
            step.method = INQLayer(step.weight.detach(), self.bits, self.levels)
        fq.info["fractions"] = list(self.fractions)

    def schedule(self, fq, finetune, x):
        steps = mac_steps(fq)
        epochs = stage_epochs(finetune, len(self.fractions))
        for i, frac in enumerate(self.fractions):
            for step in steps:
                q = step.method
                q.mode = "partial"
                count = int(round(frac * q.mask.numel())) - int(q.mask.sum())
                q.freeze(largest_unfrozen(step.weight, q.mask, count), step.weight)
            retrain(fq, finetune, epochs, stage=i, label=f"inq {100 * frac:g}%")
        for step in steps:
            step.method.mode = "full"
        fq.info["stage_epochs"] = epochs

    def describe(self):
        return {**super().describe(), "fractions": list(self.fractions)}


def make(weight_bits=None, levels=None, fractions=DEFAULT_FRACTIONS):
    base = pow2.make(weight_bits=weight_bits, levels=levels)
    fr = check_fractions(fractions, QuantizeError)
    return INQMethod(name="inq", kind="pow2", bits=base.bits, levels=base.levels, fractions=fr)

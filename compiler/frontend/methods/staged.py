"""Methods with per-layer state and their own training schedule (INQ, SLQ, MLQ, KQ, adaptive).

The one-shot methods (``ternary``, ``pow2``, ``int``) are one stateless
:class:`~.base.WeightMethod` shared by every layer. The methods of this family
need more: a layer's levels, codebook or bit-width is fixed once from its
initial weights (or from a measurement of the network), and some of them
quantize a growing part of the weights while the rest retrains. They plug
into :func:`compiler.frontend.quantize` through two optional hooks of the
method object, which the front end calls if present:

``prepare(fq, layers, x)``
    after the fake-quant model is built and before calibration: replaces each
    MAC step's ``method`` by a per-layer quantizer (an object with the
    ``WeightMethod`` interface: ``name``, ``kind``, ``bits``, ``quantize``,
    ``fake``, ``describe``) and records what it chose in ``fq.info``.
``schedule(fq, finetune, x)``
    instead of plain quantization-aware fine-tuning: the method's own
    partition / freeze / retrain loop (``finetune`` may be None: then the
    method quantizes everything at once, without retraining).

The exporter only sees each step's ``method.kind``/``method.bits`` and the
integers of ``method.quantize``, so per-layer kinds and bit-widths need no change
there (the codebook kind adds two tensors, see :mod:`.kq`).
"""

import math

import torch

from ..ste import replace_ste

__all__ = ["LayerQuantizer", "stage_epochs", "mac_steps", "check_fractions"]


def mac_steps(fq):
    """The fake-quant model's conv/dense steps in topological order."""
    return list(fq.mac_steps)


def stage_epochs(finetune, stages):
    """Retraining epochs after each partition step: the fine-tuning budget split over the stages."""
    if finetune is None or finetune.epochs <= 0:
        return 0
    return max(1, math.ceil(finetune.epochs / max(1, stages)))


def check_fractions(fractions, error):
    """Validate an increasing schedule of quantized fractions ending at 1."""
    fr = [float(f) for f in fractions]
    if not fr or any(not 0 < f <= 1 for f in fr) or any(b <= a for a, b in zip(fr, fr[1:])) \
            or fr[-1] != 1.0:
        raise error(f"the partition schedule must be increasing fractions in (0, 1] ending "
                    f"at 1, got {list(fractions)}")
    return tuple(fr)


class LayerQuantizer:
    """Per-layer quantizer with a frozen part: the ``WeightMethod`` interface plus state.

    ``mask`` marks the weights already quantized and frozen; their real values are
    ``frozen`` (float). ``mode`` is ``"full"`` (every weight quantized by
    :meth:`rule`, straight-through: calibration and one-shot use),
    ``"partial"`` (frozen weights fixed, the rest full precision: retraining) or
    ``"float"`` (all full precision: a layer MLQ has not reached yet).
    Subclasses implement :meth:`rule` (real quantized values of ``w``) and
    :meth:`quantize`.
    """

    name = kind = None
    bits = None

    def __init__(self, name, kind, bits, weight):
        self.name, self.kind, self.bits = name, kind, bits
        self.mask = torch.zeros(weight.shape, dtype=torch.bool)
        self.frozen = torch.zeros(weight.shape, dtype=weight.dtype)
        self.mode = "full"

    # -- to implement ------------------------------------------------------------------

    def rule(self, w):
        """Real quantized values of ``w`` (no gradient)."""
        raise NotImplementedError

    def scale(self):
        raise NotImplementedError

    # -- the WeightMethod interface --------------------------------------------------------

    def current(self, w):
        """Real values of the fully quantized layer: frozen values, the rule elsewhere."""
        with torch.no_grad():
            return torch.where(self.mask, self.frozen, self.rule(w.detach()))

    def fake(self, w):
        if self.mode == "float":
            return w, self.scale()
        if self.mode == "partial":
            return torch.where(self.mask, self.frozen, w), self.scale()
        return replace_ste(w, self.current(w)), self.scale()

    def describe(self):
        return {"method": self.name, "weight_kind": self.kind, "weight_bits": self.bits}

    # -- partition -------------------------------------------------------------------------

    @property
    def fraction(self):
        return float(self.mask.float().mean())

    def freeze(self, select, w):
        """Quantize and freeze the weights ``select`` (bool mask) at their rule values."""
        with torch.no_grad():
            q = self.rule(w.detach())
            new = select & ~self.mask
            self.frozen = torch.where(new, q, self.frozen)
            self.mask = self.mask | new

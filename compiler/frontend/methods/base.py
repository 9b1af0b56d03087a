"""The interface every weight quantization method implements.

A method turns a layer's float weight tensor ``W`` into integers ``w_int`` of one
IR weight kind (``ternary``, ``pow2`` or ``int``, see :mod:`compiler.ops`) and
one real scale per layer, with ``W ~= scale * w_int``. The tracer, the fake-quant
model and the exporter only see this interface, so a new method (LAT, SLQ, KQ,
...) is one new module registered in :mod:`compiler.frontend.methods`.
"""

from dataclasses import dataclass

import torch

from ..ste import replace_ste

__all__ = ["WeightMethod"]


@dataclass(frozen=True)
class WeightMethod:
    """Base class. Subclasses set ``name``/``kind``/``bits`` and implement :meth:`quantize`.

    ``kind`` and ``bits`` are the IR's ``weight_kind`` and ``weight_bits``: every
    integer :meth:`quantize` returns must pass :func:`compiler.ops.check_weights`
    for them.
    """

    name: str
    kind: str
    bits: int

    def quantize(self, w):
        """``(w_int, scale)`` for a float tensor ``w``.

        ``w_int`` is a float tensor holding integers (so that it can multiply float
        activations), ``scale`` a 0-d tensor > 0. Deterministic, no gradient.
        """
        raise NotImplementedError

    def fake(self, w):
        """``(scale * w_int, scale)`` with a straight-through gradient to ``w``.

        Used in quantization-aware training: the forward pass sees the quantized
        weights, the update goes to the float "shadow" weights.
        """
        with torch.no_grad():
            w_int, scale = self.quantize(w)
        return replace_ste(w, scale * w_int), scale

    def describe(self):
        """JSON-able description recorded in the ``.qpk`` metadata."""
        return {"method": self.name, "weight_kind": self.kind, "weight_bits": self.bits}

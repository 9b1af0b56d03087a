"""Straight-through estimators: rounding in the forward pass, identity gradient.

Quantization-aware training needs the forward pass to see exactly the quantized
values while gradients flow as if the rounding were not there (Bengio et al.,
2013). Each function returns ``x + (q(x) - x).detach()``: the value is ``q(x)``,
the gradient with respect to ``x`` is 1.
"""

import torch

__all__ = ["round_ste", "floor_ste", "replace_ste"]


def round_ste(x):
    """``torch.round(x)`` (half to even) forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def floor_ste(x):
    """``torch.floor(x)`` forward, identity backward."""
    return x + (torch.floor(x) - x).detach()


def replace_ste(x, value):
    """``value`` forward, the gradient of ``x`` backward (``value`` must match ``x``'s shape)."""
    return x + (value - x).detach()

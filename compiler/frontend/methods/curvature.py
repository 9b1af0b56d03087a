"""The diagonal Hessian estimate ``d`` that loss-aware methods quantize with.

Loss-aware quantization (Hou & Kwok, ICLR 2018) is a proximal Newton step: at
every training step it picks the quantized weights ``w_hat`` minimising the
second-order model of the loss, ``sum_i d_i (w_hat_i - w_i)**2`` with ``w`` the
full-precision shadow weights after the optimizer's update. The paper takes
``d`` from Adam: ``d = sqrt(v_hat) + eps``, with ``v_hat = exp_avg_sq / (1 -
beta2**step)`` the bias-corrected second-moment estimate.

This module keeps that ``d`` per weight tensor. :func:`update_from_adam` (called
by :func:`compiler.frontend.train.finetune` after every optimizer step) reads it
out of a ``torch.optim.Adam``'s state for every MAC whose method declares
``uses_curvature``; :func:`curvature` gives a method the ``d`` of a weight
parameter, or ``None`` before any step (the methods then use ``d = 1``, i.e.
plain least squares). Entries are keyed by the parameter's identity and vanish
with the parameter, so a fake-quant model's :meth:`freeze` after fine-tuning
quantizes with the ``d`` of the last step, exactly as the last training step did.
"""

import torch
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ["curvature", "set_curvature", "clear_curvature", "adam_curvature",
           "update_from_adam", "channel_signs", "set_channel_signs"]

_D = WeakIdKeyDictionary()
_SIGNS = WeakIdKeyDictionary()


def curvature(param):
    """The ``d`` recorded for the tensor ``param`` (same shape), or ``None``."""
    return _D.get(param)


def set_curvature(param, d):
    """Record ``d`` (positive, ``param``'s shape) as the diagonal Hessian of ``param``."""
    d = torch.as_tensor(d).detach()
    if d.shape != param.shape:
        raise ValueError(f"curvature of shape {list(d.shape)} for a weight of shape "
                         f"{list(param.shape)}")
    if not bool(torch.all(d > 0)):
        raise ValueError("curvature must be positive")
    _D[param] = d.clone()


def clear_curvature(param):
    _D.pop(param, None)


def adam_curvature(optimizer, param):
    """``sqrt(v_hat) + eps`` from ``optimizer``'s state for ``param``, or ``None`` before a step.

    ``optimizer`` is a ``torch.optim.Adam`` (or any optimizer keeping Adam's
    ``exp_avg_sq`` and ``step`` per parameter and ``betas``/``eps`` per group).
    """
    state = optimizer.state.get(param)
    if not state or "exp_avg_sq" not in state:
        return None
    group = next((g for g in optimizer.param_groups if any(p is param for p in g["params"])),
                 None)
    if group is None:
        return None
    beta2 = float(group["betas"][1])
    step = float(state["step"])
    v_hat = state["exp_avg_sq"].detach() / (1.0 - beta2 ** step)
    return v_hat.sqrt() + float(group["eps"])


def update_from_adam(model, optimizer):
    """Record Adam's ``d`` for every MAC of ``model`` whose method ``uses_curvature``.

    Returns the number of weight tensors updated.
    """
    n = 0
    for step in getattr(model, "mac_steps", []):
        if not getattr(step.method, "uses_curvature", False):
            continue
        d = adam_curvature(optimizer, step.weight)
        if d is not None:
            set_curvature(step.weight, d)
            n += 1
    return n


# -- output channel signs ---------------------------------------------------------------
#
# The exporter folds a negative batch-norm scale g[c] into the integer weights
# (channel c is negated, |g[c]| goes into the requant's multiplier). A method
# whose level set is not symmetric (LAT2: +P and -N) must then quantize the
# weights as the hardware will hold them, ``sign(g[c]) * w[c]``, or the layer
# would end up with both P and N on each side. ``FakeQuantModel`` records the
# signs of each MAC followed by a batch-norm requant before every use of the
# weights (:meth:`FakeQuantModel.sync_channel_signs`), for methods that declare
# ``uses_channel_signs``.


def channel_signs(param):
    """``+1``/``-1`` per output channel (float tensor) recorded for ``param``, or ``None``."""
    return _SIGNS.get(param)


def set_channel_signs(param, signs):
    signs = torch.as_tensor(signs).detach()
    if signs.shape != param.shape[:1]:
        raise ValueError(f"{signs.numel()} channel signs for a weight of shape "
                         f"{list(param.shape)}")
    _SIGNS[param] = signs.clone()

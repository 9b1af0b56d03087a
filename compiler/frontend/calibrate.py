"""Activation scales from sample data.

:func:`calibrate` sets the scale of the input and of every requant of a
:class:`~.fakequant.FakeQuantModel`:

* input: ``max|x| / (2**(bits-1) - 1)`` over the calibration inputs, so that
  no input clips;
* requants, in topological order on the *quantized* network (weights and all
  earlier activations already quantized), so each scale sees the values the
  integer model will really produce. A ``tie`` copies the scale of the step it
  names; a ``group`` is calibrated once on all its members' values together.

The estimator for a free scale is ``"mse"`` (default): the clipping point, among
33 candidates between 20% and 100% of the largest value, that minimises the
mean squared quantization error. Low-bit activations have long tails, and
clipping a few outliers buys resolution for the bulk. ``"max"`` never clips.
"""

import numpy as np
import torch

from sim.golden import int_range

from ..errors import QuantizeError
from .fakequant import QInput, QRequant

__all__ = ["calibrate", "activation_scale", "ESTIMATORS"]

ESTIMATORS = ("mse", "max")
_MAX_SAMPLES = 1 << 20          # values per estimate; a fixed stride subsample beyond


def _quantize(z, scale, lo, hi):
    return np.clip(np.floor(z / scale + 0.5), lo, hi) * scale


def _pow2_values(bits):
    c = np.arange(2 ** bits, dtype=np.float64)
    return np.where(c > 0, np.exp2(c - 1), 0.0)


def _quantize_pow2(z, scale, bits):
    """Unsigned power-of-two levels: the nearest of ``scale * {0, 1, 2, 4, ...}`` (ties up)."""
    v = _pow2_values(bits)
    code = np.searchsorted((v[:-1] + v[1:]) / 2, z / scale, side="right")
    return v[code] * scale


def activation_scale(z, bits, signed, estimator="mse", levels="linear"):
    """The scale of a ``bits``-bit requant (round half up, clamp) for the values ``z``.

    For an unsigned requant the target is ``relu(z)`` (the clamp at 0 is the
    ReLU). Returns 1.0 if there is nothing to represent (all values clamp to 0).
    ``levels="pow2"`` (unsigned only): the requant's code ``c`` stands for
    ``scale * 2**(c-1)`` (0 for ``c = 0``), and the largest level is
    ``scale * 2**(2**bits - 2)``.
    """
    z = np.asarray(z, dtype=np.float64).ravel()
    if z.size > _MAX_SAMPLES:
        z = z[:: -(-z.size // _MAX_SAMPLES)]
    lo, hi = int_range(bits, signed)
    if levels == "pow2":
        if signed:
            raise QuantizeError("power-of-two activation levels are unsigned only")
        hi = float(_pow2_values(bits)[-1])
        quantize = lambda v, s: _quantize_pow2(v, s, bits)  # noqa: E731
    elif levels == "linear":
        quantize = lambda v, s: _quantize(v, s, lo, hi)  # noqa: E731
    else:
        raise QuantizeError(f"unknown activation levels {levels!r}; known: linear, pow2")
    target = z if signed else np.maximum(z, 0)
    top = float(np.max(np.abs(target))) if z.size else 0.0
    if not np.isfinite(top):
        raise QuantizeError("calibration values are not finite (NaN or inf in the model)")
    if top <= 0:
        return 1.0
    if estimator == "max":
        return top / hi
    if estimator != "mse":
        raise QuantizeError(f"unknown calibration estimator {estimator!r}; "
                            f"known: {', '.join(ESTIMATORS)}")
    best, best_err = top / hi, None
    for ratio in np.linspace(1.0, 0.2, 33):
        scale = top * ratio / hi
        err = float(np.mean((quantize(z, scale) - target) ** 2))
        if best_err is None or err < best_err:     # ties keep the larger scale
            best, best_err = scale, err
    return best


def calibrate(model, x, *, estimator="mse", log=None):
    """Set every scale of ``model`` (a FakeQuantModel) from float inputs ``x`` (N, ...).

    Calibration says nothing; if ``log`` (such as ``print``) writes to a terminal, a
    bar over the model's steps shows the time left (:mod:`boards.progress`).
    """
    from boards.progress import Bar       # not at the top: boards loads Amaranth
    x = torch.as_tensor(x, dtype=torch.float32)
    inp = model.input_step
    if not isinstance(inp, QInput):
        raise AssertionError("the first step must be the input")
    _, hi = int_range(inp.bits, True)
    top = float(x.abs().max()) if x.numel() else 0.0
    inp.scale.fill_(top / hi if top > 0 else 1.0)

    values, scales, pending = {}, {}, []
    with torch.no_grad(), Bar(log, total=len(model.steps), unit="step",
                              desc="calibrating") as bar:
        for i, step in enumerate(bar.over(model.steps)):
            name = step.step_name
            if step is inp:
                values[name], scales[name] = step.real([x], [])
                continue
            xs = [values[s] for s in step.inputs]
            if not isinstance(step, QRequant):
                values[name], scales[name] = step.real(xs, [scales[s] for s in step.inputs])
                continue
            z = step.pre(xs[0])
            if step.tie is not None:
                step.scale.fill_(scales[step.tie])
            elif step.group is None:
                step.scale.fill_(activation_scale(z.numpy(), step.bits, step.signed, estimator,
                                                  levels=step.levels))
            else:
                # Group members are emitted one after another, right before their add:
                # collect them all, then give them one scale.
                pending.append((step, z))
                nxt = model.steps[i + 1] if i + 1 < len(model.steps) else None
                if isinstance(nxt, QRequant) and nxt.group == step.group:
                    continue
                zs = np.concatenate([p[1].numpy().ravel() for p in pending])
                shared = activation_scale(zs, step.bits, step.signed, estimator,
                                          levels=step.levels)
                for member, mz in pending:
                    member.scale.fill_(shared)
                    values[member.step_name] = member.quant(mz)
                    scales[member.step_name] = float(member.scale)
                pending = []
                continue
            values[name], scales[name] = step.quant(z), float(step.scale)
    return model

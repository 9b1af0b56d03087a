"""The fake-quantized torch model: the quantized network, runnable and trainable.

A :class:`FakeQuantModel` is a list of steps in topological order, one per node
of the graph IR it exports to (:mod:`compiler.frontend.export`), with the same
names. It computes the network in two ways:

* **exact** (eval mode): every edge carries integers, held in float64 tensors.
  Convolutions and matrix products of integers are exact in float64 (all
  partial sums stay far below 2**53), and requantization is the golden model's
  own expression ``clamp(floor(acc * m + o))`` in float64, evaluated as the
  same two IEEE operations. The output is the output integers times
  ``output_scale``, so it equals ``sim.golden`` on the exported graph *exactly*.
  The integer parameters come from :meth:`FakeQuantModel.freeze`, which the
  exporter uses too.
* **real** (train mode, and calibration): every edge carries the real values
  ``scale * integer`` in float32, with straight-through estimators at every
  rounding, so that the model can be fine-tuned (quantization-aware training).
  Float weights are the trainable "shadow" weights; the folded batch norm
  ``g``/``h`` of each requantization are trainable too; activation scales are
  fixed buffers set by :mod:`compiler.frontend.calibrate`.

Scales: an edge's real value is ``scale * integer``. A MAC's integer output (the
accumulator) has scale ``s_w * s_x``; a requant maps the real pre-activation
``z = acc * s_w * s_x * g + h`` to ``round_half_up(z / s_out)``, i.e.
``floor(acc * m + o)`` with ``m = s_w * s_x * g / s_out``, ``o = h / s_out + 0.5``.
"""

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sim.golden import int_range

from ..ops import Add, Conv2d, Flatten, Gap, Input, MaxPool, Relu, Requant, is_op

from .ste import floor_ste, replace_ste, round_ste

__all__ = ["ACT_LEVELS", "pow2_level_values", "pow2_thresholds", "pow2_code",
           "FakeQuantModel", "Frozen", "QInput", "QMac", "QRequant", "QAdd", "QRelu",
           "QMaxPool", "QGap", "QFlatten"]


#: activation levels of an unsigned requant: "linear" (value = code) or "pow2"
#: (value(0) = 0, value(c) = 2**(c-1)): see docs/quantization.md
ACT_LEVELS = ("linear", "pow2")


def pow2_level_values(bits):
    """``value(c)`` for the ``2**bits`` codes of a pow2 activation: 0, 1, 2, 4, ... (float64)."""
    c = torch.arange(2 ** bits, dtype=torch.float64)
    return torch.where(c > 0, torch.pow(2.0, c - 1), torch.zeros((), dtype=torch.float64))


def pow2_thresholds(bits):
    """``(value(j-1) + value(j)) / 2 + 0.5`` for ``j = 1 .. 2**bits - 1`` (exact dyadics)."""
    v = pow2_level_values(bits)
    return (v[:-1] + v[1:]) / 2 + 0.5


def pow2_code(t, bits):
    """``#{j : t >= threshold_j}`` elementwise (int64).

    ``t = acc * m + o`` as in the golden model.
    """
    th = pow2_thresholds(bits).to(t.dtype)
    return (t.unsqueeze(-1) >= th).sum(-1)


def _channel_view(t, ndim):
    """Reshape a per-channel vector to broadcast against a (B, C, ...) tensor."""
    return t.reshape((1, -1) + (1,) * (ndim - 2))


@dataclass
class Frozen:
    """The integer parameters of a fake-quant model at one moment: what gets exported.

    ``scales`` holds every step's output scale (for a MAC: the accumulator scale
    ``s_w * s_x``). ``weights`` are the MACs' integers with the sign of negative
    batch-norm channels already folded in.
    """

    scales: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)          # name -> int64 array
    weight_scales: dict = field(default_factory=dict)    # name -> float
    bias: dict = field(default_factory=dict)             # name -> int64 array (final MAC)
    multiplier: dict = field(default_factory=dict)       # name -> float64 array (C,)
    offset: dict = field(default_factory=dict)           # name -> float64 array (C,)
    output_scale: float = None


class Step(nn.Module):
    """One node of the quantized network.

    ``real(xs, scales)`` returns ``(value, scale)`` on real values;
    ``exact(xs, frozen)`` returns the integer output (float64 tensor).
    """

    op = None

    def __init__(self, name, inputs, origin):
        super().__init__()
        self.step_name = name
        self.inputs = list(inputs)
        self.origin = origin          # the torch op(s) it came from, for messages

    def extra_repr(self):
        return f"'{self.step_name}' <- {self.inputs}"


class QInput(Step):
    """``x_int = clamp(round(x / scale))`` to a signed ``bits``-bit integer (round half to even)."""

    op = Input.name

    def __init__(self, name, shape, bits):
        super().__init__(name, [], "input")
        self.shape = tuple(shape)
        self.bits = bits
        self.signed = True
        self.register_buffer("scale", torch.tensor(float("nan"), dtype=torch.float64))

    def integers(self, x):
        lo, hi = int_range(self.bits, True)
        return torch.clamp(torch.round(x.double() / self.scale), lo, hi)

    def real(self, xs, scales):
        return (self.integers(xs[0]) * self.scale).float(), float(self.scale)

    def exact(self, xs, frozen):
        return self.integers(xs[0])


class QMac(Step):
    """A convolution (``op='conv2d'``) or dense layer (``op='dense'``) with quantized weights.

    Only the network's final MAC (``final=True``) keeps a bias, quantized to
    accumulator units; every other MAC is followed by a :class:`QRequant` that
    holds its batch norm and bias.
    """

    def __init__(self, name, inputs, origin, *, op, weight, method, stride=1, padding=0,
                 bias=None, final=False):
        super().__init__(name, inputs, origin)
        self.op = op
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.method = method
        self.stride, self.padding = stride, padding
        self.final = final
        self.bias = nn.Parameter(bias.detach().clone().float()) if bias is not None else None

    @property
    def out_channels(self):
        return self.weight.shape[0]

    def _apply_weight(self, x, w):
        if is_op(self, Conv2d):
            return F.conv2d(x, w, stride=self.stride, padding=self.padding)
        return F.linear(x, w)

    def real(self, xs, scales):
        w, s_w = self.method.fake(self.weight)
        s_acc = s_w.detach() * scales[0]
        y = self._apply_weight(xs[0], w)
        if self.bias is not None:
            b = round_ste(self.bias / s_acc) * s_acc
            y = y + _channel_view(b, y.ndim)
        return y, s_acc

    def exact(self, xs, frozen):
        w = torch.from_numpy(frozen.weights[self.step_name].astype(np.float64))
        y = self._apply_weight(xs[0], w)
        if self.step_name in frozen.bias:
            b = torch.from_numpy(frozen.bias[self.step_name].astype(np.float64))
            y = y + _channel_view(b, y.ndim)
        return y


class QRequant(Step):
    """Quantize a real value to ``bits`` bits at the fixed scale ``scale``: round half up, clamp.

    With ``affine=True`` the input is a MAC's accumulator and the step first applies
    the folded batch norm / bias ``z = acc * g + h`` (``g``, ``h`` trainable). An
    unsigned output also implements a ReLU (the clamp at 0).

    How ``scale`` is chosen (by :func:`compiler.frontend.calibrate.calibrate`):
    ``tie`` names a step whose scale it copies (the skip input of a residual add),
    ``group`` names a set of requants that share one calibrated scale (the two
    branches of a downsampling block); otherwise it is calibrated on its own.
    """

    op = Requant.name

    def __init__(self, name, inputs, origin, *, channels, bits, signed, affine=None,
                 tie=None, group=None, levels="linear"):
        super().__init__(name, inputs, origin)
        self.channels, self.bits, self.signed = channels, bits, signed
        if levels not in ACT_LEVELS or (levels == "pow2" and signed):
            raise ValueError(f"requant '{name}': levels {levels!r} (signed={signed})")
        self.levels = levels
        self.tie, self.group = tie, group
        if affine is not None:
            g, h = affine
            self.g = nn.Parameter(g.detach().clone().float())
            self.h = nn.Parameter(h.detach().clone().float())
        else:
            self.g = self.h = None
        self.register_buffer("scale", torch.tensor(float("nan"), dtype=torch.float64))

    @property
    def affine(self):
        return self.g is not None

    def pre(self, x):
        """The real value being quantized (batch norm and bias applied)."""
        if self.affine:
            return x * _channel_view(self.g, x.ndim) + _channel_view(self.h, x.ndim)
        return x

    def quant(self, z):
        lo, hi = int_range(self.bits, self.signed)
        s = float(self.scale)
        if self.levels == "pow2":
            # The code of z / s + 0.5 (float32 here), its level times s, with the
            # gradient of z inside [0, top level] (a clamp, like the linear case).
            values = pow2_level_values(self.bits)
            code = pow2_code(z.detach() / s + 0.5, self.bits)
            clamped = torch.clamp(z, 0.0, float(values[-1]) * s)
            return replace_ste(clamped, values.to(z.dtype)[code] * s)
        return torch.clamp(floor_ste(z / s + 0.5), lo, hi) * s

    def real(self, xs, scales):
        return self.quant(self.pre(xs[0])), float(self.scale)

    def exact(self, xs, frozen):
        x = xs[0]
        lo, hi = int_range(self.bits, self.signed)
        m = _channel_view(torch.from_numpy(frozen.multiplier[self.step_name]), x.ndim)
        o = _channel_view(torch.from_numpy(frozen.offset[self.step_name]), x.ndim)
        # Two separately rounded float64 operations, exactly as sim.golden.requant.
        t = torch.mul(x, m)
        t = torch.add(t, o)
        if self.levels == "pow2":
            # The code counts the thresholds t reaches; consumers see its value.
            return pow2_level_values(self.bits)[pow2_code(t, self.bits)]
        return torch.clamp(torch.floor(t), lo, hi)


class QAdd(Step):
    """Sum of two integer tensors of one scale (the residual join)."""

    op = Add.name

    def real(self, xs, scales):
        return xs[0] + xs[1], scales[0]

    def exact(self, xs, frozen):
        return xs[0] + xs[1]


class QRelu(Step):
    op = Relu.name

    def real(self, xs, scales):
        return F.relu(xs[0]), scales[0]

    def exact(self, xs, frozen):
        return torch.clamp(xs[0], min=0)


class QMaxPool(Step):
    """Max pooling; its padding is minus infinity, below any value (as the golden model's)."""

    op = MaxPool.name

    def __init__(self, name, inputs, origin, *, kernel, stride, padding=0):
        super().__init__(name, inputs, origin)
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def real(self, xs, scales):
        return F.max_pool2d(xs[0], self.kernel, self.stride, self.padding), scales[0]

    def exact(self, xs, frozen):
        return F.max_pool2d(xs[0], self.kernel, self.stride, self.padding)


class QGap(Step):
    """Global average pool: an integer sum; the real value is the mean, scale ``s / (H*W)``."""

    op = Gap.name

    def __init__(self, name, inputs, origin, *, pixels):
        super().__init__(name, inputs, origin)
        self.pixels = pixels

    def real(self, xs, scales):
        return xs[0].mean(dim=(2, 3)), scales[0] / self.pixels

    def exact(self, xs, frozen):
        return xs[0].sum(dim=(2, 3))


class QFlatten(Step):
    op = Flatten.name

    def real(self, xs, scales):
        return xs[0].flatten(1), scales[0]

    def exact(self, xs, frozen):
        return xs[0].flatten(1)


class FakeQuantModel(nn.Module):
    """The quantized network as a torch module (see the module docstring).

    ``forward(x)`` takes float inputs ``(N, ...)``. In train mode it returns real
    values with straight-through gradients; in eval mode it returns
    ``golden_integers * output_scale`` in float64, computed exactly.
    """

    def __init__(self, steps, output, *, name="model", info=None):
        super().__init__()
        self.steps = nn.ModuleList(steps)
        self.output = output
        self.name = name
        self.info = dict(info or {})     # method, act_bits, ... for the .qpk metadata
        self._index = {s.step_name: s for s in steps}
        self.sync_channel_signs()

    def step(self, name):
        return self._index[name]

    @property
    def input_step(self):
        return self.steps[0]

    @property
    def mac_steps(self):
        return [s for s in self.steps if isinstance(s, QMac)]

    def sync_channel_signs(self):
        """Record ``sign(g)`` of each batch-norm requant for its MAC's weights.

        Only for methods with ``uses_channel_signs`` (LAT2): they quantize the
        weights as :meth:`freeze` exports them, with negative-``g`` channels negated.
        """
        from .methods.curvature import set_channel_signs
        for step in self.steps:
            if isinstance(step, QRequant) and step.affine:
                mac = self._index[step.inputs[0]]
                if getattr(mac.method, "uses_channel_signs", False):
                    g = step.g.detach()
                    set_channel_signs(mac.weight, torch.where(g < 0, -1.0, 1.0))

    def quantize_input(self, x):
        """The input integers (float64 tensor) for float inputs ``x``."""
        return self.input_step.integers(torch.as_tensor(x))

    # -- real values ---------------------------------------------------------------

    def run_real(self, x, *, all_values=False):
        """Real values with straight-through estimators; the output, or every step's."""
        self.sync_channel_signs()
        values, scales = {}, {}
        for step in self.steps:
            xs = [x] if is_op(step, Input) else [values[i] for i in step.inputs]
            values[step.step_name], scales[step.step_name] = step.real(
                xs, [scales.get(i) for i in step.inputs])
        return values if all_values else values[self.output]

    # -- exact integers --------------------------------------------------------------

    def freeze(self):
        """The integer parameters for the current float parameters and scales.

        Deterministic: the same parameters give the same :class:`Frozen`, bit for
        bit. Raises ValueError if a scale has not been calibrated.
        """
        self.sync_channel_signs()
        fr = Frozen()
        sc = fr.scales
        flipped = set()               # MACs whose weight signs a requant has set
        with torch.no_grad():
            for step in self.steps:
                name = step.step_name
                if isinstance(step, (QInput, QRequant)) and not float(step.scale) > 0:
                    raise ValueError(f"step '{name}' has no calibrated scale; run calibrate()")
                if isinstance(step, QInput):
                    sc[name] = float(step.scale)
                elif isinstance(step, QMac):
                    w_int, s_w = step.method.quantize(step.weight)
                    fr.weights[name] = w_int.numpy().astype(np.int64)
                    fr.weight_scales[name] = float(s_w)
                    sc[name] = float(s_w) * sc[step.inputs[0]]
                    if step.bias is not None:
                        b = step.bias.double().numpy() / sc[name]
                        fr.bias[name] = np.round(b).astype(np.int64)
                elif isinstance(step, QRequant):
                    s_out = float(step.scale)
                    src = step.inputs[0]
                    if step.affine:
                        g = step.g.double().numpy()
                        h = step.h.double().numpy()
                        # The IR needs m >= 0: a negative batch-norm scale flips the sign
                        # of that output channel's integer weights instead.
                        sign = np.where(g < 0, -1, 1).astype(np.int64)
                        if src in flipped:
                            raise AssertionError(f"MAC '{src}' feeds two requants")
                        flipped.add(src)
                        w = fr.weights[src]
                        fr.weights[src] = w * sign.reshape((-1,) + (1,) * (w.ndim - 1))
                        fr.multiplier[name] = sc[src] * np.abs(g) / s_out
                        fr.offset[name] = h / s_out + 0.5
                    else:
                        fr.multiplier[name] = np.full(step.channels, sc[src] / s_out)
                        fr.offset[name] = np.full(step.channels, 0.5)
                    sc[name] = s_out
                elif isinstance(step, QAdd):
                    a, b = (sc[i] for i in step.inputs)
                    if a != b:
                        raise AssertionError(f"add '{name}': inputs have scales {a} and {b}")
                    sc[name] = a
                elif isinstance(step, QGap):
                    sc[name] = sc[step.inputs[0]] / step.pixels
                else:
                    sc[name] = sc[step.inputs[0]]
        fr.output_scale = sc[self.output]
        return fr

    def run_exact(self, x, frozen=None, *, all_values=False):
        """Integer outputs (float64 tensors) of the output step, or of every step."""
        frozen = frozen or self.freeze()
        values = {}
        with torch.no_grad():
            for step in self.steps:
                xs = ([torch.as_tensor(x)] if is_op(step, Input)
                      else [values[i] for i in step.inputs])
                values[step.step_name] = step.exact(xs, frozen)
        return values if all_values else values[self.output]

    def forward(self, x):
        if self.training:
            return self.run_real(x)
        frozen = self.freeze()
        return self.run_exact(x, frozen) * frozen.output_scale

"""Where the quantizers go: a traced ``LayerGraph`` -> a ``FakeQuantModel``.

Every value in the quantized network is either *plain* (integers with one real
scale) or an *accumulator* (a MAC's integer output, whose real value still needs
the layer's per-channel batch norm and bias). An accumulator must pass through a
``requant`` before anything but the output uses it. The rules:

* input: signed ``input_bits`` integers.
* conv/linear -> relu: one unsigned ``act_bits`` requant (the ReLU is its clamp at 0),
  batch norm and bias folded into its multiplier and offset.
* residual ``add``: if exactly one operand is plain (the identity shortcut), the
  accumulator operand is requantized to *signed* ``act_bits + 2`` bits at that
  operand's scale (``tie``); otherwise every operand is requantized to signed
  ``act_bits + 2`` bits at one shared calibrated scale (``group``: a downsampling
  shortcut). ``relu`` after an add is an unsigned ``act_bits`` requant of the sum
  (multiplier ``s_sum / s_out``, offset 0.5).
* an accumulator used by anything else (pooling, a second conv) gets a signed
  ``act_bits + 1`` requant first.
* maxpool, flatten and relu of a plain value act on the integers directly; gap is
  an integer sum whose scale is ``s / (H*W)``.
* the MAC producing the network output keeps its bias in accumulator units and
  has no requant; its batch norm (if any) is folded into its float weights first,
  so that all outputs share one scale.
"""

from dataclasses import dataclass

import torch

from .. import limits
from ..errors import QuantizeError
from ..ops import Add, Conv2d, Dense, Flatten, Gap, Input, MaxPool, Relu, is_op, op_of
from .fakequant import (ACT_LEVELS, FakeQuantModel, QAdd, QFlatten, QGap, QInput, QMac, QMaxPool,
                        QRelu, QRequant)

__all__ = ["build_fakequant", "residual_bits", "generic_bits"]


def residual_bits(act_bits):
    """Bits of a residual branch requant: 1 sign bit + 1 bit of headroom over the activations."""
    return act_bits + 2


def generic_bits(act_bits):
    """Bits of a signed requant that no ReLU follows: sign + the activations' resolution."""
    return act_bits + 1


@dataclass
class _Val:
    step: str            # the step producing the value
    kind: str            # "plain" or "acc"
    signed: bool = True
    wide: bool = False   # the sum of a residual add: requantize before a ReLU
    layer: object = None  # for an accumulator: the traced conv/linear layer
    pow2: bool = False    # integers are power-of-two activation levels (0, 1, 2, 4, ...)


class _Planner:
    def __init__(self, graph, method, act_bits, input_bits, act_levels="linear"):
        self.graph = graph
        self.method = method
        self.act_bits = act_bits
        self.act_levels = act_levels
        self.input_bits = input_bits
        self.steps = []
        self.names = set()
        self.vals = {}

    def fail(self, layer, message):
        raise QuantizeError(f"node '{layer.name}' ({layer.origin}): {message}")

    def unique(self, name):
        base, i = name, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def emit(self, step):
        self.steps.append(step)
        return step.step_name

    def requant(self, val, name, origin, *, bits, signed, tie=None, group=None,
                levels="linear"):
        """A requant step after ``val`` (an accumulator or a plain value)."""
        lo, hi = limits.POW2_CODE_BITS if levels == "pow2" else limits.ACT_BITS
        if not lo <= bits <= hi:
            raise QuantizeError(
                f"node '{name}' ({origin}): needs a {bits}-bit requantizer, and the compiler "
                f"takes {lo} to {hi} bits (compiler.limits); use fewer activation bits"
                + (" (power-of-two activations on an identity shortcut need 2**act_bits + 1 "
                   "bits)" if tie is not None and bits > self.act_bits + 2 else ""))
        if val.kind == "acc":
            layer = val.layer
            affine = (layer.scale, layer.shift)
            channels = layer.weight.shape[0]
        else:
            affine = None
            channels = self._channels[val.step]
        step = QRequant(self.unique(name), [val.step], origin, channels=channels, bits=bits,
                        signed=signed, affine=affine, tie=tie, group=group, levels=levels)
        self._channels[step.step_name] = channels
        return _Val(self.emit(step), "plain", signed=signed, pow2=levels == "pow2")

    def plain(self, val, consumer):
        """``val`` as a plain value: requantize an accumulator to signed act_bits + 1 bits."""
        if val.kind == "plain":
            return val
        return self.requant(val, f"{val.step}_q", f"{val.layer.origin} -> {consumer.origin}",
                            bits=generic_bits(self.act_bits), signed=True)

    def simple(self, cls, layer, val, **kw):
        step = cls(self.unique(layer.name), [val.step], layer.origin, **kw)
        self._channels[step.step_name] = layer.shape[0]
        # maxpool and flatten keep the levels; a gap sum is no longer one level
        return _Val(self.emit(step), "plain", signed=val.signed, wide=val.wide,
                    pow2=val.pow2 and cls is not QGap)

    # -- per layer op -----------------------------------------------------------------

    @property
    def handlers(self):
        """What each op becomes in the quantized network."""
        return {Input: self.op_input, Conv2d: self._mac, Dense: self._mac, Relu: self.op_relu,
                Add: self.op_add, MaxPool: self.op_maxpool, Gap: self.op_gap,
                Flatten: self.op_flatten}

    def run(self):
        self._channels = {}       # step name -> channels of its output
        for layer in self.graph.layers:
            ins = [self.vals[s] for s in layer.inputs]
            self.vals[layer.name] = self.handlers[type(op_of(layer))](layer, *ins)
        out = self.vals[self.graph.output]
        if out.kind == "acc":
            raise AssertionError("the output accumulator must come from the final MAC")
        return self.steps, out.step

    def op_input(self, layer):
        step = QInput(self.unique("input"), layer.shape, self.input_bits)
        self._channels[step.step_name] = layer.shape[0]
        return _Val(self.emit(step), "plain", signed=True)

    def _mac(self, layer, val):
        val = self.plain(val, layer)
        users = self.graph.consumers(layer.name)
        final = layer.name == self.graph.output
        if not final and len(users) != 1:
            self.fail(layer, f"its output (after batch norm) is used by {len(users)} nodes; "
                             "a conv/linear output must feed exactly one op, which quantizes it")
        kw = dict(stride=layer.attrs["stride"], padding=layer.attrs["padding"]) \
            if is_op(layer, Conv2d) else {}
        if final:
            # All output channels must share one scale: fold the per-channel batch-norm
            # scale into the float weights before quantizing them.
            w = layer.weight * layer.scale.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
            step = QMac(self.unique(layer.name), [val.step], layer.origin, op=layer.op,
                        weight=w, method=self.method, bias=layer.shift, final=True, **kw)
            self._channels[step.step_name] = layer.shape[0]
            return _Val(self.emit(step), "plain")
        step = QMac(self.unique(layer.name), [val.step], layer.origin, op=layer.op,
                    weight=layer.weight, method=self.method, **kw)
        self._channels[step.step_name] = layer.shape[0]
        return _Val(self.emit(step), "acc", layer=layer)

    def op_relu(self, layer, val):
        if val.kind == "acc":
            return self.requant(val, layer.name, f"{val.layer.origin} -> {layer.origin}",
                                bits=self.act_bits, signed=False, levels=self.act_levels)
        if val.wide:
            return self.requant(val, layer.name, layer.origin, bits=self.act_bits, signed=False,
                                levels=self.act_levels)
        if not val.signed:
            return val                # already non-negative: the ReLU is the identity
        out = self.simple(QRelu, layer, val)
        out.signed = False
        return out

    def op_add(self, layer, a, b):
        plain = [v for v in (a, b) if v.kind == "plain"]
        bits = residual_bits(self.act_bits)
        if a.step == b.step:
            a = b = self.plain(a, layer)      # x + x: one value, one scale
        elif len(plain) == 1:
            # Identity shortcut: the residual branch is requantized to the skip's scale.
            skip = plain[0]
            if skip.pow2:
                # The skip carries power-of-two levels up to 2**(2**act_bits - 2) steps:
                # the branch, at the same scale, needs that range, a sign and headroom.
                bits = max(bits, 2 ** self.act_bits + 1)
            a, b = (self.requant(v, f"{v.step}_q", f"{v.layer.origin} -> {layer.origin}",
                                 bits=bits, signed=True, tie=skip.step)
                    if v.kind == "acc" else v for v in (a, b))
        else:
            # Both branches computed (downsampling shortcut), or two plain values whose
            # scales were calibrated separately: requantize both to one shared scale.
            a, b = (self.requant(v, f"{v.step}_q", layer.origin, bits=bits, signed=True,
                                 group=layer.name) for v in (a, b))
        step = QAdd(self.unique(layer.name), [a.step, b.step], layer.origin)
        self._channels[step.step_name] = layer.shape[0]
        return _Val(self.emit(step), "plain", signed=True, wide=True)

    def op_maxpool(self, layer, val):
        val = self.plain(val, layer)
        return self.simple(QMaxPool, layer, val, kernel=layer.attrs["kernel"],
                           stride=layer.attrs["stride"], padding=layer.attrs["padding"])

    def op_gap(self, layer, val):
        val = self.plain(val, layer)
        return self.simple(QGap, layer, val, pixels=layer.attrs["pixels"])

    def op_flatten(self, layer, val):
        val = self.plain(val, layer)
        return self.simple(QFlatten, layer, val)


def build_fakequant(graph, method, *, act_bits=4, input_bits=8, name="model", act_levels=None):
    """A :class:`FakeQuantModel` (uncalibrated) for a traced ``graph``.

    ``method`` is a :class:`~.methods.WeightMethod`. Scales are NaN until
    :func:`compiler.frontend.calibrate.calibrate` sets them. ``act_levels``
    (``"linear"`` or ``"pow2"``; default: the method's ``act_levels``, else
    linear) are the levels of the unsigned (post-ReLU) requants.
    """
    if act_levels is None:
        act_levels = getattr(method, "act_levels", "linear")
    if act_levels not in ACT_LEVELS:
        raise QuantizeError(f"unknown activation levels {act_levels!r}; known: "
                            f"{', '.join(ACT_LEVELS)}")
    if act_levels == "pow2" and not 1 <= act_bits <= 4:
        raise QuantizeError(f"power-of-two activations need 1 to 4 bits, not {act_bits} (a "
                            "b-bit code reaches 2**(2**b - 2) activation steps)")
    if not 1 <= act_bits <= 16:
        raise QuantizeError(f"act_bits must be between 1 and 16, not {act_bits}")
    if not 2 <= input_bits <= 16:
        raise QuantizeError(f"input_bits must be between 2 and 16, not {input_bits}")
    steps, output = _Planner(graph, method, act_bits, input_bits, act_levels).run()
    info = {**method.describe(), "act_bits": act_bits, "input_bits": input_bits}
    if act_levels != "linear":
        info["act_levels"] = act_levels
    with torch.no_grad():
        return FakeQuantModel(steps, output, name=name, info=info)

"""``Conv``, ``Gemm`` and ``MatMul`` with quantized weights as ``conv2d`` and ``dense``.

Integer weights need one scale for the whole input; the output's scale is the
input's times each output channel's weight scale, and a float bias (or the sum
the weights make of an input offset) joins the offset, for the next quantizer's
thresholds to absorb.
"""

from dataclasses import replace

import numpy as np

from .. import limits
from ..ir import smallest_int_dtype
from ..ops.weights import pow2_max_exponent
from .values import Act, QConst, scalar, uniform

__all__ = ["MacOps"]


class MacOps:
    """The importer's handlers of the MAC layers (a mixin of ``convert._Importer``)."""

    def _weights(self, n, i):
        w = self.values.get(n.input[i])
        if isinstance(w, np.ndarray):
            self.fail(n, "its weights are not quantized (expected a Quant or BipolarQuant on "
                         "them); float weights have no multiplier-free form")
        if not isinstance(w, QConst):
            self.fail(n, f"its weights (input {i}) must be a quantized constant")
        if np.any(w.zero != 0):
            self.fail(n, "its weights have a non-zero zero point")
        return w

    def _mac_input(self, n, x, padded):
        x = self.settled(n, x)
        if not uniform(x.scale):
            self.fail(n, "its input has a scale per channel; a MAC with integer weights needs "
                         "one scale for its whole input (quantize the input per tensor)")
        if padded and np.any(x.offset != 0):
            self.fail(n, "its input has a real offset (a zero point), which zero padding does "
                         "not keep")
        return x

    def _weight_attrs(self, n, ints):
        """The weight kind the integers fit, whatever the quantizer's bit width was."""
        nz = np.abs(ints[ints != 0])
        lo, hi = int(ints.min(initial=0)), int(ints.max(initial=0))
        bits = max(hi.bit_length(), (-lo - 1).bit_length()) + 1      # signed
        attrs = {"weight_kind": "int", "weight_bits": bits}
        if nz.size == 0 or nz.max() <= 1:
            attrs = {"weight_kind": "ternary", "weight_bits": 2}
        elif np.all((nz & (nz - 1)) == 0):
            e = int(nz.max()).bit_length() - 1
            pbits = next(b for b in range(2, 7) if pow2_max_exponent(b) >= e) \
                if e <= pow2_max_exponent(6) else None
            if pbits is not None and pbits <= bits:
                attrs = {"weight_kind": "pow2", "weight_bits": pbits}
        if attrs["weight_kind"] == "int" and not limits.WEIGHT_BITS["int"][0] <= bits \
                <= limits.WEIGHT_BITS["int"][1]:
            self.fail(n, f"{bits}-bit integer weights: at most {limits.WEIGHT_BITS['int'][1]} "
                         "are supported")
        return attrs

    def _mac(self, n, op, x, w_int, w_scale, bias, attrs, in_offset_sum):
        """Add a MAC node; ``in_offset_sum`` is W @ (input offset), per output channel."""
        o = w_int.shape[0]
        s_w = self.per_channel(n, w_scale, o, "the weight scale")
        s_in = scalar(x.scale)
        attrs = {**attrs, **self._weight_attrs(n, w_int),
                 "weight_scale": s_w.tolist() if not uniform(s_w) else float(s_w[0])}
        node = self.add(n, op, [x.node], attrs,
                        {"weight": w_int.astype(smallest_int_dtype(w_int))})
        offset = s_w * in_offset_sum
        if bias is not None:
            offset = offset + self._bias(n, bias, o)
        return Act(node.name, node.shape, s_in * s_w, offset)

    def _bias(self, n, b, o):
        if isinstance(b, QConst):
            real = (b.ints - b.zero) * np.asarray(b.scale, np.float64)
        elif isinstance(b, np.ndarray):
            real = b
        else:
            self.fail(n, "its bias must be a constant")
        real = np.asarray(real, np.float64).reshape(-1)
        if real.size not in (1, o):
            self.fail(n, f"a bias of {real.size} values for {o} outputs")
        return np.broadcast_to(real, (o,))

    def op_Conv(self, n, a):
        w = self._weights(n, 1)
        if w.ints.ndim != 4 or w.ints.shape[2] != w.ints.shape[3]:
            self.fail(n, f"weights of shape {list(w.ints.shape)}: square 2-D kernels only")
        k = w.ints.shape[2]
        if a.get("group", 1) != 1:
            self.fail(n, f"group={a.get('group')}: grouped and depthwise convolutions are not "
                         "supported")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            self.fail(n, "dilated convolutions are not supported")
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
            self.fail(n, f"auto_pad={a.get('auto_pad')}: give explicit pads")
        strides, pads = a.get("strides", [1, 1]), a.get("pads", [0, 0, 0, 0])
        if len(set(strides)) != 1 or len(set(pads)) != 1:
            self.fail(n, f"strides {strides} and pads {pads} must be the same on every side")
        if list(a.get("kernel_shape", [k, k])) != [k, k]:
            self.fail(n, "kernel_shape does not match the weights")
        x = self._mac_input(n, self.act(n), pads[0] > 0)
        in_sum = np.einsum("ochw,c->o", w.ints.astype(np.float64), x.offset)
        return self._mac(n, "conv2d", x, w.ints, w.scale, self._bias_input(n),
                         {"kernel": k, "stride": strides[0], "padding": pads[0]}, in_sum)

    def _bias_input(self, n):
        """The optional third input of Conv and Gemm."""
        return self.values.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None

    def _dense(self, n, x, w_int, w_scale, bias, alpha=1.0, beta=1.0):
        x = self._mac_input(n, x, False)
        if len(x.shape) != 1:
            self.fail(n, f"its input has shape {list(x.shape)}; flatten it to a vector first")
        in_sum = w_int.astype(np.float64) @ x.offset
        if bias is not None and beta != 1.0:
            bias = self._bias(n, bias, w_int.shape[0]) * beta
        out = self._mac(n, "dense", x, w_int, np.asarray(w_scale, np.float64), bias, {},
                        in_sum)
        if alpha != 1.0:
            if alpha <= 0:
                self.fail(n, f"alpha={alpha} must be positive")
            out = replace(out, scale=out.scale * alpha, offset=out.offset * alpha)
        return out

    def op_Gemm(self, n, a):
        if a.get("transA", 0):
            self.fail(n, "transA=1 is not supported")
        w = self._weights(n, 1)
        ints = w.ints if a.get("transB", 0) else w.ints.T
        scale = np.asarray(w.scale, np.float64)
        scale = scale if a.get("transB", 0) or scale.ndim < 2 else scale.T
        return self._dense(n, self.act(n), ints, scale, self._bias_input(n),
                           float(a.get("alpha", 1.0)), float(a.get("beta", 1.0)))

    def op_MatMul(self, n, a):
        w = self._weights(n, 1)
        if w.ints.ndim != 2:
            self.fail(n, f"weights of shape {list(w.ints.shape)}: a matrix is expected")
        scale = np.asarray(w.scale, np.float64)
        return self._dense(n, self.act(n), w.ints.T, scale.T if scale.ndim == 2 else scale,
                           None)

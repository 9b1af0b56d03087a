"""The activation quantizers of QONNX (``Quant``, ``BipolarQuant``, ``Trunc``,
``MultiThreshold``) as ``threshold`` nodes, and the quantized graph input.

Each composes the quantizer with the affine map of its input into a staircase of
the integers (:func:`.quantizers.staircase`); the output's own scale and zero point
start the next affine map. On a constant, ``Quant`` and ``BipolarQuant`` give the
integer weights or biases a MAC layer takes (:class:`.values.QConst`).
"""

from dataclasses import replace

import numpy as np

from .. import limits
from ..ir import Graph, validate_graph
from . import quantizers as q
from .values import Act, GraphInput, QConst, scalar, uniform

__all__ = ["QuantizerOps"]


class QuantizerOps:
    """The importer's handlers of QONNX's quantizers (a mixin of ``convert._Importer``)."""

    def _scale(self, n):
        scale = self.const(n, 1, "scale")
        if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
            self.fail(n, "the scale must be finite and positive")
        return scale

    def _rounding(self, n, a, default):
        mode = a.get("rounding_mode", default)
        if q.rounding(mode) is None:
            self.fail(n, f"rounding mode {mode!r} is unknown")
        return q.rounding(mode)

    def _quant_params(self, n, a):
        scale = self._scale(n)
        zero = self.const(n, 2, "zero point")
        bits = self.const(n, 3, "bit width")
        if bits.size != 1 or float(bits.ravel()[0]) != int(bits.ravel()[0]) \
                or not 1 <= int(bits.ravel()[0]) <= 32:
            self.fail(n, f"bit width {bits.ravel().tolist()[:4]} must be one whole number "
                         "from 1 to 32")
        return scale, zero, int(bits.ravel()[0]), bool(a.get("signed", 1)), \
            bool(a.get("narrow", 0)), self._rounding(n, a, "ROUND")

    def op_Quant(self, n, a):
        x = self.values[n.input[0]]
        scale, zero, bits, signed, narrow, rnd = self._quant_params(n, a)
        lo, hi = q.min_int(signed, narrow, bits), q.max_int(signed, narrow, bits)
        if isinstance(x, np.ndarray):                 # weights or a bias
            if bits == 1 and signed:
                ints = np.where(x / scale + zero >= 0, 1, -1)
            else:
                ints = rnd(np.clip(x / scale + zero, lo, hi))
            return QConst(ints.astype(np.int64), scale, zero)
        if isinstance(x, GraphInput):
            return self._input(n, x, scale, zero, bits, signed)
        x = self.act(n)
        if bits == 1 and signed:                     # QONNX: a 1-bit signed Quant is bipolar
            return self._bipolar(n, x, scale)
        if bits > limits.ACT_BITS[1]:
            self.fail(n, f"{bits}-bit activations: at most {limits.ACT_BITS[1]} are supported")
        s = self.channel_param(n, scale, x, "the scale")
        z = self.channel_param(n, zero, x, "the zero point")

        def level(real):
            return rnd(np.clip(real / s[:, None] + z[:, None], lo, hi))
        return self._threshold(n, x, level, bits, signed, s, -z * s)

    def _input(self, n, x, scale, zero, bits, signed):
        if not uniform(scale) or np.any(zero != 0):
            self.fail(n, "the input's quantizer must have one scale and zero point 0")
        if not limits.INPUT_BITS[0] <= bits <= limits.INPUT_BITS[1]:
            self.fail(n, f"{bits}-bit inputs: {limits.INPUT_BITS[0]} to {limits.INPUT_BITS[1]} "
                         "bits are supported")
        s = scalar(scale)
        self.input_scale = s
        node = self.add(n, "input", [], {"shape": list(x.shape), "bits": bits,
                                         "signed": signed, "scale": s})
        c = x.shape[0]
        return Act(node.name, node.shape, np.full(c, s), np.zeros(c))

    def _threshold(self, n, x, level, bits, signed, out_scale, out_offset):
        lo = q.min_int(signed, False, bits)
        if np.any(x.scale <= 0):
            self.fail(n, "its input has a non-positive scale (a negative batch-norm gain or "
                         "multiplier), which the thresholds cannot absorb")
        th = q.staircase(level, x.scale, x.offset, relu=x.relu, lo=lo, count=2 ** bits - 1)
        node = self.add(n, "threshold", [x.node], {"bits": bits, "signed": signed},
                        {"thresholds": th})
        c = x.shape[0]
        return Act(node.name, node.shape, np.broadcast_to(out_scale, (c,)).astype(np.float64),
                   np.broadcast_to(out_offset, (c,)).astype(np.float64))

    def _bipolar(self, n, x, scale):
        s = self.channel_param(n, scale, x, "the scale")
        # Levels 0 and 1 of an unsigned bit stand for -scale and +scale.
        return self._threshold(n, x, lambda real: (real >= 0).astype(np.int64), 1, False,
                               2 * s, -s)

    def op_BipolarQuant(self, n, a):
        x = self.values[n.input[0]]
        scale = self._scale(n)
        if isinstance(x, np.ndarray):
            return QConst(np.where(x >= 0, 1, -1).astype(np.int64), scale, np.zeros(1))
        if isinstance(x, GraphInput):
            self.fail(n, "a bipolar network input is not supported; quantize the input with "
                         "Quant")
        return self._bipolar(n, self.act(n), scale)

    def op_Trunc(self, n, a):
        x = self.act(n)
        scale = self.channel_param(n, self.const(n, 1, "scale"), x, "the scale")
        zero = self.channel_param(n, self.const(n, 2, "zero point"), x, "the zero point")
        in_bits = int(self.const(n, 3, "input bit width").ravel()[0])
        rnd = self._rounding(n, a, "FLOOR")
        if len(n.input) >= 6:                                  # Trunc v2: clamped, signed
            out_scale = self.channel_param(n, self.const(n, 4, "output scale"), x,
                                           "the output scale")
            out_bits = int(self.const(n, 5, "output bit width").ravel()[0])
            signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
            shift = 2.0 ** np.round(np.log2(out_scale / scale))
            lo, hi = q.min_int(signed, narrow, out_bits), q.max_int(signed, narrow, out_bits)

            def level(real):
                v = np.round(real / scale[:, None] + zero[:, None]) / shift[:, None]
                return rnd(np.clip(v, lo, hi))
            offset = -zero / shift * out_scale
        else:                                                  # Trunc v1: in_bits -> out_bits
            out_bits = int(self.const(n, 4, "output bit width").ravel()[0])
            if not 0 <= in_bits - out_bits <= 32:
                self.fail(n, f"truncating {in_bits} to {out_bits} bits")
            shift = 2.0 ** (in_bits - out_bits)
            lo_in = self._range(x)[0]
            signed = lo_in < 0
            lo, hi = q.min_int(signed, False, out_bits), q.max_int(signed, False, out_bits)

            def level(real):
                return np.clip(rnd(np.round(real / scale[:, None] + zero[:, None]) / shift),
                               lo, hi)
            out_scale, offset = scale, -zero * scale
        if out_bits > limits.ACT_BITS[1]:
            self.fail(n, f"{out_bits}-bit outputs: at most {limits.ACT_BITS[1]} are supported")
        return self._threshold(n, x, level, out_bits, signed, out_scale, offset)

    def _range(self, x):
        """The real range of ``x``'s values over every input (for Trunc v1's sign)."""
        from ..passes.ranges import infer_ranges
        graph = Graph([replace(nd) for nd in self.nodes.values()], [x.node])
        keep = {x.node}
        for nd in reversed(graph.nodes):
            if nd.name in keep:
                keep.update(nd.inputs)
        graph.replace_nodes([nd for nd in graph.nodes if nd.name in keep])
        infer_ranges(validate_graph(graph))
        node = graph[x.node]
        ends = np.stack([x.scale * node.lo + x.offset, x.scale * node.hi + x.offset])
        return float(ends.min()), float(ends.max())

    def op_MultiThreshold(self, n, a):
        x = self.act(n)
        th = np.asarray(self.const(n, 1, "thresholds"), np.float64)
        c = x.shape[0]
        if th.ndim != 2 or th.shape[0] not in (1, c) or th.shape[1] < 1:
            self.fail(n, f"thresholds of shape {list(th.shape)}: expected (1, N) or ({c}, N)")
        if a.get("data_layout") not in (None, "", "NCHW", "NC"):
            self.fail(n, f"data layout {a.get('data_layout')!r}: NCHW or NC is supported")
        th = np.broadcast_to(th, (c, th.shape[1]))
        out_scale, out_bias = float(a.get("out_scale", 1.0)), float(a.get("out_bias", 0.0))
        if not out_scale > 0:
            self.fail(n, f"out_scale {out_scale} must be positive")
        bits = max(1, int(th.shape[1]).bit_length())
        if bits > limits.ACT_BITS[1]:
            self.fail(n, f"{th.shape[1]} thresholds per channel: at most "
                         f"{2 ** limits.ACT_BITS[1] - 1} are supported")

        def level(real):
            return (real[:, :, None] >= th[:, None, :]).sum(axis=-1)
        return self._threshold(n, x, level, bits, False, np.full(c, out_scale),
                               np.full(c, out_bias))

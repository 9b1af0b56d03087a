"""A QONNX graph -> the graph IR, exactly or not at all.

The walk keeps, for every ONNX tensor that carries activations, the IR node
whose integers ``a`` it stands for and the affine map to its real value,
``scale[c] * a + offset[c]`` (through a ReLU not yet applied, if ``relu``).
MAC layers need one scale for the whole input (their weights are integers);
their output scale is the input's times each channel's weight scale, and a
float bias joins the offset. Every activation quantizer turns the affine map
back into integers with a ``threshold`` node (:mod:`.quantizers`): per-channel
scales, float biases and batch norms are absorbed there, exactly. What cannot
be absorbed (a scale differing between the two inputs of an ``Add``, a float
bias on the network's output, a negative scale) is refused, naming the node.
"""

from dataclasses import dataclass, replace
from types import SimpleNamespace

import numpy as np

from .. import limits
from ..errors import GraphError, OnnxImportError
from ..frontend.export import smallest_int_dtype
from ..ir import Graph, Node, validate_graph
from ..ops import op_of
from ..ops.weights import pow2_max_exponent
from . import quantizers as q
from .reader import attributes, constants, read_model

__all__ = ["import_onnx", "SUPPORTED_OPS"]


@dataclass
class Act:
    """Activations: IR node ``node``; real value ``scale * a + offset`` per channel."""
    node: str
    shape: tuple                  # the IR shape: (C, H, W) or (K,)
    scale: np.ndarray             # (C,) or (K,), float64
    offset: np.ndarray
    relu: bool = False


@dataclass
class QConst:
    """A constant quantized by a ``Quant``/``BipolarQuant``: ``(ints - zero) * scale``."""
    ints: np.ndarray
    scale: np.ndarray             # broadcastable to ints
    zero: np.ndarray
    bits: int


@dataclass
class GraphInput:
    shape: tuple


def _identifier(text):
    """``text`` with every character outside ASCII letters and digits made ``_``."""
    return "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in text).strip("_")


def _uniform(v):
    v = np.asarray(v, np.float64).ravel()
    return v.size > 0 and bool(np.all(v == v[0]))


def _scalar(v):
    return float(np.asarray(v, np.float64).ravel()[0])


class _Importer:
    def __init__(self, path, model):
        self.path, self.model = path, model
        g = model.graph
        self.values = dict(constants(path, g))
        self.nodes, self.shapes, self.names = [], {}, set()
        self.input_scale = None
        inits = set(self.values)
        real_inputs = [i for i in g.input if i.name not in inits]
        if len(real_inputs) != 1:
            raise OnnxImportError(path, f"the graph has {len(real_inputs)} inputs; one is "
                                        "supported")
        self.values[real_inputs[0].name] = GraphInput(self._input_shape(real_inputs[0]))
        if len(g.output) != 1:
            raise OnnxImportError(path, f"the graph has {len(g.output)} outputs; one is "
                                        "supported")
        if len(g.node) > limits.MAX_NODES * 4:
            raise OnnxImportError(path, f"{len(g.node):,} nodes, more than the limit of "
                                        f"{limits.MAX_NODES * 4:,}")

    # -- helpers ---------------------------------------------------------------------------
    def fail(self, onnx_node, message):
        raise OnnxImportError(self.path, message,
                              node=onnx_node.name or onnx_node.op_type) from None

    def _input_shape(self, value_info):
        dims = value_info.type.tensor_type.shape.dim
        shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        if len(shape) not in (2, 4) or any(d is None or d < 1 for d in shape[1:]) \
                or shape[0] not in (1, None):
            raise OnnxImportError(self.path, f"input '{value_info.name}' has shape {shape}; "
                                             "expected (1, C, H, W) or (1, K)")
        return tuple(shape[1:])

    def _name(self, onnx_node, suffix=""):
        base = _identifier(onnx_node.name or "") or onnx_node.op_type.lower()
        if not (base[0].isalpha() or base[0] == "_"):
            base = "n_" + base
        base = (base + suffix)[:limits.MAX_NAME_LENGTH - 6]
        name, i = base, 1
        while name.lower() in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name.lower())
        return name

    def add(self, onnx_node, op, inputs, attrs=None, tensors=None, suffix=""):
        node = Node(self._name(onnx_node, suffix), op, list(inputs), attrs or {}, tensors or {})
        try:
            node.shape = op_of(node).validate(node, [self.shapes[i] for i in node.inputs])
        except GraphError as err:
            self.fail(onnx_node, err.detail)
        self.nodes.append(node)
        self.shapes[node.name] = node.shape
        return node

    def const(self, onnx_node, i, what):
        name = onnx_node.input[i] if i < len(onnx_node.input) else ""
        v = self.values.get(name)
        if not isinstance(v, np.ndarray):
            self.fail(onnx_node, f"{what} (input {i}) must be a constant")
        return v

    def act(self, onnx_node, i=0):
        v = self.values.get(onnx_node.input[i])
        if not isinstance(v, Act):
            self.fail(onnx_node, f"input {i} ('{onnx_node.input[i]}') must be quantized "
                                 "activations (a Quant, BipolarQuant or MultiThreshold "
                                 "before it)")
        return v

    def settled(self, onnx_node, v):
        """``v`` with a pending ReLU made an IR ``relu`` node (exact only without offset)."""
        if not v.relu:
            return v
        if np.any(v.offset != 0):
            self.fail(onnx_node, "a Relu of values with a real offset (a float bias or zero "
                                 "point) reaches it unquantized; only a quantizer can follow "
                                 "such a Relu exactly")
        node = self.add(onnx_node, "relu", [v.node], suffix="_relu")
        return replace(v, node=node.name, relu=False)

    def per_channel(self, onnx_node, v, channels, what):
        """A weight scale, per tensor or per output channel (axis 0), as a (channels,) vector."""
        v = np.asarray(v, np.float64)
        if v.size == 1:
            return np.full(channels, float(v.ravel()[0]))
        if v.size == channels and v.shape[0] == channels:
            return v.reshape(-1)
        self.fail(onnx_node, f"{what} of shape {list(v.shape)} is neither per tensor nor per "
                             f"output channel ({channels})")

    def channel_param(self, onnx_node, v, act, what, flat=False):
        """A per-tensor or per-channel parameter as a (C,) vector. Broadcast against the
        ONNX tensor ``(1, C, H, W)`` or ``(1, K)``, or given as ``(C,)`` if ``flat``."""
        v = np.asarray(v, np.float64)
        c = act.shape[0]
        if v.size == 1:
            return np.full(c, float(v.ravel()[0]))
        axis = v.ndim - len(act.shape)          # where C sits, counted from the left
        if v.size == c and (flat or (axis >= 0 and v.shape[axis] == c)):
            return v.reshape(-1)
        self.fail(onnx_node, f"{what} of shape {list(v.shape)} is neither per tensor nor per "
                             f"channel for activations of shape {list(act.shape)}")

    # -- the walk --------------------------------------------------------------------------
    def run(self):
        g = self.model.graph
        for onnx_node in g.node:
            handler = getattr(self, f"op_{onnx_node.op_type}", None)
            if handler is None or onnx_node.op_type not in SUPPORTED_OPS:
                self.fail(onnx_node, f"op {onnx_node.op_type} is not supported (supported: "
                                     f"{', '.join(SUPPORTED_OPS)})")
            if len(onnx_node.output) != 1 and onnx_node.op_type not in ("Dropout",):
                self.fail(onnx_node, f"{len(onnx_node.output)} outputs; one is supported")
            for name in onnx_node.input:
                if name and name not in self.values:
                    self.fail(onnx_node, f"input '{name}' is not produced before it")
            self.values[onnx_node.output[0]] = handler(onnx_node, attributes(self.path,
                                                                             onnx_node))
        return self.finish(g.output[0].name)

    def finish(self, out):
        v = self.values.get(out)
        fake = SimpleNamespace(name=f"output {out}", op_type="output")
        if not isinstance(v, Act):
            self.fail(fake, "the graph's output is not computed from its input")
        v = self.settled(fake, v)
        node = next(n for n in self.nodes if n.name == v.node)
        if np.any(v.offset != 0) and op_of(node).is_mac:
            steps = v.offset / v.scale
            whole = np.round(steps)
            if np.all(np.abs(steps - whole) <= 1e-6 * np.maximum(1.0, np.abs(whole))):
                bias = node.tensors.get("bias", np.zeros(len(whole), np.int64)).astype(np.int64)
                node.tensors["bias"] = (bias + whole.astype(np.int64))
                node.tensors["bias"] = node.tensors["bias"].astype(
                    smallest_int_dtype(node.tensors["bias"]))
                v = replace(v, offset=np.zeros_like(v.offset))
        if np.any(v.offset != 0):
            self.fail(fake, "the output has a real offset (a float bias that is not a whole "
                            "number of output steps, or a zero point); the integer outputs "
                            "cannot carry it: quantize the last bias (e.g. Brevitas "
                            "Int32Bias) or end the network with a Quant")
        if not _uniform(v.scale) or _scalar(v.scale) <= 0:
            self.fail(fake, "the output channels have different (or non-positive) scales, "
                            "so their integers would rank differently from the real outputs; "
                            "use a per-tensor weight scale on the last layer or end with a "
                            "per-tensor Quant")
        graph = Graph(self.nodes, [v.node], name=_model_name(self.path),
                      metadata={"input_scale": self.input_scale,
                                "output_scale": _scalar(v.scale),
                                "imported_from": "QONNX"})
        try:
            return validate_graph(graph, names=limits.NAME_PATTERN)
        except GraphError as err:
            raise OnnxImportError(self.path, str(err)) from None

    # -- quantizers ------------------------------------------------------------------------
    def _quant_params(self, n, a):
        scale = self.const(n, 1, "scale")
        zero = self.const(n, 2, "zero point")
        bits = self.const(n, 3, "bit width")
        if bits.size != 1 or float(bits.ravel()[0]) != int(bits.ravel()[0]) \
                or not 1 <= int(bits.ravel()[0]) <= 32:
            self.fail(n, f"bit width {bits.ravel().tolist()[:4]} must be one whole number "
                         "from 1 to 32")
        if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
            self.fail(n, "the scale must be finite and positive")
        mode = a.get("rounding_mode", "ROUND")
        if q.rounding(mode) is None:
            self.fail(n, f"rounding mode {mode!r} is unknown")
        return scale, zero, int(bits.ravel()[0]), bool(a.get("signed", 1)), \
            bool(a.get("narrow", 0)), q.rounding(mode)

    def op_Quant(self, n, a):
        x = self.values[n.input[0]]
        scale, zero, bits, signed, narrow, rnd = self._quant_params(n, a)
        lo, hi = q.min_int(signed, narrow, bits), q.max_int(signed, narrow, bits)
        if isinstance(x, np.ndarray):                 # weights or a bias
            if bits == 1 and signed:
                ints = np.where(x / scale + zero >= 0, 1, -1)
            else:
                ints = rnd(np.clip(x / scale + zero, lo, hi))
            return QConst(ints.astype(np.int64), scale, zero, bits)
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
        if not _uniform(scale) or np.any(zero != 0):
            self.fail(n, "the input's quantizer must have one scale and zero point 0")
        if not limits.INPUT_BITS[0] <= bits <= limits.INPUT_BITS[1]:
            self.fail(n, f"{bits}-bit inputs: {limits.INPUT_BITS[0]} to {limits.INPUT_BITS[1]} "
                         "bits are supported")
        s = _scalar(scale)
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
        scale = self.const(n, 1, "scale")
        if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
            self.fail(n, "the scale must be finite and positive")
        if isinstance(x, np.ndarray):
            return QConst(np.where(x >= 0, 1, -1).astype(np.int64), scale, np.zeros(1), 2)
        if isinstance(x, GraphInput):
            self.fail(n, "a bipolar network input is not supported; quantize the input with "
                         "Quant")
        return self._bipolar(n, self.act(n), scale)

    def op_Trunc(self, n, a):
        x = self.act(n)
        scale = self.channel_param(n, self.const(n, 1, "scale"), x, "the scale")
        zero = self.channel_param(n, self.const(n, 2, "zero point"), x, "the zero point")
        in_bits = int(self.const(n, 3, "input bit width").ravel()[0])
        rnd = q.rounding(a.get("rounding_mode", "FLOOR"))
        if rnd is None:
            self.fail(n, f"rounding mode {a.get('rounding_mode')!r} is unknown")
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
        graph = Graph([replace(nd) for nd in self.nodes], [x.node])
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

    # -- MAC layers ------------------------------------------------------------------------
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
        if not _uniform(x.scale):
            self.fail(n, "its input has a scale per channel; a MAC with integer weights needs "
                         "one scale for its whole input (quantize the input per tensor)")
        if padded and np.any(x.offset != 0):
            self.fail(n, "its input has a real offset (a zero point), which zero padding does "
                         "not keep")
        return x

    def _weight_attrs(self, n, ints, bits):
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
        s_in = _scalar(x.scale)
        attrs = dict(attrs)
        bits = attrs.pop("bits")
        attrs = {**attrs, **self._weight_attrs(n, w_int, bits),
                 "weight_scale": s_w.tolist() if not _uniform(s_w) else float(s_w[0])}
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
        in_sum = np.einsum("ochw,c->o", w.ints.astype(np.float64), x.offset) \
            if np.any(x.offset != 0) else np.zeros(w.ints.shape[0])
        bias = self.values.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        return self._mac(n, "conv2d", x, w.ints, w.scale, bias,
                         {"kernel": k, "stride": strides[0], "padding": pads[0],
                          "bits": w.bits}, in_sum)

    def _dense(self, n, x, w, w_int, w_scale, bias, alpha=1.0, beta=1.0):
        x = self._mac_input(n, x, False)
        if len(x.shape) != 1:
            self.fail(n, f"its input has shape {list(x.shape)}; flatten it to a vector first")
        in_sum = w_int.astype(np.float64) @ x.offset
        if bias is not None and beta != 1.0:
            bias = self._bias(n, bias, w_int.shape[0]) * beta
        out = self._mac(n, "dense", x, w_int, np.asarray(w_scale, np.float64), bias,
                        {"bits": w.bits}, in_sum)
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
        bias = self.values.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        return self._dense(n, self.act(n), w, ints, scale, bias, float(a.get("alpha", 1.0)),
                           float(a.get("beta", 1.0)))

    def op_MatMul(self, n, a):
        w = self._weights(n, 1)
        if w.ints.ndim != 2:
            self.fail(n, f"weights of shape {list(w.ints.shape)}: a matrix is expected")
        scale = np.asarray(w.scale, np.float64)
        return self._dense(n, self.act(n), w, w.ints.T, scale.T if scale.ndim == 2 else scale,
                           None)

    # -- the other layers ------------------------------------------------------------------
    def op_Relu(self, n, a):
        return replace(self.act(n), relu=True)

    def op_MaxPool(self, n, a):
        x = self.act(n)
        if np.any(x.scale <= 0):
            self.fail(n, "its input has a non-positive scale; the maximum would change sides")
        k, strides = a.get("kernel_shape", []), a.get("strides", None)
        pads = a.get("pads", [0, 0, 0, 0])
        strides = strides or k
        if len(k) != 2 or k[0] != k[1] or len(set(strides)) != 1 or len(set(pads)) != 1:
            self.fail(n, f"kernel {k}, strides {strides}, pads {pads}: square and the same on "
                         "every side are supported")
        if a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1])):
            self.fail(n, "ceil_mode and dilations are not supported")
        # max(relu(v)) == relu(max(v)): a pending ReLU passes through.
        node = self.add(n, "maxpool", [x.node], {"kernel": k[0], "stride": strides[0],
                                                 "padding": pads[0]})
        return replace(x, node=node.name, shape=node.shape)

    def _gap(self, n, x):
        x = self.settled(n, x)
        if len(x.shape) != 3:
            self.fail(n, f"its input has shape {list(x.shape)}; a feature map is expected")
        node = self.add(n, "gap", [x.node])
        area = x.shape[1] * x.shape[2]
        return Act(node.name, node.shape, x.scale / area, x.offset)

    def op_GlobalAveragePool(self, n, a):
        return self._gap(n, self.act(n))

    def op_AveragePool(self, n, a):
        x = self.act(n)
        if len(x.shape) != 3 or list(a.get("kernel_shape", [])) != list(x.shape[1:]) \
                or any(a.get("pads", [0])):
            self.fail(n, "only a global average pool (kernel = the whole map, no padding) is "
                         "supported")
        return self._gap(n, x)

    def op_ReduceMean(self, n, a):
        x = self.act(n)
        axes = a.get("axes")
        if axes is None and len(n.input) > 1 and n.input[1]:
            axes = self.const(n, 1, "the axes").ravel().tolist()
        if len(x.shape) != 3 or sorted(int(i) % 4 for i in axes or []) != [2, 3]:
            self.fail(n, f"a mean over axes {axes}: only the mean over H and W (a global "
                         "average pool) is supported")
        return self._gap(n, x)

    def op_Add(self, n, a):
        left, right = (self.values.get(i) for i in n.input)
        if isinstance(right, Act) and not isinstance(left, Act):
            left, right = right, left
        if not isinstance(left, Act):
            self.fail(n, "neither input is activations")
        if isinstance(right, np.ndarray):                  # a bias
            x = self.settled(n, left)
            return replace(x, offset=x.offset + self.channel_param(n, right, x, "the addend"))
        if not isinstance(right, Act):
            self.fail(n, "its inputs must be activations or a constant")
        x, y = self.settled(n, left), self.settled(n, right)
        if x.shape != y.shape:
            self.fail(n, f"shapes {list(x.shape)} and {list(y.shape)} differ")
        if not np.array_equal(x.scale, y.scale):
            self.fail(n, "its two inputs have different scales "
                         f"({_scalar(x.scale):.6g} and {_scalar(y.scale):.6g}); an integer sum "
                         "needs them equal (share one quantizer between the branches)")
        node = self.add(n, "add", [x.node, y.node])
        return Act(node.name, node.shape, x.scale, x.offset + y.offset)

    def _scaled(self, n, c, i=0):
        x = self.act(n, i)
        c = self.channel_param(n, c, x, "the factor")
        if np.any(c <= 0) or np.any(~np.isfinite(c)):
            self.fail(n, "only multiplication by finite positive constants is supported")
        return replace(x, scale=x.scale * c, offset=x.offset * c)

    def op_Mul(self, n, a):
        if isinstance(self.values.get(n.input[0]), np.ndarray):
            return self._scaled(n, self.const(n, 0, "the factor"), 1)
        return self._scaled(n, self.const(n, 1, "the factor"))

    def op_Div(self, n, a):
        c = self.const(n, 1, "the divisor")
        if np.any(c == 0):
            self.fail(n, "division by zero")
        return self._scaled(n, 1.0 / np.asarray(c, np.float64))

    def op_BatchNormalization(self, n, a):
        x = self.act(n)
        gamma, beta, mean, var = (self.channel_param(n, self.const(n, i, what), x, what, True)
                                  for i, what in ((1, "scale"), (2, "bias"), (3, "mean"),
                                                  (4, "variance")))
        if x.relu:
            self.fail(n, "a batch norm after a Relu is not supported")
        g = gamma / np.sqrt(var + float(a.get("epsilon", 1e-5)))
        return replace(x, scale=x.scale * g, offset=(x.offset - mean) * g + beta)

    def _flatten(self, n, x):
        if len(x.shape) == 1:
            return x
        c, h, w = x.shape
        if h * w == 1:          # after a global pool the IR has a vector already
            return x
        node = self.add(n, "flatten", [x.node])
        return replace(x, node=node.name, shape=node.shape, scale=np.repeat(x.scale, h * w),
                       offset=np.repeat(x.offset, h * w))

    def op_Flatten(self, n, a):
        if a.get("axis", 1) != 1:
            self.fail(n, f"axis={a.get('axis')}: only axis=1 is supported")
        return self._flatten(n, self.act(n))

    def op_Reshape(self, n, a):
        x = self.act(n)
        target = [int(d) for d in self.const(n, 1, "the shape").ravel()]
        size = int(np.prod(x.shape))
        if target not in ([1, size], [1, -1], [-1, size]) and target != [1, *x.shape]:
            self.fail(n, f"reshape to {target}: only flattening to (1, {size}) is supported")
        return x if target == [1, *x.shape] else self._flatten(n, x)

    def op_Identity(self, n, a):
        return self.values[n.input[0]]

    op_Dropout = op_Identity

    def op_Constant(self, n, a):
        if "value" not in a or not isinstance(a["value"], np.ndarray):
            self.fail(n, "only Constant nodes with a 'value' tensor are supported")
        return a["value"]


def _model_name(path):
    from pathlib import Path
    stem = _identifier(Path(path).stem)
    return (stem if stem and not stem[0].isdigit() else f"m_{stem}")[:limits.MAX_NAME_LENGTH]


#: The ONNX/QONNX ops the importer reads.
SUPPORTED_OPS = ("Quant", "BipolarQuant", "Trunc", "MultiThreshold", "Conv", "Gemm", "MatMul",
                 "Relu", "MaxPool", "Add", "GlobalAveragePool", "AveragePool", "ReduceMean",
                 "Flatten", "Reshape", "BatchNormalization", "Mul", "Div", "Identity",
                 "Dropout", "Constant")


def import_onnx(path):
    """The graph IR of the QONNX model in ``path``, validated.

    Raises :class:`~compiler.errors.OnnxImportError` naming the node and the reason
    for anything without an exact multiplier-free integer form.
    """
    model = read_model(path)
    importer = _Importer(path, model)
    graph = importer.run()
    if importer.input_scale is None:
        raise OnnxImportError(path, "the input is not quantized by a Quant node")
    return graph


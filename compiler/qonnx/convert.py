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

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .. import limits
from ..errors import GraphError, OnnxImportError
from ..ir import Graph, Node, smallest_int_dtype, validate_graph
from ..names import identifier
from ..ops import op_of
from .layer_ops import LayerOps
from .mac_ops import MacOps
from .quant_ops import QuantizerOps
from .reader import attributes, constants, read_model
from .values import Act, GraphInput, scalar, uniform

__all__ = ["import_onnx", "SUPPORTED_OPS"]


class _Importer(QuantizerOps, MacOps, LayerOps):
    def __init__(self, path, model):
        self.path, self.model = path, model
        g = model.graph
        self.values = dict(constants(path, g))
        self.nodes, self.names = {}, set()           # IR nodes by name, in order
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
        # torch's exporter names every node "node_<its output>": the output says it.
        name = (onnx_node.name or "").removeprefix("node_")
        base = identifier(name, onnx_node.op_type.lower())
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
            node.shape = op_of(node).validate(node, [self.nodes[i].shape for i in node.inputs])
        except GraphError as err:
            self.fail(onnx_node, err.detail)
        self.nodes[node.name] = node
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
            if handler is None:
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
        node = self.nodes[v.node]
        if np.any(v.offset != 0) and op_of(node).is_mac:
            steps = v.offset / v.scale
            whole = np.round(steps)
            if np.all(np.abs(steps - whole) <= 1e-6 * np.maximum(1.0, np.abs(whole))):
                bias = node.tensors.get("bias", 0) + whole.astype(np.int64)
                node.tensors["bias"] = bias.astype(smallest_int_dtype(bias))
                v = replace(v, offset=np.zeros_like(v.offset))
        if np.any(v.offset != 0):
            self.fail(fake, "the output has a real offset (a float bias that is not a whole "
                            "number of output steps, or a zero point); the integer outputs "
                            "cannot carry it: quantize the last bias (e.g. Brevitas "
                            "Int32Bias) or end the network with a Quant")
        if not uniform(v.scale) or scalar(v.scale) <= 0:
            self.fail(fake, "the output channels have different (or non-positive) scales, "
                            "so their integers would rank differently from the real outputs; "
                            "use a per-tensor weight scale on the last layer or end with a "
                            "per-tensor Quant")
        graph = Graph(list(self.nodes.values()), [v.node], name=_model_name(self.path),
                      metadata={"input_scale": self.input_scale,
                                "output_scale": scalar(v.scale),
                                "imported_from": "QONNX"})
        try:
            return validate_graph(graph, names=limits.NAME_PATTERN)
        except GraphError as err:
            raise OnnxImportError(self.path, str(err)) from None


def _model_name(path):
    return identifier(Path(path).stem, "model", prefix="m_")[:limits.MAX_NAME_LENGTH]


#: The ONNX/QONNX ops the importer reads: those it has a handler for.
SUPPORTED_OPS = tuple(sorted(name.removeprefix("op_") for name in dir(_Importer)
                             if name.startswith("op_")))


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

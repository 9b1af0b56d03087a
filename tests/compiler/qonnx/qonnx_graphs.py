"""QONNX test graphs built with the onnx API, and qonnx's reference executor."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DOMAIN = "qonnx.custom_op.general"


class GraphBuilder:
    """Nodes and initializers of a QONNX graph, one call per node."""

    def __init__(self, in_shape, seed=0):
        self.in_shape = in_shape
        self.nodes, self.inits, self.n = [], [], 0
        self.rng = np.random.default_rng(seed)

    def _name(self, what):
        self.n += 1
        return f"{what}{self.n}"

    def const(self, value, name=None):
        name = name or self._name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(self, op, inputs, domain="", **attrs):
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, domain=domain, **attrs))
        return out

    def quant(self, x, scale, bits, *, signed=1, narrow=0, zero=0.0, mode="ROUND"):
        return self.node("Quant", [x, self.const(scale), self.const(zero), self.const(bits)],
                         DOMAIN, signed=signed, narrow=narrow, rounding_mode=mode)

    def weights(self, shape, bits, scale=None, narrow=1):
        w = self.rng.normal(size=shape).astype(np.float32)
        scale = 0.5 if scale is None else scale
        return self.quant(self.const(w), scale, bits, narrow=narrow)

    def model(self, out, out_shape=None):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *self.in_shape])
        y = helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)
        graph = helper.make_graph(self.nodes, "g", [x], [y], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                        helper.make_opsetid(DOMAIN, 1)])
        return model


def qonnx_run(model, x):
    """Outputs of ``model`` on each row of ``x`` by qonnx's reference executor."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes
    wrapped = ModelWrapper(onnx.ModelProto.FromString(model.SerializeToString()))
    wrapped = wrapped.transform(InferShapes())
    name = model.graph.output[0].name
    return np.concatenate([execute_onnx(wrapped, {"x": row[None].astype(np.float32)})[name]
                           for row in x])

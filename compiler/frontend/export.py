"""A calibrated :class:`~.fakequant.FakeQuantModel` -> graph IR (:class:`compiler.ir.Graph`).

One IR node per step, same names, integer tensors from
:meth:`FakeQuantModel.freeze` (the same numbers the fake-quant model's exact
mode computes with). ``graph.metadata["output_scale"]`` is the real value of one
step of the output integers; ``metadata["input_scale"]`` that of the input.
"""

import numpy as np

from ..ops import Conv2d, is_op
from ..ir import Graph, Node, smallest_int_dtype, validate_graph
from .fakequant import QGap, QInput, QMac, QMaxPool, QRequant

__all__ = ["export", "smallest_int_dtype"]


def _as_int(arr):
    return np.ascontiguousarray(arr.astype(smallest_int_dtype(arr)))


def export(model, *, frozen=None, metadata=None):
    """The graph IR of ``model``, validated; ``metadata`` is merged into ``graph.metadata``."""
    fr = frozen or model.freeze()
    nodes = []
    for step in model.steps:
        name, ins = step.step_name, list(step.inputs)
        if isinstance(step, QInput):
            node = Node(name, step.op, [], {"shape": list(step.shape), "bits": step.bits,
                                            "signed": True, "scale": fr.scales[name]})
        elif isinstance(step, QMac):
            attrs = {"weight_kind": step.method.kind, "weight_bits": step.method.bits,
                     "weight_scale": fr.weight_scales[name]}
            if is_op(step, Conv2d):
                attrs.update(kernel=int(step.weight.shape[-1]), stride=step.stride,
                             padding=step.padding)
            tensors = {"weight": _as_int(fr.weights[name])}
            if step.method.kind == "codebook":      # KQ: the kernel codebook and indices
                book, idx = step.method.export_tensors(step.weight, fr.weights[name])
                attrs["entry_bits"] = step.method.entry_bits
                tensors.update(codebook=_as_int(book), indices=_as_int(idx))
            if name in fr.bias:
                tensors["bias"] = _as_int(fr.bias[name])
            node = Node(name, step.op, ins, attrs, tensors)
        elif isinstance(step, QRequant):
            attrs = {"bits": step.bits, "signed": step.signed, "scale": fr.scales[name]}
            if step.levels != "linear":
                attrs["levels"] = step.levels
            node = Node(name, step.op, ins, attrs,
                        {"multiplier": np.asarray(fr.multiplier[name], np.float64),
                         "offset": np.asarray(fr.offset[name], np.float64)})
        elif isinstance(step, QMaxPool):
            node = Node(name, step.op, ins, {"kernel": step.kernel, "stride": step.stride,
                                             "padding": step.padding})
        elif isinstance(step, QGap):
            node = Node(name, step.op, ins)
        else:
            node = Node(name, step.op, ins)      # relu, add, flatten: no attributes
        nodes.append(node)
    meta = {"output_scale": fr.output_scale, "input_scale": fr.scales[model.input_step.step_name],
            "quantization": dict(model.info)}
    meta.update(metadata or {})
    return validate_graph(Graph(nodes, [model.output], name=model.name, metadata=meta))

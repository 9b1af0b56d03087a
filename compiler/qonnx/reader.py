"""Reading an ONNX file as untrusted input: bounded, self-contained, constants as numpy.

The file may come from anyone. It is read only if it is a regular file of at
most :data:`compiler.limits.MAX_FILE_BYTES`; tensors stored outside it ("external
data", a path the file names) are refused rather than followed; every constant
is bounded by :data:`compiler.limits.MAX_TENSOR_ELEMENTS` before it is decoded.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .. import limits
from ..errors import OnnxImportError
from ..files import FileProblem, read_regular_file

__all__ = ["read_model", "constants", "attributes", "tensor_array"]


def read_model(path):
    """The :class:`onnx.ModelProto` of ``path``, with its graph checked by ``onnx.checker``."""
    path = Path(path)
    try:
        blob = read_regular_file(path, "an ONNX file")
    except FileProblem as problem:
        raise OnnxImportError(path, str(problem)) from None
    if len(blob) > limits.MAX_FILE_BYTES:
        raise OnnxImportError(path, f"is larger than the limit of {limits.MAX_FILE_BYTES:,} "
                                    "bytes")
    try:
        # Never load_external_data: that would open whatever paths the file names.
        model = onnx.load_model_from_string(blob)
    except Exception as err:          # protobuf's DecodeError and friends
        raise OnnxImportError(path, f"is not an ONNX model ({type(err).__name__})") from None
    if not model.HasField("graph"):
        raise OnnxImportError(path, "is not an ONNX model (no graph)")
    return model


def tensor_array(path, tensor, where):
    """A ``TensorProto`` as a numpy array, refusing external data and oversized tensors."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
        raise OnnxImportError(path, f"tensor '{tensor.name}' is stored outside the file "
                                    "(external data); save the model as one file",
                              node=where)
    n = int(np.prod([int(d) for d in tensor.dims], dtype=object)) if tensor.dims else 1
    if any(int(d) < 0 for d in tensor.dims) or n > limits.MAX_TENSOR_ELEMENTS:
        raise OnnxImportError(path, f"tensor '{tensor.name}' has dimensions "
                                    f"{list(tensor.dims)}, beyond the limit of "
                                    f"{limits.MAX_TENSOR_ELEMENTS:,} elements", node=where)
    try:
        arr = numpy_helper.to_array(tensor)
    except Exception as err:
        raise OnnxImportError(path, f"tensor '{tensor.name}' cannot be decoded: {err}",
                              node=where) from None
    if arr.dtype.kind not in "biuf":
        raise OnnxImportError(path, f"tensor '{tensor.name}' holds {arr.dtype}, not numbers",
                              node=where)
    return arr


def attributes(path, node):
    """A node's attributes as a dict of Python values (tensors as numpy arrays)."""
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = tensor_array(path, a.t, node.name or node.op_type)
        elif a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.FLOAT,
                        onnx.AttributeProto.STRING, onnx.AttributeProto.INTS,
                        onnx.AttributeProto.FLOATS):
            value = onnx.helper.get_attribute_value(a)
            out[a.name] = value.decode("utf-8", "replace") if isinstance(value, bytes) \
                else list(value) if not isinstance(value, (int, float)) else value
        else:
            out[a.name] = None           # graphs, sparse tensors: no op read here takes them
    return out


def constants(path, graph):
    """The initializers of ``graph``, by name, as numpy arrays."""
    if len(graph.initializer) > limits.MAX_TENSORS:
        raise OnnxImportError(path, f"{len(graph.initializer):,} initializers, more than the "
                                    f"limit of {limits.MAX_TENSORS:,}")
    return {t.name: tensor_array(path, t, "initializers") for t in graph.initializer}

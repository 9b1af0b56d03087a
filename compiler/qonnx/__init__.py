"""Models quantized elsewhere: QONNX graphs (Brevitas' export, FINN's and hls4ml's input).

``python -m compiler import model.onnx -o model.qpk`` (:func:`import_onnx`, then
:func:`compiler.qpk.save`).
"""

from .convert import SUPPORTED_OPS, import_onnx

__all__ = ["import_onnx", "SUPPORTED_OPS"]

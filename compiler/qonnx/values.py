"""What the importer carries along each ONNX tensor: activations, quantized constants, the input.

Activations are the integers ``a`` of an IR node and the affine map to their real
value, ``scale[c] * a + offset[c]`` (through a ReLU not yet applied, if ``relu``).
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["Act", "QConst", "GraphInput", "uniform", "scalar"]


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


@dataclass
class GraphInput:
    shape: tuple


def uniform(v):
    v = np.asarray(v, np.float64).ravel()
    return v.size > 0 and bool(np.all(v == v[0]))


def scalar(v):
    return float(np.asarray(v, np.float64).ravel()[0])

"""The model zoo: prebuilt ``.qpk`` files shipped in this directory.

Loading a zoo model needs no torch: this module only knows file names. The
files are written by ``python -m compiler.zoo.build`` (which does import torch:
it trains and quantizes the models of :mod:`compiler.zoo.models`).
"""

from pathlib import Path

from ..errors import QpkError

__all__ = ["ZOO_DIR", "MODELS", "list_models", "zoo_path"]

ZOO_DIR = Path(__file__).resolve().parent

#: name -> (file, description)
MODELS = {
    "digits_cnn_ternary": ("digits_cnn_ternary.qpk",
                           "digits CNN (8x8 digits, residual block), TWN ternary weights, "
                           "4-bit activations"),
    "digits_cnn_pow2": ("digits_cnn_pow2.qpk",
                        "digits CNN (8x8 digits, residual block), INQ power-of-two weights "
                        "(4 bits, 7 levels), 4-bit activations"),
}


def list_models():
    """Names of the zoo models, sorted."""
    return sorted(MODELS)


def zoo_path(name):
    """Path of the ``.qpk`` of zoo model ``name``; QpkError if there is no such model."""
    if name not in MODELS:
        raise QpkError(name, f"no zoo model of that name (zoo models: {', '.join(list_models())})")
    return ZOO_DIR / MODELS[name][0]

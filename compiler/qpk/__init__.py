"""The ``.qpk`` quantized model package (see ``docs/qpk.md``)."""

from .container import VERSION
from .model import from_bytes, load, save, to_bytes

__all__ = ["VERSION", "load", "save", "to_bytes", "from_bytes"]

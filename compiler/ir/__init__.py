"""Graph IR: nodes, validation, encodings (the ops themselves are in ``compiler.ops``)."""

from .encoding import encodings
from .graph import Graph, Node, bits_for_range, smallest_int_dtype
from .validate import validate_graph

__all__ = ["Graph", "Node", "bits_for_range", "smallest_int_dtype", "validate_graph",
           "encodings"]

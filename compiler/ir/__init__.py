"""Graph IR: nodes, ops and validation."""

from .encoding import CODE_PASSING_OPS, encodings
from .graph import Graph, Node, bits_for_range
from .ops import INTERNAL_OPS, OPS, WEIGHT_KINDS
from .validate import validate_graph

__all__ = ["Graph", "Node", "bits_for_range", "OPS", "WEIGHT_KINDS", "INTERNAL_OPS",
           "validate_graph", "encodings", "CODE_PASSING_OPS"]

"""Graph passes, run in order by :func:`prepare`."""

from ..ir import validate_graph
from .fuse import fuse_relu
from .ranges import infer_ranges, mac_channel_ranges
from .requant import lower_requant

__all__ = ["prepare", "fuse_relu", "infer_ranges", "lower_requant", "mac_channel_ranges"]


def prepare(graph):
    """The passes every build runs: a new graph that hardware can be planned from.

    validate (shapes) -> fuse relu into requant -> ranges -> requant to
    thresholds -> ranges of the thresholded values.
    """
    graph = validate_graph(graph.copy())
    graph = validate_graph(fuse_relu(graph))
    graph = lower_requant(infer_ranges(graph))
    return infer_ranges(validate_graph(graph))

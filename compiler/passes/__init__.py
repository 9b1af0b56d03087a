"""Graph passes, run in order by :func:`prepare`."""

from ..ir import validate_graph
from .forms import expand_weight_forms, insert_decodes
from .fuse import fuse_relu
from .ranges import infer_ranges, mac_channel_ranges
from .requant import lower_requant

__all__ = ["prepare", "fuse_relu", "infer_ranges", "lower_requant", "mac_channel_ranges",
           "expand_weight_forms", "insert_decodes"]


def prepare(graph, *, forms=True):
    """The passes every build runs: a new graph that hardware can be planned from.

    validate (shapes) -> ternary2/codebook MACs to plain MACs (unless ``forms``
    is false: the layer engine takes those weights as they are) -> fuse relu
    into requant -> explicit pow2 decodes -> ranges -> requant to thresholds ->
    ranges of the thresholded values.
    """
    graph = validate_graph(graph.copy())
    if forms:
        graph = validate_graph(expand_weight_forms(graph))
    graph = validate_graph(insert_decodes(fuse_relu(graph)))
    graph = lower_requant(infer_ranges(graph))
    return infer_ranges(validate_graph(graph))

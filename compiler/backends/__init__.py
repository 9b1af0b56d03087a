"""The back ends: ways to turn a prepared graph into hardware.

``dataflow``: a chain of cores per layer, all layers at once, weights on chip.
``layer``: one bank of MACs running the layers in turn, weights streamed in.
"""

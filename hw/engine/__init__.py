"""Cores of the layer engine: one bank of run-time MACs that runs a network layer by layer.

The dataflow back end gives every layer its own cores; the layer engine runs
the layers one after another on shared hardware, from a schedule the compiler
generates, with activations in on-chip memory and weights streamed from
external memory in the order they are consumed (docs/engine.md).
"""

"""Streaming Amaranth cores for multiplier-free quantized dataflow accelerators.

Every core is a :class:`amaranth.lib.wiring.Component` with valid/ready streams
(:mod:`amaranth.lib.stream`) whose payloads are arrays of integer lanes
(:func:`hw.lanes.lanes`). A feature map ``(C, H, W)`` travels as ``H*W`` beats
of ``C`` lanes in raster order; a vector travels as one beat. Cores know streams
and integers, not models: this package imports nothing from the rest of the
project.
"""

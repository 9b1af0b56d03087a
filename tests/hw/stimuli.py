"""Stimuli of the core regressions: random lane values, image beats, payload packing, chains."""

import numpy as np
from amaranth.hdl import Module, Shape
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.lanes import shape_range


class Chain(wiring.Component):
    """Cores in a row, ``o`` of each to ``i`` of the next, as the compiler lowers a stage."""

    def __init__(self, *cores):
        self.cores = cores
        super().__init__({"i": In(stream.Signature(cores[0].i.payload.shape())),
                          "o": Out(stream.Signature(cores[-1].o.payload.shape()))})

    def elaborate(self, platform):
        m = Module()
        for n, core in enumerate(self.cores):
            m.submodules[f"c{n}"] = core
        wiring.connect(m, wiring.flipped(self.i), self.cores[0].i)
        for a, b in zip(self.cores, self.cores[1:]):
            wiring.connect(m, a.o, b.i)
        wiring.connect(m, self.cores[-1].o, wiring.flipped(self.o))
        return m


def lane_values(rng, shape, size):
    """Random integers over the whole range of ``shape``, extremes included often."""
    lo, hi = shape_range(shape)
    x = rng.integers(lo, hi, size=size, endpoint=True)
    pick = rng.random(size)
    x = np.where(pick < 0.1, lo, x)
    x = np.where(pick > 0.9, hi, x)
    return x.astype(np.int64)


def image_beats(x):
    """``(B, C, H, W)`` -> ``B*H*W`` beats of ``C`` lanes, raster order."""
    x = np.asarray(x)
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1]).tolist()


def pack_value(shape, value):
    """The bits of ``value`` for a payload of ``shape``: ints, lists (arrays), dicts (structs)."""
    if isinstance(shape, data.StructLayout):
        word = 0
        for name, field in shape:
            if name in value:
                word |= pack_value(field.shape, value[name]) << field.offset
        return word
    if isinstance(shape, data.ArrayLayout):
        stride = Shape.cast(shape.elem_shape).width
        word = 0
        for n, v in enumerate(value):
            word |= pack_value(shape.elem_shape, v) << (n * stride)
        return word
    width = Shape.cast(shape).width
    return int(value) & ((1 << width) - 1)


def unpack_value(shape, word):
    """Inverse of :func:`pack_value`: signed ints sign-extended, structs as dicts."""
    if isinstance(shape, data.StructLayout):
        return {name: unpack_value(field.shape, word >> field.offset) for name, field in shape}
    if isinstance(shape, data.ArrayLayout):
        stride = Shape.cast(shape.elem_shape).width
        return [unpack_value(shape.elem_shape, word >> (n * stride)) for n in range(shape.length)]
    shape = Shape.cast(shape)
    v = word & ((1 << shape.width) - 1)
    if shape.signed and v >> (shape.width - 1):
        v -= 1 << shape.width
    return v

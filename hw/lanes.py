"""Payload layouts: arrays of equally wide integer lanes."""

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

__all__ = ["lanes", "int_shape", "shape_range", "shape_for_range"]


def int_shape(width, is_signed):
    return signed(width) if is_signed else unsigned(width)


def lanes(shape, count):
    """Layout of a beat of ``count`` lanes of integer ``shape`` (lane 0 in the low bits)."""
    return data.ArrayLayout(Shape.cast(shape), count)


def shape_range(shape):
    """The integers a lane of ``shape`` holds."""
    shape = Shape.cast(shape)
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def shape_for_range(lo, hi):
    """The narrowest shape holding every integer in ``[lo, hi]``."""
    if lo >= 0:
        return unsigned(max(1, int(hi).bit_length()))
    return signed(max((-int(lo) - 1).bit_length(), int(hi).bit_length()) + 1)

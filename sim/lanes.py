"""Packing beats of integer lanes into the flat bit vectors that simulators see."""

__all__ = ["pack", "unpack"]


def pack(values, width):
    """Lane ``i`` of ``values`` in bits ``[i*width, (i+1)*width)``, two's complement."""
    mask = (1 << width) - 1
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * width)
    return word


def unpack(word, width, count, signed):
    """Inverse of :func:`pack`."""
    mask = (1 << width) - 1
    out = []
    for i in range(count):
        v = (int(word) >> (i * width)) & mask
        if signed and v >> (width - 1):
            v -= 1 << width
        out.append(v)
    return out

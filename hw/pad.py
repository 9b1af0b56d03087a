"""Zero padding of a feature map stream."""

from amaranth.hdl import Module, ShapeLike, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .lanes import lanes

__all__ = ["Pad"]


class Pad(wiring.Component):
    """Surround each ``height`` x ``width`` image with ``padding`` pixels of ``value``.

    Walks the padded image in raster order, one pixel per cycle: interior pixels
    are taken from ``i``, border pixels are made up. An image takes
    ``(height + 2p) * (width + 2p)`` cycles.

    Members
    -------
    i : In(stream.Signature(lanes(shape, channels)))
    o : Out(stream.Signature(lanes(shape, channels)))
    """

    def __init__(self, shape: ShapeLike, channels: int, height: int, width: int, padding: int,
                 value: int = 0):
        self.channels, self.height, self.width = channels, height, width
        self.padding, self.value = padding, value
        super().__init__({"i": In(stream.Signature(lanes(shape, channels))),
                          "o": Out(stream.Signature(lanes(shape, channels)))})

    def elaborate(self, platform):
        m = Module()
        p = self.padding
        ph, pw = self.height + 2 * p, self.width + 2 * p
        y = Signal(range(ph))
        x = Signal(range(pw))
        interior = (y >= p) & (y < p + self.height) & (x >= p) & (x < p + self.width)
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en & interior)
        with m.If(en):
            m.d.sync += self.o.valid.eq(0)
            with m.If(~interior | self.i.valid):
                m.d.sync += self.o.valid.eq(1)
                with m.If(interior):
                    m.d.sync += self.o.payload.eq(self.i.payload)
                with m.Else():
                    m.d.sync += [self.o.payload[c].eq(self.value) for c in range(self.channels)]
                with m.If(x == pw - 1):
                    m.d.sync += [x.eq(0), y.eq(0)]
                    with m.If(y != ph - 1):
                        m.d.sync += y.eq(y + 1)
                with m.Else():
                    m.d.sync += x.eq(x + 1)
        return m

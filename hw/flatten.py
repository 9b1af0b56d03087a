"""Gathering a whole feature map into one vector beat."""

from amaranth.hdl import Module, ShapeLike, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .lanes import lanes

__all__ = ["Flatten"]


class Flatten(wiring.Component):
    """Collect the ``pixels`` beats of an image into one beat of ``channels * pixels`` lanes.

    Lanes follow PyTorch's ``flatten`` of ``(C, H, W)``: pixel ``p`` (raster
    order), channel ``c`` lands in lane ``c * pixels + p``.

    Members
    -------
    i : In(stream.Signature(lanes(shape, channels)))
    o : Out(stream.Signature(lanes(shape, channels * pixels)))
    """

    def __init__(self, shape: ShapeLike, channels: int, pixels: int):
        self.channels, self.pixels = channels, pixels
        super().__init__({"i": In(stream.Signature(lanes(shape, channels))),
                          "o": Out(stream.Signature(lanes(shape, channels * pixels)))})

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(self.pixels))
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            for p in range(self.pixels):
                with m.If(count == p):
                    m.d.sync += [self.o.payload[c * self.pixels + p].eq(self.i.payload[c])
                                 for c in range(self.channels)]
            with m.If(count == self.pixels - 1):
                m.d.sync += [count.eq(0), self.o.valid.eq(1)]
            with m.Else():
                m.d.sync += count.eq(count + 1)
        return m

"""Pooling: the maximum over a window, and the sum over a whole image."""

from amaranth.hdl import Module, Mux, ShapeLike, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .lanes import lanes

__all__ = ["WindowMax", "GlobalSum"]


class WindowMax(wiring.Component):
    """Per channel, the maximum over the ``window`` pixels of a window beat.

    Takes the beats of :class:`~hw.window.SlidingWindow` (lane
    ``pos * channels + c``) and gives ``channels`` lanes; one beat per cycle.

    Members
    -------
    i : In(stream.Signature(lanes(shape, window * channels)))
    o : Out(stream.Signature(lanes(shape, channels)))
    """

    def __init__(self, shape: ShapeLike, channels: int, window: int):
        self.channels, self.window = channels, window
        super().__init__({"i": In(stream.Signature(lanes(shape, window * channels))),
                          "o": Out(stream.Signature(lanes(shape, channels)))})

    def elaborate(self, platform):
        m = Module()
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)
        with m.If(en):
            m.d.sync += self.o.valid.eq(self.i.valid)
            for c in range(self.channels):
                vals = [self.i.payload[p * self.channels + c] for p in range(self.window)]
                while len(vals) > 1:   # balanced tree of comparators
                    vals = [Mux(a > b, a, b) for a, b in zip(vals[::2], vals[1::2])] + (
                        [vals[-1]] if len(vals) % 2 else [])
                m.d.sync += self.o.payload[c].eq(vals[0])
        return m


class GlobalSum(wiring.Component):
    """Per channel, the sum of all ``pixels`` pixels of an image; one beat out per image.

    ``out_shape`` must hold ``pixels`` times the extreme input values (the
    compiler sizes it from the value ranges).

    Members
    -------
    i : In(stream.Signature(lanes(in_shape, channels)))
    o : Out(stream.Signature(lanes(out_shape, channels)))
    """

    def __init__(self, in_shape: ShapeLike, out_shape: ShapeLike, channels: int, pixels: int):
        self.channels, self.pixels = channels, pixels
        self.out_shape = out_shape
        super().__init__({"i": In(stream.Signature(lanes(in_shape, channels))),
                          "o": Out(stream.Signature(lanes(out_shape, channels)))})

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(self.pixels))
        sums = [Signal(self.out_shape, name=f"sum{c}") for c in range(self.channels)]
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            first = count == 0
            for c in range(self.channels):
                total = Mux(first, 0, sums[c]) + self.i.payload[c]
                m.d.sync += sums[c].eq(total)
                m.d.sync += self.o.payload[c].eq(total)
            with m.If(count == self.pixels - 1):
                m.d.sync += [count.eq(0), self.o.valid.eq(1)]
            with m.Else():
                m.d.sync += count.eq(count + 1)
        return m

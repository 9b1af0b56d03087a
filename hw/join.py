"""Forking a stream into branches and joining branches by addition."""

from amaranth.hdl import Module, ShapeLike, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .lanes import lanes

__all__ = ["Fork", "AddJoin"]


class Fork(wiring.Component):
    """Copy every beat of ``i`` to each of ``n`` outputs.

    A beat leaves ``i`` once every output has taken it; outputs may take it in
    different cycles (each remembers that it already has), so one slow branch
    delays the fork but does not deadlock it.

    Members
    -------
    i : In(stream.Signature(layout))
    o : Out(stream.Signature(layout)).array(n)
    """

    def __init__(self, layout: ShapeLike, n: int = 2):
        self.n = n
        super().__init__({"i": In(stream.Signature(layout)),
                          "o": Out(stream.Signature(layout)).array(n)})

    def elaborate(self, platform):
        m = Module()
        done = [Signal(name=f"done{j}") for j in range(self.n)]
        # An output is satisfied once it took the beat, now or earlier.
        took = [self.o[j].valid & self.o[j].ready for j in range(self.n)]
        all_done = Signal()
        m.d.comb += all_done.eq(self.i.valid)
        for j in range(self.n):
            m.d.comb += [self.o[j].payload.eq(self.i.payload),
                         self.o[j].valid.eq(self.i.valid & ~done[j])]
            with m.If(~(done[j] | took[j])):
                m.d.comb += all_done.eq(0)
        m.d.comb += self.i.ready.eq(all_done)
        for j in range(self.n):
            with m.If(all_done):
                m.d.sync += done[j].eq(0)
            with m.Elif(took[j]):
                m.d.sync += done[j].eq(1)
        return m


class AddJoin(wiring.Component):
    """Lane-wise sum of two streams, one beat of each per output beat.

    Members
    -------
    a : In(stream.Signature(lanes(a_shape, channels)))
    b : In(stream.Signature(lanes(b_shape, channels)))
    o : Out(stream.Signature(lanes(out_shape, channels)))
    """

    def __init__(self, a_shape: ShapeLike, b_shape: ShapeLike, out_shape: ShapeLike,
                 channels: int):
        self.channels = channels
        super().__init__({"a": In(stream.Signature(lanes(a_shape, channels))),
                          "b": In(stream.Signature(lanes(b_shape, channels))),
                          "o": Out(stream.Signature(lanes(out_shape, channels)))})

    def elaborate(self, platform):
        m = Module()
        take = Signal()
        m.d.comb += [take.eq((~self.o.valid | self.o.ready) & self.a.valid & self.b.valid),
                     self.a.ready.eq(take), self.b.ready.eq(take)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            m.d.sync += self.o.valid.eq(1)
            m.d.sync += [self.o.payload[c].eq(self.a.payload[c] + self.b.payload[c])
                         for c in range(self.channels)]
        return m

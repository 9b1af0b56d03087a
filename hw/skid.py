"""A register slice that cuts both handshake paths of a stream: a skid buffer."""

from amaranth.hdl import Module, ShapeLike, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Pass a stream through registers: ``o.valid``, ``o.payload`` and ``i.ready`` all
    come from flip-flops, so no combinational path crosses it in either direction.

    Streaming cores take ``ready`` from their consumer combinationally (a stalled
    output stalls the whole core at once); down a chain of cores that path grows
    a LUT and a wire per core, and it is what limits the clock of a long
    pipeline. A skid buffer ends it: its ``ready`` says whether its second
    register (the skid) is empty, and that register catches the one beat that
    arrives in the cycle the consumer stalls. A beat a cycle goes through
    without a bubble; a beat spends one cycle in it, two after a stall.

    Members
    -------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    """

    #: Cycles a beat may spend in the buffer (one, or two when it waited in the skid).
    LATENCY = 2

    def __init__(self, shape: ShapeLike):
        self.shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        skid = Signal(self.shape, name="skid")
        full = Signal()                       # the skid holds a beat
        m.d.comb += self.i.ready.eq(~full)
        with m.If(~self.o.valid | self.o.ready):
            # The output register is free (or freed now): fill it, from the skid first.
            with m.If(full):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), full.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~full):
            # The output is stalled and a beat arrives: it waits in the skid.
            m.d.sync += [skid.eq(self.i.payload), full.eq(1)]
        return m

"""A FIFO with typed stream ports, over :class:`amaranth.lib.fifo.SyncFIFOBuffered`."""

from amaranth.hdl import Module, Shape, ShapeLike
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamFIFO"]


class StreamFIFO(wiring.Component):
    """First in, first out, ``depth`` beats of ``shape``.

    Both the ``ready`` of ``i`` and the ``valid`` of ``o`` come from registers, so a
    FIFO also cuts the combinational handshake path between the cores around it,
    except that the ``ready`` of ``o`` moves the level counter in the same cycle.
    It holds at least 3 beats: ``SyncFIFOBuffered`` of depth 1 or 2 cannot take a
    beat while full even as one leaves, and would pass one beat every 2 cycles.

    Members
    -------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    """

    def __init__(self, shape: ShapeLike, depth: int):
        self.shape, self.depth = shape, max(depth, 3)
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = q = fifo.SyncFIFOBuffered(width=Shape.cast(self.shape).width,
                                                      depth=self.depth)
        m.d.comb += [
            q.w_data.eq(self.i.payload), q.w_en.eq(self.i.valid), self.i.ready.eq(q.w_rdy),
            self.o.payload.eq(q.r_data), self.o.valid.eq(q.r_rdy), q.r_en.eq(self.o.ready),
        ]
        return m

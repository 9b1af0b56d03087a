"""Beats of integer lanes to and from a stream of bytes.

The byte format, shared by both directions and by the host (``boards/host.py``):
a beat of ``n`` lanes is ``n * ceil(width / 8)`` bytes, lane 0 first; each lane
is ``ceil(width / 8)`` bytes of its value in two's complement, least significant
byte first. A signed lane is sign-extended to whole bytes, an unsigned one
zero-extended.
"""

from amaranth.hdl import Cat, Module, Shape, ShapeLike, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .lanes import lanes

__all__ = ["BytesToLanes", "LanesToBytes", "lane_bytes"]


def lane_bytes(shape):
    """Bytes one lane of ``shape`` takes on the wire."""
    return -(-Shape.cast(shape).width // 8)


class BytesToLanes(wiring.Component):
    """Assemble beats of ``n`` lanes of ``shape`` from a stream of bytes.

    Accepts one byte per cycle and presents a beat the cycle after its last
    byte arrives. Of each lane's bytes only the low ``width`` bits are kept, so
    the extension bits the sender put above them do not matter.

    Members
    -------
    i : In(stream.Signature(8))
    o : Out(stream.Signature(lanes(shape, n)))
    """

    def __init__(self, shape: ShapeLike, n: int):
        self.shape, self.n = Shape.cast(shape), n
        self.bytes_per_beat = n * lane_bytes(shape)
        super().__init__({"i": In(stream.Signature(8)),
                          "o": Out(stream.Signature(lanes(shape, n)))})

    def elaborate(self, platform):
        m = Module()
        total = self.bytes_per_beat
        width, per_lane = self.shape.width, lane_bytes(self.shape) * 8
        buf = Signal(8 * total)
        count = Signal(range(total))

        # The beat is read straight from the shift register, which holds still
        # while it waits: a byte is taken only when the beat is gone or going.
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        m.d.comb += [self.o.payload[c].eq(buf[c * per_lane:c * per_lane + width])
                     for c in range(self.n)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            # Bytes enter at the top and move down, so the first byte ends in
            # the low bits: little-endian, lane 0 first.
            m.d.sync += buf.eq(Cat(buf[8:], self.i.payload) if total > 1 else self.i.payload)
            with m.If(count == total - 1):
                m.d.sync += [count.eq(0), self.o.valid.eq(1)]
            with m.Else():
                m.d.sync += count.eq(count + 1)
        return m


class LanesToBytes(wiring.Component):
    """Split beats of ``n`` lanes of ``shape`` into a stream of bytes.

    Sends one byte per cycle; the next beat is taken as its predecessor's last
    byte leaves, so beats follow each other without a gap.

    Members
    -------
    i : In(stream.Signature(lanes(shape, n)))
    o : Out(stream.Signature(8))
    """

    def __init__(self, shape: ShapeLike, n: int):
        self.shape, self.n = Shape.cast(shape), n
        self.bytes_per_beat = n * lane_bytes(shape)
        super().__init__({"i": In(stream.Signature(lanes(shape, n))),
                          "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        total = self.bytes_per_beat
        per_lane = lane_bytes(self.shape) * 8
        buf = Signal(8 * total)
        left = Signal(range(total + 1))

        # Assigning a lane to a wider signal extends it by its own signedness.
        wide = [Signal(per_lane, name=f"lane{c}") for c in range(self.n)]
        m.d.comb += [w.eq(self.i.payload[c]) for c, w in enumerate(wide)]

        # ``left == 0`` and ``left == 1`` as registers: ``i.ready`` is one LUT from them
        # and the load of ``buf``, as wide as a beat, one more.
        empty, one = Signal(init=1), Signal()
        m.d.comb += [self.o.valid.eq(~empty), self.o.payload.eq(buf[:8]),
                     self.i.ready.eq(empty | (one & self.o.ready))]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [buf.eq(buf >> 8), left.eq(left - 1), empty.eq(one), one.eq(left == 2)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [buf.eq(Cat(*wide)), left.eq(total), empty.eq(0), one.eq(int(total == 1))]
        return m

"""The stem of the layer engine: the first layer, computed as the input streams in.

A network's first convolution sees the largest maps (ResNet-18: 224 x 224 in,
112 x 112 out). Storing either would take most of the block RAM, so the stem
runs as dataflow straight from the input stream: a line-buffered window over
the input feeds the MAC bank, and the requantized outputs pass through a
line-buffered max pool before anything is written to memory.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..lanes import lanes

__all__ = ["StemFeeder", "Collector", "MapWriter"]


class StemFeeder(wiring.Component):
    """Turns each window of the stem into the MAC bank's beats.

    A window of ``k`` lanes (``hw.window.SlidingWindow``'s order) is cut into
    ``chunks`` chunks of ``simd`` lanes (the last one padded with zeros); every
    group ``gg`` of ``pe`` output channels gets all chunks, so one window gives
    ``groups * chunks`` beats. All of the stem's weights stay in the weight
    buffer: the beat of group ``gg``, chunk ``c`` reads word ``gg * chunks + c``.

    Members
    -------
    i : In(stream.Signature(lanes(shape, k)))
    o : Out(stream.Signature(StructLayout(x, widx, start, last, gg)))
    """

    def __init__(self, *, shape, k, simd, groups, weight_bits):
        self.k, self.simd, self.groups = k, simd, groups
        self.chunks = -(-k // simd)
        self.beat_layout = data.StructLayout({
            "x": lanes(shape, simd),
            "widx": unsigned(weight_bits),
            "start": 1, "last": 1,
            "gg": unsigned(max(groups - 1, 1).bit_length()),
        })
        super().__init__({"i": In(stream.Signature(lanes(shape, k))),
                          "o": Out(stream.Signature(self.beat_layout))})

    def elaborate(self, platform):
        m = Module()
        gg = Signal(range(self.groups))
        c = Signal(range(self.chunks))
        widx = Signal.like(self.o.payload.widx)
        last_c = c == self.chunks - 1
        last_g = gg == self.groups - 1
        p = self.o.payload
        with m.Switch(c):
            for n in range(self.chunks):
                with m.Case(n):
                    for s in range(self.simd):
                        lane = n * self.simd + s
                        if lane < self.k:
                            m.d.comb += p.x[s].eq(self.i.payload[lane])
        m.d.comb += [p.widx.eq(widx), p.start.eq(c == 0), p.last.eq(last_c), p.gg.eq(gg),
                     self.o.valid.eq(self.i.valid),
                     self.i.ready.eq(self.o.ready & last_c & last_g)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [c.eq(0) if self.chunks == 1 else c.eq(c + 1), widx.eq(widx + 1)]
            with m.If(last_c):
                m.d.sync += [c.eq(0), gg.eq(gg + 1)]
                with m.If(last_g):
                    m.d.sync += [gg.eq(0), widx.eq(0)]
        return m


class Collector(wiring.Component):
    """Gathers the ``groups`` results of ``pe`` lanes of one pixel into one beat.

    Members
    -------
    i : In(stream.Signature(StructLayout(value: lanes(in_shape, pe), gg)))
    o : Out(stream.Signature(lanes(out_shape, groups * pe)))
    """

    def __init__(self, *, in_layout, out_shape, pe, groups):
        self.pe, self.groups = pe, groups
        super().__init__({"i": In(stream.Signature(in_layout)),
                          "o": Out(stream.Signature(lanes(out_shape, groups * pe)))})

    def elaborate(self, platform):
        m = Module()
        last = self.i.payload.gg == self.groups - 1
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            with m.Switch(self.i.payload.gg):
                for g in range(self.groups):
                    with m.Case(g):
                        m.d.sync += [self.o.payload[g * self.pe + p].eq(self.i.payload.value[p])
                                     for p in range(self.pe)]
            with m.If(last):
                m.d.sync += self.o.valid.eq(1)
        return m


class MapWriter(wiring.Component):
    """Writes a map streamed in raster order into memory, ``words`` words per pixel.

    Members
    -------
    start : In(1)          begin a map at ``base`` (and count its ``pixels``)
    i : In(stream.Signature(lanes(shape, words * simd)))
    wr : Out(StructLayout(addr, data, en))
    done : Out(1)          every pixel of the map has been written
    """

    def __init__(self, *, shape, simd, words, pixels, base, addr_bits):
        self.simd, self.words, self.pixels, self.base = simd, words, pixels, base
        self.wr_layout = data.StructLayout({"addr": unsigned(addr_bits),
                                            "data": lanes(shape, simd), "en": 1})
        super().__init__({"start": In(1), "i": In(stream.Signature(lanes(shape, words * simd))),
                          "wr": Out(self.wr_layout), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        addr = Signal.like(self.wr.addr)
        w = Signal(range(self.words))
        left = Signal(range(self.pixels + 1))
        m.d.comb += self.done.eq(left == 0)
        with m.If(self.start):
            m.d.sync += [addr.eq(self.base), left.eq(self.pixels), w.eq(0)]
        last_w = w == self.words - 1
        m.d.comb += [self.i.ready.eq(last_w & (left != 0)), self.wr.addr.eq(addr),
                     self.wr.en.eq(self.i.valid & (left != 0))]
        with m.Switch(w):
            for n in range(self.words):
                with m.Case(n):
                    m.d.comb += [self.wr.data[s].eq(self.i.payload[n * self.simd + s])
                                 for s in range(self.simd)]
        with m.If(self.wr.en):
            m.d.sync += [addr.eq(addr + 1), w.eq(0 if self.words == 1 else w + 1)]
            with m.If(last_w):
                m.d.sync += [w.eq(0), left.eq(left - 1)]
        return m

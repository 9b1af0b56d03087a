"""The layer engine's loader: replays the stream's commands and routes what they decode."""

import enum

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["Loader", "Dest", "entry_layout"]


class Dest(enum.IntEnum):
    """Where the items of a command go."""
    WEIGHTS = 0        # the weight buffer, a group's words one after the other
    THRESHOLDS = 1     # the epilogue's tables: rows of `levels` thresholds, one row per lane
    BIAS = 2           # the bias registers, one per lane
    NONE = 3           # the decoder keeps them (its translation table)
    GROUP = 4          # no data: everything of one load group has been sent


def entry_layout(cmd_layout, *, beats_bits, table_bits, levels_bits):
    """One command of the schedule: what the decoder does, and where its output goes."""
    return data.StructLayout({
        "cmd": cmd_layout,
        "dest": unsigned(3),
        "beats": unsigned(beats_bits),      # output beats the command produces
        "base": unsigned(table_bits),       # THRESHOLDS: first table entry of the set
        "levels": unsigned(levels_bits),    # THRESHOLDS: thresholds per lane
    })


class Loader(wiring.Component):
    """Feeds the decoder its commands and puts what it decodes where the engine reads it.

    The compiler lists every command of an inference in ``entries`` (a ROM), in
    the order of the stream, grouped into load groups that a ``GROUP`` entry
    closes: all a group of output channels needs (thresholds, bias, weights),
    or all of a small layer that keeps its weights resident. Load group ``n``
    goes into half ``n % 2`` of the weight buffer, the epilogue's tables and the
    bias registers. Before the first command of group ``n`` the loader waits
    until the engine has finished with group ``n - 2`` (``released``), whose
    half it overwrites; after the ``GROUP`` entry it counts the group as
    ``loaded`` once every item has arrived. At the end of the ROM it starts
    over, and at its start it asks for the whole stream (``req``) in one read.

    Members
    -------
    req : Out(stream.Signature(StructLayout(addr, length)))   to the flash read port
    cmd : Out(stream.Signature(decoder.cmd_layout))            to the decoder
    w, t, b : In(stream.Signature(...))                        the decoder's outputs
    wbuf : Out(write port signals of the weight buffer)
    tw : Out(stream.Signature(threshold write))                to the epilogue
    bias : Out(ArrayLayout(ArrayLayout(acc, pe), 2))
    loaded : Out(group_bits)
    released : In(group_bits)
    """

    def __init__(self, *, entries, entry_layout, decoder, pe, words_per_half,
                 w_words_per_word, tw_layout, group_bits, flash_addr, flash_length, req_layout,
                 wbuf_addr_bits):
        self.entries = entries
        self.layout = entry_layout
        self.pe = pe
        self.words_per_half = words_per_half
        self.w_per_word = w_words_per_word        # decoder beats that fill one buffer word
        self.group_bits = group_bits
        self.flash_addr, self.flash_length = flash_addr, flash_length
        self.tw_layout = tw_layout
        b_shape = decoder.b_layout["value"].shape
        super().__init__({
            "req": Out(stream.Signature(req_layout)),
            "cmd": Out(stream.Signature(decoder.cmd_layout)),
            "w": In(stream.Signature(decoder.w_layout)),
            "t": In(stream.Signature(decoder.t_layout)),
            "b": In(stream.Signature(decoder.b_layout)),
            "wbuf_addr": Out(wbuf_addr_bits), "wbuf_col": Out(range(max(w_words_per_word, 2))),
            "wbuf_data": Out(decoder.w_layout["w"].shape), "wbuf_en": Out(1),
            "tw": Out(stream.Signature(tw_layout)),
            "bias": Out(data.ArrayLayout(data.ArrayLayout(b_shape, pe), 2)),
            "loaded": Out(group_bits), "released": In(group_bits),
        })

    def elaborate(self, platform):
        m = Module()
        n = len(self.entries)
        m.submodules.rom = rom = Memory(shape=self.layout, depth=n,
                                        init=[self.layout.const(e) for e in self.entries])
        # The entry in hand is a register, read from the block RAM a cycle ahead: the
        # RAM's clock-to-output is too slow for the logic the entry drives.
        rd = rom.read_port(domain="sync")
        fetch = Signal(range(n))                 # the entry to read next
        ahead_valid, ahead_last = Signal(), Signal()   # rd.data holds an entry (the last)
        e = Signal(self.layout)
        e_valid, e_last = Signal(), Signal()
        advance = Signal()                       # the entry in hand is done with
        load = advance | ~e_valid
        reading = load | ~ahead_valid
        m.d.comb += [rd.addr.eq(fetch), rd.en.eq(reading)]
        with m.If(reading):
            m.d.sync += [fetch.eq(Mux(fetch == n - 1, 0, fetch + 1)), ahead_valid.eq(1),
                         ahead_last.eq(fetch == n - 1)]
        with m.If(load):
            m.d.sync += [e.eq(rd.data), e_valid.eq(ahead_valid), e_last.eq(ahead_last)]

        group = Signal(self.group_bits)          # the load group being sent and routed
        half = group[0]
        requested = Signal()

        # The flash: one read of the whole stream per pass over the ROM.
        m.d.comb += [self.req.payload.addr.eq(self.flash_addr),
                     self.req.payload.length.eq(self.flash_length),
                     self.req.valid.eq(~requested)]
        with m.If(self.req.valid & self.req.ready):
            m.d.sync += requested.eq(1)

        # Items still to route, per destination, of the commands already sent.
        # Whether any is left is a register of its own, as the decoder's outputs are ready
        # by it. Its next value is picked by the handshakes (a command sent, an item
        # taken) from compares of the count and of the count plus the entry's beats,
        # which keeps the 24-bit add and compare off the path from the handshakes.
        w_left, t_left, b_left = Signal(24), Signal(24), Signal(24)
        w_any, t_any, b_any = Signal(), Signal(), Signal()
        sent = self.cmd.valid & self.cmd.ready
        w_took = self.w.valid & self.w.ready
        t_took = self.t.valid & self.t.ready
        b_took = self.b.valid & self.b.ready
        for left, any_, dest, took in ((w_left, w_any, Dest.WEIGHTS, w_took),
                                       (t_left, t_any, Dest.THRESHOLDS, t_took),
                                       (b_left, b_any, Dest.BIAS, b_took)):
            adds = sent & (e.dest == dest)
            more = Signal.like(left, name=f"{left.name}_more")
            m.d.comb += more.eq(left + e.beats)
            m.d.sync += [left.eq(Mux(adds, more - took, left - took)),
                         any_.eq(Mux(adds, Mux(took, more != 1, more != 0),
                                     Mux(took, left != 1, left != 0)))]

        # Commands. A group's half must be free (group - 2 released); a set of thresholds
        # waits until the one before it is routed, because it changes the routing.
        # `free` is a register, worked out for the group after this cycle's closing or
        # the same one; a release shows a cycle late (which only delays a command).
        free = Signal()
        is_group = e.dest == Dest.GROUP
        settled = ~w_any & ~t_any & ~b_any
        blocked = ((e.dest == Dest.THRESHOLDS) & t_any) | ((e.dest == Dest.BIAS) & b_any)
        m.d.comb += self.cmd.payload.eq(e.cmd)
        m.d.comb += self.cmd.valid.eq(e_valid & requested & ~is_group & free & ~blocked)
        closing = e_valid & requested & is_group & settled
        gb = self.group_bits
        m.d.sync += free.eq(Mux(closing, (group + 1 - self.released)[:gb] < 2,
                                (group - self.released)[:gb] < 2))
        m.d.comb += advance.eq(sent | closing)
        with m.If(advance & e_last):
            m.d.sync += requested.eq(0)
        with m.If(closing):
            m.d.sync += group.eq(group + 1)
        m.d.comb += self.loaded.eq(group)

        # Thresholds are routed by the set last sent (sets are routed one at a time).
        t_base = Signal.like(e.base)
        t_levels = Signal.like(e.levels)
        with m.If(sent & (e.dest == Dest.THRESHOLDS)):
            m.d.sync += [t_base.eq(e.base), t_levels.eq(e.levels)]

        # Weights: decoder beats fill buffer words column by column.
        col = Signal(range(max(self.w_per_word, 2)))
        word = Signal(range(self.words_per_half + 1))
        m.d.comb += self.w.ready.eq(w_any)
        m.d.comb += [self.wbuf_addr.eq(Mux(half, self.words_per_half, 0) + word),
                     self.wbuf_col.eq(col), self.wbuf_data.eq(self.w.payload.w),
                     self.wbuf_en.eq(w_took)]
        with m.If(w_took):
            with m.If(col == self.w_per_word - 1):
                m.d.sync += [col.eq(0), word.eq(word + 1)]
            with m.Else():
                m.d.sync += col.eq(col + 1)

        # Thresholds: a row of t_levels per lane.
        k = Signal.like(t_levels)
        lane = Signal(range(self.pe))
        tw = self.tw.payload
        m.d.comb += [tw.lane.eq(lane), tw.buf.eq(half), tw.addr.eq(t_base + k),
                     tw.value.eq(self.t.payload.value),
                     self.tw.valid.eq(self.t.valid & t_any),
                     self.t.ready.eq(self.tw.ready & t_any)]
        with m.If(t_took):
            with m.If(k == t_levels - 1):
                m.d.sync += [k.eq(0), lane.eq(Mux(lane == self.pe - 1, 0, lane + 1))]
            with m.Else():
                m.d.sync += k.eq(k + 1)

        # Biases: one per lane.
        b_lane = Signal(range(self.pe))
        m.d.comb += self.b.ready.eq(b_any)
        with m.If(b_took):
            m.d.sync += self.bias[half][b_lane].eq(self.b.payload.value)
            m.d.sync += b_lane.eq(Mux(b_lane == self.pe - 1, 0, b_lane + 1))

        with m.If(closing):
            m.d.sync += [word.eq(0), col.eq(0), k.eq(0), lane.eq(0), b_lane.eq(0)]
        return m

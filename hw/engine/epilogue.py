"""What a layer writes: accumulators requantized by run-time thresholds, skips added."""

import enum

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from .layouts import pick

__all__ = ["Epilogue", "Mode", "set_layout"]


class Mode(enum.IntEnum):
    """How an output is made from the bank's results (``acc0``, ``acc1``, ``skip``)."""
    RAW = 0      # acc0 itself (logits)
    Q = 1        # T1(acc0)
    QS = 2       # T3(T1(acc0) + skip): a residual add with the identity shortcut
    QQ = 3       # T3(T1(acc0) + T2(acc1)): a residual add with a projected shortcut


def set_layout(depth, levels_max, value_shape):
    """One threshold set of a step: where its table starts, its size and its lowest code."""
    return data.StructLayout({
        "base": unsigned(max(depth - 1, 1).bit_length()),
        "levels": unsigned(max(levels_max, 1).bit_length()),
        "steps": unsigned(max(levels_max, 1).bit_length().bit_length()),
        "lo": value_shape,
    })


class Epilogue(wiring.Component):
    """Per output lane: ``lo + #{k : v >= T[k]}`` over sorted thresholds loaded at run time.

    Every one of the ``pe`` lanes owns a table memory of ``2 * depth`` thresholds:
    two halves, so that the thresholds of the next group of output channels load
    (through ``tw``) while the current group uses the other half (the result's
    ``tag.buf`` picks it). A step's ``cfg`` gives the mode (:class:`Mode`) and up
    to three threshold sets (``T1``, ``T2``, ``T3``), each a region of the half
    with its number of thresholds, the search steps that count them
    (``levels.bit_length()``) and its lowest code.

    A search is binary: thresholds are sorted, so ``v >= T[k]`` holds for a prefix
    of ``k``; each step one comparison against the threshold that the bits found
    so far select fixes one bit of the count. A step is :attr:`CYCLES_PER_STEP`
    cycles (the block-RAM read into a register, then the compare, which picks the
    next address), so a set of ``L`` thresholds takes ``2 * L.bit_length() + 2``
    cycles (one to address its first threshold, one to finish) and one comparator
    per lane, whatever ``L``; a result takes :meth:`cycles`.
    ``cfg`` must hold still while results of its step pass.

    Parameters
    ----------
    pe : lanes
    acc_width : width of the bank's signed accumulators
    skip_shape : shape of a skip value
    accumulators : 1 or 2 (``QQ`` needs 2)
    depth : thresholds per lane in one half of the table
    levels_max : the most thresholds a set may have
    tag_shape : the bank's tag, a StructLayout with a one-bit ``buf`` field and optionally
        ``tbase``, an offset added to every set's base (a layer whose groups share a half)

    Members
    -------
    i : In(stream.Signature(StructLayout(acc, skip, tag)))
    tw : In(stream.Signature(StructLayout(lane, buf, addr, value)))
    cfg : In(StructLayout(mode, sets))
    o : Out(stream.Signature(StructLayout(value, tag)))
    """

    #: Cycles of one search step: the block-RAM read, then the compare.
    CYCLES_PER_STEP = 2

    def __init__(self, *, pe, acc_width, skip_shape, accumulators, depth, levels_max,
                 tag_shape):
        self.pe, self.acc_width, self.accumulators = pe, acc_width, accumulators
        self.depth, self.levels_max = depth, levels_max
        acc = signed(acc_width)
        self.value_shape = acc
        self.in_layout = data.StructLayout({
            "acc": data.ArrayLayout(data.ArrayLayout(acc, pe), accumulators),
            "skip": data.ArrayLayout(skip_shape, pe),
            "tag": tag_shape,
        })
        # A threshold may lie one above the largest accumulator ("never reached").
        self.tw_layout = data.StructLayout({
            "lane": unsigned(max(pe - 1, 1).bit_length()), "buf": 1,
            "addr": unsigned(max(depth - 1, 1).bit_length()), "value": signed(acc_width + 1),
        })
        self.set_layout = set_layout(depth, levels_max, acc)
        self.cfg_layout = data.StructLayout({
            "mode": unsigned(2),
            "sets": data.ArrayLayout(self.set_layout, 3),
        })
        self.out_layout = data.StructLayout({
            "value": data.ArrayLayout(acc, pe), "tag": tag_shape,
        })
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "tw": In(stream.Signature(self.tw_layout)),
            "cfg": In(self.cfg_layout),
            "o": Out(stream.Signature(self.out_layout)),
        })

    @staticmethod
    def cycles(steps):
        """Cycles per result when nothing stalls, ``steps`` the search steps of each set."""
        return 2 + sum(Epilogue.CYCLES_PER_STEP * s + 2 for s in steps)

    def elaborate(self, platform):
        m = Module()
        pe, acc_w = self.pe, self.acc_width
        cfg = self.cfg
        held = Signal(self.in_layout)
        phase = Signal(2)            # set being searched: 0 (T1), 1 (T2), 2 (T3)
        step = Signal(range(self.levels_max.bit_length() + 1))
        value = [Signal(signed(acc_w + 1), name=f"v{p}") for p in range(pe)]
        count = [Signal(unsigned(self.levels_max.bit_length()), name=f"count{p}")
                 for p in range(pe)]
        first_v = [Signal(signed(acc_w + 1), name=f"v1_{p}") for p in range(pe)]
        threshold = [Signal(signed(acc_w + 1), name=f"t{p}") for p in range(pe)]

        # The tables: one memory per lane, written by `tw`, read by the search.
        m.d.comb += self.tw.ready.eq(1)
        reads = []
        for p in range(pe):
            mem = Memory(shape=signed(acc_w + 1), depth=2 * self.depth, init=[])
            m.submodules[f"table{p}"] = mem
            wr = mem.write_port()
            m.d.comb += [wr.addr.eq(Mux(self.tw.payload.buf, self.depth, 0) + self.tw.payload.addr),
                         wr.data.eq(self.tw.payload.value),
                         wr.en.eq(self.tw.valid & (self.tw.payload.lane == p))]
            reads.append(mem.read_port(domain="sync"))

        # The set being searched, in registers loaded once per set: where it starts in
        # the lane tables (the half, the group's offset and the set's base, added), its
        # levels and its lowest code.
        tag_fields = self.in_layout["tag"].shape
        has_tbase = isinstance(tag_fields, data.StructLayout) and "tbase" in dict(iter(tag_fields))
        origin = Signal(range(3 * self.depth))
        levels = Signal.like(cfg.sets[0].levels)
        lo = Signal.like(cfg.sets[0].lo)

        def load_set(tag, set_):
            s = pick(cfg.sets, set_)
            return [origin.eq(Mux(tag.buf, self.depth, 0) + (tag.tbase if has_tbase else 0)
                              + s.base),
                    levels.eq(s.levels), lo.eq(s.lo), step.eq(s.steps - 1)]

        # The bits counted so far all lie above `step`, so the candidate (count + 2**step)
        # and its table index (candidate - 1) are ORs, not adds. While a compare decides,
        # the next step's two possible addresses are ready, and it only picks one.
        below = Signal.like(count[0])
        m.d.comb += below.eq((1 << step) - 1)
        bit = Signal.like(count[0])
        m.d.comb += bit.eq(1 << step)
        take = [Signal(name=f"take{p}") for p in range(pe)]
        for p in range(pe):
            m.d.comb += take[p].eq(((count[p] | bit) <= levels) & (value[p] >= threshold[p]))
            m.d.comb += reads[p].addr.eq(origin + (count[p] | below))
        nxt_addr = [Mux(take[p], origin + (count[p] | bit | (below >> 1)),
                        origin + (count[p] | (below >> 1))) for p in range(pe)]

        mode = cfg.mode
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += held.eq(self.i.payload)
                    m.d.sync += [value[p].eq(self.i.payload.acc[0][p]) for p in range(pe)]
                    m.d.sync += [count[p].eq(0) for p in range(pe)]
                    m.d.sync += [phase.eq(0)] + load_set(self.i.payload.tag, 0)
                    with m.If(mode == Mode.RAW):
                        m.next = "OUT"
                    with m.Else():
                        m.next = "ISSUE"
            # A search step is two cycles, so that no path joins the table's read (slow
            # out of block RAM) and the wide compare; the compare picks the next address.
            with m.State("ISSUE"):
                m.d.comb += [reads[p].en.eq(1) for p in range(pe)]
                m.next = "READ"
            with m.State("READ"):
                m.d.sync += [threshold[p].eq(reads[p].data) for p in range(pe)]
                m.next = "COMPARE"
            with m.State("COMPARE"):
                m.d.sync += [count[p].eq(Mux(take[p], count[p] | bit, count[p]))
                             for p in range(pe)]
                m.d.sync += step.eq(step - 1)
                with m.If(step != 0):
                    m.d.comb += [reads[p].en.eq(1) for p in range(pe)]
                    m.d.comb += [reads[p].addr.eq(nxt_addr[p]) for p in range(pe)]
                    m.next = "READ"
                with m.Else():
                    m.next = "COUNTED"
            with m.State("COUNTED"):
                # This set is counted: its code is lo + count.
                code = [Signal(signed(acc_w + 1), name=f"code{p}") for p in range(pe)]
                m.d.comb += [code[p].eq(lo + count[p]) for p in range(pe)]
                more = Signal()
                nphase = Signal.like(phase)
                nvalue = [Signal(signed(acc_w + 1), name=f"nvalue{p}") for p in range(pe)]
                with m.Switch(phase):
                    with m.Case(0):
                        with m.Switch(mode):
                            with m.Case(Mode.QS):
                                m.d.comb += [more.eq(1), nphase.eq(2)]
                                m.d.comb += [nvalue[p].eq(code[p] + held.skip[p])
                                             for p in range(pe)]
                            with m.Case(Mode.QQ):
                                m.d.comb += [more.eq(1), nphase.eq(1)]
                                if self.accumulators > 1:
                                    m.d.comb += [nvalue[p].eq(held.acc[1][p])
                                                 for p in range(pe)]
                    with m.Case(1):
                        m.d.comb += [more.eq(1), nphase.eq(2)]
                        m.d.comb += [nvalue[p].eq(first_v[p] + code[p]) for p in range(pe)]
                m.d.sync += [first_v[p].eq(code[p]) for p in range(pe)]
                with m.If(more):
                    m.d.sync += [phase.eq(nphase)] + load_set(held.tag, nphase)
                    m.d.sync += [value[p].eq(nvalue[p]) for p in range(pe)]
                    m.d.sync += [count[p].eq(0) for p in range(pe)]
                    m.next = "ISSUE"
                with m.Else():
                    m.d.sync += [value[p].eq(code[p]) for p in range(pe)]
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"
        m.d.comb += [self.o.payload.value[p].eq(value[p]) for p in range(pe)]
        m.d.comb += self.o.payload.tag.eq(held.tag)
        return m

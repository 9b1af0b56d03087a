"""The layer engine's bank of run-time multiplier-free MACs."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..adder_tree import AdderTree
from ..fifo import StreamFIFO
from .layouts import DigitFormat, weight_layout

__all__ = ["MacBank"]


class MacBank(wiring.Component):
    """``pe`` output channels times ``simd`` input lanes of MACs whose weights arrive at run time.

    Each beat on ``i`` carries ``simd`` activations ``x`` and ``pe * simd``
    weights ``w`` (weight of output ``p`` for lane ``s`` at ``p * simd + s``), in
    the digit form of :class:`~hw.engine.layouts.DigitFormat`. A MAC beat adds
    ``sum_s w[p, s] * x[s]`` into accumulator ``acc`` of every output ``p``; with
    ``start`` the accumulator begins from ``bias[p]`` instead of its old value.
    A ``skip`` beat computes nothing and keeps lanes ``skip_at * pe + p`` of ``x``
    as the outputs' skip values (a residual operand read from memory). After a
    beat with ``last``, ``o`` carries every accumulator and the skip values.

    The pipeline never stalls: a beat is taken whenever the output queue has
    room for every result still in flight, so ``i.ready`` is a register and no
    enable fans out over the adder trees. Products are digits: a shift, a
    conditional negation (``~x`` and a carry counted once per tree) and an add.
    The caller guarantees that no accumulator leaves ``acc_width`` bits.

    Parameters
    ----------
    pe, simd : outputs and input lanes per beat
    in_shape : shape of an activation lane
    fmt : :class:`~hw.engine.layouts.DigitFormat` of the weights
    acc_width : width of the signed accumulators
    accumulators : accumulators per output (two for a fused residual projection)
    levels_per_stage : adder-tree levels between pipeline registers
    tag_shape : what the caller attaches to a beat; the ``last`` beat's tag leaves with
        the results (where they go, which tables requantize them)

    Members
    -------
    i : In(stream.Signature(StructLayout(x, w, bias, start, last, acc, skip, skip_at, tag)))
    o : Out(stream.Signature(StructLayout(acc, skip, tag)))
    """

    def __init__(self, *, pe, simd, in_shape, fmt=DigitFormat(), acc_width, accumulators=1,
                 levels_per_stage=2, queue=None, tag_shape=1):
        self.pe, self.simd, self.fmt = pe, simd, fmt
        self.in_shape = in_shape
        self.acc_width, self.accumulators = acc_width, accumulators
        self.tree = AdderTree(acc_width, levels_per_stage)
        # Every term of a tree, plus the carries of its negated terms.
        self.levels = AdderTree.levels(simd * fmt.digits + 1)
        self.latency = self.tree.latency(self.levels) + 2
        self.queue = queue or self.latency + 2
        acc = signed(acc_width)
        self.in_layout = data.StructLayout({
            "x": data.ArrayLayout(in_shape, simd),
            "w": data.ArrayLayout(weight_layout(fmt), pe * simd),
            "bias": data.ArrayLayout(acc, pe),
            "start": 1, "last": 1, "skip": 1,
            "acc": unsigned(max(accumulators - 1, 0).bit_length() or 1),
            "skip_at": unsigned(max(simd // pe - 1, 0).bit_length() or 1),
            "tag": tag_shape,
        })
        self.out_layout = data.StructLayout({
            "acc": data.ArrayLayout(data.ArrayLayout(acc, pe), accumulators),
            "skip": data.ArrayLayout(in_shape, pe),
            "tag": tag_shape,
        })
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    def _terms(self, m, x_bits, w_bits, name):
        """The tree terms of one output: digits of ``w`` applied to ``x``, plus the carries.

        ``x_bits`` and ``w_bits`` are the raw bits of the beat's activations and of this
        output's ``simd`` weights: sliced by hand, because a View of a layout this large
        costs more to index than the logic costs to build.
        """
        fmt = self.fmt
        in_w = self.in_shape.width
        width = in_w + (0 if self.in_shape.signed else 1) + fmt.max_shift
        dw = 2 + fmt.shift_bits
        terms, negatives = [], []
        for s in range(self.simd):
            lane = x_bits[s * in_w:(s + 1) * in_w]
            lane = lane.as_signed() if self.in_shape.signed else lane
            for d in range(fmt.digits):
                base = (s * fmt.digits + d) * dw
                nz, neg = w_bits[base], w_bits[base + 1]
                wide = Signal(signed(width), name=f"{name}_x{s}_{d}")
                m.d.comb += wide.eq(lane << w_bits[base + 2:base + dw] if fmt.shift_bits
                                    else lane)
                # ~v = -v - 1: the +1 of every negated digit is added once per tree.
                terms.append((Mux(nz, Mux(neg, ~wide, wide), 0), False))
                negatives.append(nz & neg)
        carries = Signal(range(len(negatives) + 1), name=f"{name}_carries")
        m.d.comb += carries.eq(sum(negatives, Const(0, carries.shape())))
        return terms + [(carries, False)]

    def elaborate(self, platform):
        m = Module()
        pe, simd, accs = self.pe, self.simd, self.accumulators
        acc_shape = signed(self.acc_width)
        lt = self.tree.latency(self.levels)

        # Credits: results that may still enter the queue without overflowing it.
        m.submodules.queue = queue = StreamFIFO(self.out_layout, self.queue)
        in_flight = Signal(range(queue.depth + 1))
        take = self.i.valid & self.i.ready
        done = take & self.i.payload.last
        drained = queue.o.valid & queue.o.ready
        following = Signal.like(in_flight)
        m.d.comb += following.eq(in_flight + done - drained)
        m.d.sync += in_flight.eq(following)
        # A register, so that `ready` never waits on the trees.
        m.d.sync += self.i.ready.eq(following < queue.depth)
        wiring.connect(m, queue.o, wiring.flipped(self.o))

        # Stage 0: register the beat.
        beat = Signal(self.in_layout)
        valid = Signal()
        m.d.sync += [beat.eq(self.i.payload), valid.eq(take)]

        # One tree per output, `lt` cycles deep.
        x_bits, w_bits = beat.x.as_value(), beat.w.as_value()
        per_output = simd * self.fmt.bits
        partials = [self.tree.build(m, self._terms(m, x_bits,
                                                   w_bits[p * per_output:(p + 1) * per_output],
                                                   f"pe{p}"),
                                    name=f"pe{p}", levels=self.levels)
                    for p in range(pe)]
        # What the accumulators need travels beside the trees; the skip lanes are
        # picked now, so that only pe of the simd lanes ride along.
        ctl_layout = data.StructLayout({
            "bias": self.in_layout["bias"].shape, "start": 1, "last": 1, "skip": 1,
            "acc": self.in_layout["acc"].shape, "tag": self.in_layout["tag"].shape,
            "lanes": data.ArrayLayout(self.in_shape, pe)})
        ctl = Signal(ctl_layout)
        in_w = self.in_shape.width
        m.d.comb += [ctl.bias.eq(beat.bias), ctl.start.eq(beat.start), ctl.last.eq(beat.last),
                     ctl.skip.eq(beat.skip), ctl.acc.eq(beat.acc), ctl.tag.eq(beat.tag)]
        lane_bits = ctl.lanes.as_value()
        for p in range(pe):
            picked = x_bits[p * in_w:(p + 1) * in_w]
            for j in range(1, simd // pe):
                lane = (j * pe + p) * in_w
                picked = Mux(beat.skip_at == j, x_bits[lane:lane + in_w], picked)
            m.d.comb += lane_bits[p * in_w:(p + 1) * in_w].eq(picked)
        ctl_valid = valid
        for k in range(lt):
            nxt = Signal(ctl_layout, name=f"ctl_s{k}")
            nxt_valid = Signal(name=f"valid_s{k}")
            m.d.sync += [nxt.eq(ctl), nxt_valid.eq(ctl_valid)]
            ctl, ctl_valid = nxt, nxt_valid

        # Accumulate; on the last beat of an output, hand everything to the queue.
        acc = [[Signal(acc_shape, name=f"acc{a}_{p}") for p in range(pe)] for a in range(accs)]
        skip = [Signal(self.in_shape, name=f"skip{p}") for p in range(pe)]
        new = [[Signal(acc_shape, name=f"new{a}_{p}") for p in range(pe)] for a in range(accs)]
        new_skip = [Signal(self.in_shape, name=f"new_skip{p}") for p in range(pe)]
        bias = ctl.bias.as_value()
        aw = self.acc_width
        for p in range(pe):
            for a in range(accs):
                init = bias[p * aw:(p + 1) * aw].as_signed() if a == 0 else Const(0, acc_shape)
                mine = (ctl.acc == a) & ~ctl.skip
                base = Mux(ctl.start, init, acc[a][p])
                m.d.comb += new[a][p].eq(Mux(mine, (base + partials[p])[:aw], acc[a][p]))
            lane = ctl.lanes.as_value()[p * in_w:(p + 1) * in_w]
            m.d.comb += new_skip[p].eq(Mux(ctl.skip, lane, skip[p]))
        with m.If(ctl_valid):
            m.d.sync += [acc[a][p].eq(new[a][p]) for a in range(accs) for p in range(pe)]
            m.d.sync += [skip[p].eq(new_skip[p]) for p in range(pe)]
        m.d.comb += [queue.i.valid.eq(ctl_valid & ctl.last)]
        m.d.comb += queue.i.payload.acc.as_value().eq(Cat(*(new[a][p] for a in range(accs)
                                                            for p in range(pe))))
        m.d.comb += queue.i.payload.skip.as_value().eq(Cat(*new_skip))
        m.d.comb += queue.i.payload.tag.eq(ctl.tag)
        return m


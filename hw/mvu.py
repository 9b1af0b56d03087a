"""Matrix-vector units without multipliers.

Both units compute, for each input vector ``x`` of ``K`` lanes, the ``N``
accumulators ``acc[n] = bias[n] + sum_k W[n, k] * x[k]`` and, when thresholds
are given, emit the requantized codes ``lo + #{j : acc[n] >= T[n, j]}`` in place
of the accumulators. Every product is a sum of shifted copies of ``x[k]``, one
per canonical signed digit of ``W[n, k]`` (:mod:`hw.csd`): a ternary weight is
an add, a subtract or nothing; a power of two is a shift; an m-bit constant a
few shift-adds. No ``*`` appears in the generated logic.

With ``in_pow2`` the input lanes carry power-of-two activation codes ``c``
(value ``0`` if ``c == 0`` else ``2**(c-1)``). A product with a power-of-two
weight ``±2**s`` is then ``±((1 << (c + s)) >> 1)``: an exponent addition and
a single shift. Hard-wired, the addition with the constant ``s`` is wiring.

:class:`ConstantMVU` hard-wires the weights: the multiplies dissolve into one
adder tree per output, and a vector goes in every cycle.
:class:`RomMVU` keeps the weights in an on-chip ROM and folds the work onto
``pe`` output channels times ``simd`` input lanes per cycle, taking
``(N / pe) * (K / simd)`` cycles per vector.
"""

from collections.abc import Sequence

from amaranth.hdl import (Array, Cat, Const, Module, Mux, Shape, ShapeLike, Signal, Value,
                          signed, unsigned)
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .adder_tree import AdderTree
from .elementwise import pow2_value, threshold_code, threshold_latency
from .rom import varying_bits
from .csd import csd_digits, max_digits, max_shift
from .lanes import lanes

__all__ = ["ConstantMVU", "RomMVU", "RomLayout", "DigitEncoding"]


def _matrix(weights):
    rows = [[int(w) for w in row] for row in weights]
    if not rows or not rows[0] or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("weights must be a non-empty N x K matrix")
    return rows


def _threshold_table(thresholds, n):
    if thresholds is None:
        return None
    table = [[int(t) for t in row] for row in thresholds]
    if len(table) != n:
        raise ValueError(f"need one row of thresholds per output, got {len(table)} for {n}")
    return table


def _output_queue(m, o, depth, take):
    """Serve stream ``o`` from a queue of ``depth`` results; ``(queue, room)``.

    The caller writes each result into ``queue`` (``w_en``, ``w_data``) and accepts
    a vector (``take``) only with ``room``: the vectors accepted and not yet taken
    from the queue number less than its depth, so a write always finds room and
    the pipeline before it never waits."""
    m.submodules.queue = queue = SyncFIFO(width=Shape.cast(o.payload.shape()).width,
                                         depth=depth)
    owed = Signal(range(depth + 1))
    m.d.sync += owed.eq(owed + take - (queue.r_rdy & queue.r_en))
    m.d.comb += [o.valid.eq(queue.r_rdy), o.payload.eq(queue.r_data), queue.r_en.eq(o.ready)]
    return queue, owed != depth


class ConstantMVU(wiring.Component):
    """Matrix-vector unit with hard-wired weights; one vector per cycle.

    Parameters
    ----------
    weights : N x K integers
    in_shape : shape of an input lane
    acc_width : width of the signed accumulator; the caller guarantees that no
        ``bias[n] + sum_k W[n, k] * x[k]`` leaves it
    bias : N integers or None
    thresholds : N rows of L non-decreasing integers, or None for raw accumulators
    out_shape : shape of an output lane (the accumulator shape if no thresholds)
    out_lo : the code of "below every threshold"
    levels_per_stage : adder levels between pipeline registers
    in_pow2 : the input lanes are power-of-two activation codes
    register_compares : end the threshold comparisons (or each search step) in a
        register (:func:`~hw.elementwise.threshold_code`): one more cycle of latency
        for a few thresholds, one per search step for many

    The pipeline never stalls: its registers load every cycle (no clock enable, no
    reset), and a vector leaves it into an output queue of ``latency + 1`` entries.
    ``i.ready`` is a count of the vectors accepted and not yet taken from the queue
    against its depth, so a vector is accepted only when the queue will have room
    for it. A stall of ``o`` thus reaches no register of the adder trees: on a
    hard-wired layer a clock enable would fan out to thousands of them, and that
    net, not the adders, would set the clock.

    Members
    -------
    i : In(stream.Signature(lanes(in_shape, K)))
    o : Out(stream.Signature(lanes(out_shape, N)))
    """

    def __init__(self, weights: Sequence[Sequence[int]], *, in_shape: ShapeLike, acc_width: int,
                 bias: Sequence[int] | None = None,
                 thresholds: Sequence[Sequence[int]] | None = None,
                 out_shape: ShapeLike | None = None, out_lo: int = 0,
                 levels_per_stage: int | None = 3, in_pow2: bool = False,
                 register_compares: bool = True):
        self.weights = _matrix(weights)
        self.register_compares = register_compares
        self.in_pow2 = in_pow2
        self.n, self.k = len(self.weights), len(self.weights[0])
        self.bias = [int(b) for b in bias] if bias is not None else [0] * self.n
        self.thresholds = _threshold_table(thresholds, self.n)
        self.acc_shape = signed(acc_width)
        self.out_lo = out_lo
        out_shape = out_shape if out_shape is not None else self.acc_shape
        self.tree = AdderTree(acc_width, levels_per_stage)
        self.levels = max(AdderTree.levels(self._terms_count(n)) for n in range(self.n))
        self.compare_latency = (0 if self.thresholds is None else
                                threshold_latency(len(self.thresholds[0]), register_compares))
        super().__init__({
            "i": In(stream.Signature(lanes(in_shape, self.k))),
            "o": Out(stream.Signature(lanes(out_shape, self.n))),
        })

    def _terms_count(self, n):
        return sum(len(csd_digits(w)) for w in self.weights[n]) + (self.bias[n] != 0)

    @property
    def latency(self):
        """Cycles from accepting a vector to presenting its result."""
        return self.tree.latency(self.levels) + self.compare_latency + 1

    @property
    def queue_depth(self):
        """Entries of the output queue: every vector in the pipeline and one more, so
        that an output taken every cycle lets a vector in every cycle."""
        return self.latency + 1

    def elaborate(self, platform):
        m = Module()
        take = self.i.valid & self.i.ready
        queue, room = _output_queue(m, self.o, self.queue_depth, take)
        m.d.comb += self.i.ready.eq(room)

        # A pow2 code decodes once per lane; each weight digit then adds its shift to
        # the exponent, which for a constant is wiring.
        xs = [pow2_value(self.i.payload[k]) if self.in_pow2 else self.i.payload[k]
              for k in range(self.k)]
        results = []
        for n, row in enumerate(self.weights):
            terms = [(xs[k] << shift, neg)
                     for k, w in enumerate(row) for neg, shift in csd_digits(w)]
            if self.bias[n]:
                terms.append((Const(self.bias[n]), False))
            acc = self.tree.build(m, terms, name=f"acc{n}", levels=self.levels)
            results.append(acc if self.thresholds is None
                           else threshold_code(acc, self.thresholds[n], self.out_lo, m,
                                               name=f"code{n}",
                                               en=Const(1) if self.register_compares else None))

        valid = take
        for stage in range(self.tree.latency(self.levels) + self.compare_latency):
            v = Signal(name=f"valid_s{stage}")
            m.d.sync += v.eq(valid)
            valid = v
        payload = Signal(self.o.payload.shape())
        m.d.comb += [payload[n].eq(r) for n, r in enumerate(results)]
        m.d.comb += [queue.w_en.eq(valid), queue.w_data.eq(payload.as_value())]
        return m


class DigitEncoding:
    """How :class:`RomMVU` stores a weight: ``digits`` fields of ``(nz, neg, shift)``.

    A weight is the sum over its fields of ``nz ? (neg ? -1 : 1) << shift : 0``.
    """

    def __init__(self, weights_flat: Sequence[int]):
        self.digits = max(max_digits(weights_flat), 1)
        self.shift_bits = ceil_log2(max_shift(weights_flat) + 1)
        self.field_bits = 2 + self.shift_bits

    @property
    def weight_bits(self):
        return self.digits * self.field_bits

    def encode(self, w):
        word = 0
        for d, (neg, shift) in enumerate(csd_digits(w)):
            field = 1 | (int(neg) << 1) | (shift << 2)
            word |= field << (d * self.field_bits)
        return word


class RomLayout:
    """What :class:`RomMVU` keeps in its ROMs, and how the words are laid out.

    The weight ROM has one word per cycle of a vector, address ``nf * SF + sf``,
    holding the :class:`DigitEncoding` of the weights of ``pe`` outputs times
    ``simd`` inputs (lane ``p * simd + s``). The thresholds are in one ROM per
    search step and lane (:meth:`threshold_roms`), or, without registered
    comparisons, in one ROM with a word per group of ``pe`` outputs. Kept apart
    from the core so that a compiler can write the same words into image files
    without building the hardware.
    """

    def __init__(self, weights: Sequence[Sequence[int]], *, pe: int, simd: int, acc_width: int,
                 thresholds: Sequence[Sequence[int]] | None = None, register_compares=True):
        self.weights = _matrix(weights)
        self.register_compares = register_compares
        self.n, self.k = len(self.weights), len(self.weights[0])
        if self.n % pe or self.k % simd:
            raise ValueError(f"pe={pe} must divide N={self.n} and simd={simd} must divide "
                             f"K={self.k}")
        self.pe, self.simd = pe, simd
        self.nf, self.sf = self.n // pe, self.k // simd
        self.thresholds = _threshold_table(thresholds, self.n)
        self.encoding = DigitEncoding([w for row in self.weights for w in row])
        if self.thresholds is not None:
            flat = [t for row in self.thresholds for t in row]
            self.th_shape = signed(max(acc_width,
                                       *(Const.cast(t).shape().width + 1 for t in flat)))

    def weight_rom(self):
        """``(word_bits, words)`` of the weight ROM."""
        enc = self.encoding
        words = []
        for nf in range(self.nf):
            for sf in range(self.sf):
                word = 0
                for p in range(self.pe):
                    for s in range(self.simd):
                        w = self.weights[nf * self.pe + p][sf * self.simd + s]
                        word |= enc.encode(w) << ((p * self.simd + s) * enc.weight_bits)
                words.append(word)
        return self.pe * self.simd * enc.weight_bits, words

    def negative_digits(self):
        """Per output channel, how many of its weights' digits are negative: the ``+1``
        each of their one's complement negations leaves out (``RomMVU._product``)."""
        return [sum(int(neg) for w in row for neg, _ in csd_digits(w)) for row in self.weights]

    def threshold_rom(self):
        """``(word_bits, words)`` of the threshold ROM, or None without thresholds."""
        if self.thresholds is None:
            return None
        tw = self.th_shape.width
        levels = len(self.thresholds[0])
        words = []
        for nf in range(self.nf):
            word = 0
            for p in range(self.pe):
                for j, t in enumerate(self.thresholds[nf * self.pe + p]):
                    word |= (t & ((1 << tw) - 1)) << ((p * levels + j) * tw)
            words.append(word)
        return self.pe * levels * tw, words

    @property
    def search_steps(self):
        """Steps of the pipelined search of the staircase, each reading the threshold
        it compares with from a small ROM per lane (:meth:`threshold_roms`), or None
        when the comparisons are not registered (one ROM, every threshold compared)."""
        if self.thresholds is None or not self.register_compares:
            return None
        return len(self.thresholds[0]).bit_length()

    def step_candidates(self, j):
        """Positions of the thresholds search step ``j`` (bit ``j`` of the count) may
        compare against: ``i + 2**j - 1`` for ``i`` a multiple of ``2**(j+1)``."""
        levels = len(self.thresholds[0])
        return [i + (1 << j) - 1 for i in range(0, levels, 2 << j) if i + (1 << j) - 1 < levels]

    def threshold_roms(self):
        """``[(suffix, word_bits, words)]``: the threshold ROM (suffix ``""``) or, for a
        pipelined search, one ROM per step and lane (suffix ``_s<j>_p<p>``, step ``j``
        sets bit ``j`` of the count, from the highest). Such a ROM holds one threshold
        a word, at address ``group * 2**(steps - 1 - j) + (count >> (j + 1))``: the
        count found so far picks the candidate by addressing the ROM, so a lane reads
        the one threshold it compares with and no multiplexer picks among them. A slot
        past the last candidate holds 0 and is never compared."""
        if self.thresholds is None:
            return []
        steps = self.search_steps
        if steps is None:
            return [("", *self.threshold_rom())]
        tw = self.th_shape.width
        roms = []
        for j in reversed(range(steps)):
            cands = self.step_candidates(j)
            slots = 1 << (steps - 1 - j)
            for p in range(self.pe):
                words = []
                for nf in range(self.nf):
                    row = self.thresholds[nf * self.pe + p]
                    words += [row[cands[c]] & ((1 << tw) - 1) if c < len(cands) else 0
                              for c in range(slots)]
                roms.append((f"_s{j}_p{p}", tw, words))
        return roms


class RomMVU(wiring.Component):
    """Matrix-vector unit with weights in ROM, folded onto ``pe`` x ``simd`` lanes.

    Each cycle it reads one ROM word holding the weights of ``pe`` output
    channels for ``simd`` input lanes, and adds their products into ``pe``
    accumulators; a vector takes ``(N // pe) * (K // simd)`` cycles. The next
    vector is accepted on the last cycle of the current one, so a stream of
    vectors flows at exactly that rate. As in :class:`ConstantMVU`, nothing after
    the input ever stalls: a vector is accepted only when the output queue
    (:attr:`queue_depth` results) will have room for its result. Requantization,
    if thresholds are given, is a binary search of each finished channel's
    staircase, a registered step per bit of the code, each lane reading the one
    threshold it compares with from a small ROM of its own. The ROM contents are
    :class:`RomLayout`'s.

    Parameters are those of :class:`ConstantMVU`, plus ``pe`` (divides N) and
    ``simd`` (divides K). ``levels_per_stage`` pipelines the adder tree over the
    ``simd`` products, and with ``register_rom`` (the default) the weight word
    passes a register after the ROM, whose read is slow. Neither changes the rate.
    ``rom_style`` is passed to synthesis as the weight ROM's ``ram_style`` (``"block"``:
    in block RAM, however shallow; by default synthesis makes shallow ROMs logic).
    The word register after the ROM becomes the block RAM's output register. The
    threshold ROMs stay logic: they are read straight into the comparisons, and a
    block RAM's unregistered output (5.8 ns on the ECP5) leaves no time for them.

    Members
    -------
    i : In(stream.Signature(lanes(in_shape, K)))
    o : Out(stream.Signature(lanes(out_shape, N)))
    """

    def __init__(self, weights: Sequence[Sequence[int]], *, in_shape: ShapeLike, acc_width: int,
                 pe: int, simd: int, bias: Sequence[int] | None = None,
                 thresholds: Sequence[Sequence[int]] | None = None,
                 out_shape: ShapeLike | None = None, out_lo: int = 0, in_pow2: bool = False,
                 levels_per_stage: int | None = 3, register_compares: bool = True,
                 register_rom: bool = True, rom_style: str | None = None):
        self.in_pow2 = in_pow2
        self.rom_attrs = {"ram_style": rom_style} if rom_style else None
        self.levels_per_stage = levels_per_stage
        self.register_compares, self.register_rom = register_compares, register_rom
        self.layout = layout = RomLayout(weights, pe=pe, simd=simd, acc_width=acc_width,
                                         thresholds=thresholds,
                                         register_compares=register_compares)
        self.weights, self.thresholds = layout.weights, layout.thresholds
        self.n, self.k, self.pe, self.simd = layout.n, layout.k, pe, simd
        self.nf, self.sf = layout.nf, layout.sf
        self.encoding = layout.encoding
        self.bias = [int(b) for b in bias] if bias is not None else [0] * self.n
        self.in_shape = in_shape
        self.acc_shape = signed(acc_width)
        self.out_lo = out_lo
        out_shape = out_shape if out_shape is not None else self.acc_shape
        super().__init__({
            "i": In(stream.Signature(lanes(in_shape, self.k))),
            "o": Out(stream.Signature(lanes(out_shape, self.n))),
        })

    @property
    def cycles_per_vector(self):
        return self.nf * self.sf

    @property
    def tree_levels(self):
        return AdderTree.levels(self.simd * self.encoding.digits)

    @property
    def latency(self):
        """Cycles from accepting a vector to presenting its result, beyond the
        ``cycles_per_vector`` of its work: ROM read, word register, tree, accumulator,
        comparisons, output register."""
        tree = AdderTree(self.acc_shape.width, self.levels_per_stage).latency(self.tree_levels)
        compares = self.layout.search_steps or 0
        return 1 + int(self.register_rom) + tree + 1 + compares + 1

    def _product(self, x, wbits, zero=()):
        """``w * x`` as a sum of shifted, conditionally negated copies of ``x``.

        A negative digit is the one's complement of its copy (every bit flipped): the
        missing ``+1`` of each is a constant of the weights, added to the channel's
        bias (:meth:`RomLayout.negative_digits`). So a product is a LUT per bit, no
        carry chain, and synthesis merges it into the first adder of the tree. Pow2
        codes keep a true negation: whether their digit counts depends on the input
        (code 0 is zero whatever the weight). The digits in ``zero`` are zero in every
        word and make no term."""
        enc = self.encoding
        terms = []
        for d in range(enc.digits):
            if d in zero:
                continue
            field = wbits[d * enc.field_bits:(d + 1) * enc.field_bits]
            nz, neg, shift = field[0], field[1], field[2:]
            if self.in_pow2:
                # Exponent addition, then one shift: (1 << (c + s)) >> 1; code 0 is zero
                # whatever the weight's shift.
                shifted = pow2_value(x + shift if enc.shift_bits else x)
                nz = nz & (x != 0)
                terms.append(Mux(nz, Mux(neg, -shifted, shifted), 0))
                continue
            shifted = Value.cast((x << shift) if enc.shift_bits else x)
            sign = shifted[-1] if shifted.shape().signed else Const(0, 1)
            wide = Cat(shifted, sign)           # one bit more: -x - 1 fits
            terms.append(Cat(*((bit ^ neg) & nz for bit in wide)).as_signed())
        return terms

    @property
    def queue_depth(self):
        """Entries of the output queue: every vector whose result may still be on its
        way when the next is accepted back to back, and one more."""
        return self.latency // self.cycles_per_vector + 2

    def elaborate(self, platform):
        m = Module()
        acc_w = self.acc_shape.width
        enc = self.encoding
        # As in ConstantMVU, nothing after the input stalls: a vector is accepted only
        # when the output queue will have room for its result.
        take = self.i.valid & self.i.ready
        queue, room = _output_queue(m, self.o, self.queue_depth, take)

        # Stage 0: hold the vector, walk (nf, sf), address the ROM, pick the input chunk.
        x = Signal(lanes(self.in_shape, self.k), reset_less=True)
        busy = Signal()
        nf = Signal(range(self.nf), name="nf")
        sf = Signal(range(self.sf), name="sf")
        last_sf = sf == self.sf - 1
        addr = Signal(range(self.nf * self.sf), name="addr")     # nf * SF + sf, counted
        # (nf, sf) is the last pair: a register, so ``i.ready`` does not wait for the
        # counters' compares.
        at_end = Signal()
        last_issue = busy & at_end
        m.d.comb += self.i.ready.eq((~busy | last_issue) & room)
        with m.If(busy):
            m.d.sync += [sf.eq(Mux(last_sf, 0, sf + 1)), addr.eq(addr + 1),
                         at_end.eq(addr == self.nf * self.sf - 2)]
            with m.If(last_sf):
                m.d.sync += nf.eq(Mux(nf == self.nf - 1, 0, nf + 1))
        # x loads whenever its vector is done with (at its last issue the chunk register
        # takes the last chunk), taken or not: the enable of its K lanes is then a
        # register, ``~busy | at_end`` a cycle early, not the handshake.
        free = Signal(init=1)
        with m.If(take):
            m.d.sync += free.eq(self.nf * self.sf == 1)
        with m.Elif(busy):
            m.d.sync += free.eq(last_issue | (addr == self.nf * self.sf - 2))
        with m.Else():
            m.d.sync += free.eq(1)
        with m.If(free):
            m.d.sync += x.eq(self.i.payload)
        with m.If(take):
            m.d.sync += [busy.eq(1), nf.eq(0), sf.eq(0), addr.eq(0),
                         at_end.eq(self.nf * self.sf == 1)]
        with m.Elif(last_issue):
            m.d.sync += busy.eq(0)

        word_bits, words = self.layout.weight_rom()
        m.submodules.weights = wrom = Memory(shape=unsigned(word_bits), depth=len(words),
                                             init=words, attrs=self.rom_attrs)
        rd = wrom.read_port(domain="sync")
        m.d.comb += rd.addr.eq(addr)

        chunks = Array(Cat(*(x[c * self.simd + s] for s in range(self.simd)))
                       for c in range(self.sf))
        chunk = Signal(lanes(self.in_shape, self.simd), reset_less=True)
        s1_valid, s1_first, s1_last = Signal(), Signal(), Signal()
        s1_group = Signal.like(nf)
        m.d.sync += [chunk.as_value().eq(chunks[sf]), s1_valid.eq(busy),
                     s1_first.eq(sf == 0), s1_last.eq(last_sf), s1_group.eq(nf)]

        # The ROM's read is slow (a block RAM's output is not registered): with
        # register_rom its word and the chunk it goes with pass a register first.
        word = rd.data
        if self.register_rom:
            word = Signal.like(rd.data, name="word", reset_less=True)
            chunk_r = Signal(lanes(self.in_shape, self.simd), name="chunk_r", reset_less=True)
            staged = [Signal.like(v, name=f"{v.name}_r") for v in
                      (s1_valid, s1_first, s1_last, s1_group)]
            m.d.sync += [word.eq(rd.data), chunk_r.as_value().eq(chunk.as_value())]
            m.d.sync += [r.eq(v) for r, v in
                         zip(staged, (s1_valid, s1_first, s1_last, s1_group))]
            chunk, (s1_valid, s1_first, s1_last, s1_group) = chunk_r, staged
        # The bits no word changes are constants here. Left in the word's register,
        # every MVU's copy of such a bit holds the same value, so synthesis merges
        # them into one register wired across the die to all their adders.
        varying = varying_bits(words)
        if varying != (1 << word_bits) - 1:
            fixed = Signal.like(word, name="word_fixed")
            m.d.comb += fixed.eq((word & varying) | (words[0] & ~varying))
            word = fixed

        # Stage 1: products, their (pipelined) adder tree, and accumulation of pe channels.
        accs = [Signal(signed(acc_w), name=f"acc{p}") for p in range(self.pe)]
        res = [Signal(signed(acc_w), name=f"res{p}") for p in range(self.pe)]
        res_valid = Signal()
        res_group = Signal.like(nf)
        tree = AdderTree(acc_w, self.levels_per_stage)
        partials = []
        for p in range(self.pe):
            terms = []
            for s in range(self.simd):
                base = (p * self.simd + s) * enc.weight_bits
                zero = [d for d in range(enc.digits)
                        if not (varying | words[0]) >> (base + d * enc.field_bits) & 1]
                terms += [(t, False) for t in self._product(
                    chunk[s], word[base:base + enc.weight_bits], zero)]
            partials.append(tree.build(m, terms, name=f"mac{p}", levels=self.tree_levels))
        # The flags travel with the partial sums through the tree's registers.
        for stage in range(tree.latency(self.tree_levels)):
            staged = [Signal.like(v, name=f"{label}_t{stage}") for v, label in
                      zip((s1_valid, s1_first, s1_last, s1_group),
                          ("s1_valid", "s1_first", "s1_last", "s1_group"))]
            m.d.sync += [r.eq(v) for r, v in
                         zip(staged, (s1_valid, s1_first, s1_last, s1_group))]
            s1_valid, s1_first, s1_last, s1_group = staged
        bias = self.bias
        if not self.in_pow2:
            bias = [b + c for b, c in zip(bias, self.layout.negative_digits())]
        half = 1 << (acc_w - 1)          # the biases wrap as the accumulator does
        biases = [Array(Const((bias[g * self.pe + p] + half) % (2 * half) - half, signed(acc_w))
                        for g in range(self.nf)) for p in range(self.pe)]
        for p in range(self.pe):
            start = Mux(s1_first, biases[p][s1_group], accs[p])
            total = (start + partials[p])[:acc_w].as_signed()
            with m.If(s1_valid):
                m.d.sync += accs[p].eq(total)
                with m.If(s1_last):
                    m.d.sync += res[p].eq(total)
        m.d.sync += [res_valid.eq(s1_valid & s1_last), res_group.eq(s1_group)]

        # Stage 2: requantize the finished group and place it in the output beat.
        if self.thresholds is not None and self.layout.search_steps:
            outs, res_valid, res_group = self._search(m, res, res_valid, res_group)
        elif self.thresholds is not None:
            # Not pipelined: every threshold of the group from one ROM, compared at once.
            tw, twords = self.layout.th_shape.width, self.layout.threshold_rom()[1]
            levels = len(self.thresholds[0])
            m.submodules.thresholds = trom = Memory(
                shape=unsigned(self.pe * levels * tw), depth=len(twords), init=twords)
            trd = trom.read_port(domain="sync")
            m.d.comb += trd.addr.eq(s1_group)

            def row(p):
                return [trd.data[(p * levels + j) * tw:(p * levels + j + 1) * tw].as_signed()
                        for j in range(levels)]
            outs = [threshold_code(res[p], row(p), self.out_lo, m, name=f"code{p}")
                    for p in range(self.pe)]
        else:
            outs = res
        # Groups but the last wait in a register; the last joins them into the queue.
        held = Signal(self.o.payload.shape())
        vector = Signal(self.o.payload.shape())
        with m.If(res_valid):
            for g in range(self.nf - 1):
                with m.If(res_group == g):
                    m.d.sync += [held[g * self.pe + p].eq(outs[p]) for p in range(self.pe)]
        last = (self.nf - 1) * self.pe
        m.d.comb += [vector[j].eq(held[j]) for j in range(last)]
        m.d.comb += [vector[last + p].eq(outs[p]) for p in range(self.pe)]
        m.d.comb += [queue.w_en.eq(res_valid & (res_group == self.nf - 1)),
                     queue.w_data.eq(vector.as_value())]
        return m

    def _search(self, m, res, valid, group):
        """The pipelined binary search of the staircase: in step ``j`` each lane reads,
        from its own ROM, the candidate that its group and its count so far address,
        and compares; value, count and group move a register per step."""
        layout = self.layout
        bits = layout.search_steps
        counts = [Const(0, bits)] * self.pe
        values = res
        roms = iter(layout.threshold_roms())
        for j in reversed(range(bits)):
            n = len(layout.step_candidates(j))
            nxt_counts, nxt_values = [], []
            for p in range(self.pe):
                suffix, width, words = next(roms)
                rom = Memory(shape=unsigned(width), depth=len(words), init=words)
                m.submodules[f"thresholds{suffix}"] = rom
                rd = rom.read_port(domain="comb")
                slot = (counts[p] >> (j + 1))[:bits - 1 - j]
                m.d.comb += rd.addr.eq(Cat(slot, group))
                take = (slot < n) & (values[p] >= rd.data.as_signed())
                count = Signal(bits, name=f"code{p}_s{j}")
                value = Signal.like(res[p], name=f"code{p}_v{j}", reset_less=True)
                m.d.sync += [count.eq(Mux(take, counts[p] | (1 << j), counts[p])),
                             value.eq(values[p])]
                nxt_counts.append(count)
                nxt_values.append(value)
            v = Signal(name=f"res_valid_s{j}")
            g = Signal.like(group, name=f"res_group_s{j}")
            m.d.sync += [v.eq(valid), g.eq(group)]
            counts, values, valid, group = nxt_counts, nxt_values, v, g
        return [self.out_lo + c for c in counts], valid, group

"""The layer engine's stream decoder: flash bytes and commands in, weights, thresholds, biases out.

The data format is :mod:`hw.engine.packing`; this is its hardware reader.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..csd import small_product
from ..skid import SkidBuffer
from .layouts import DigitFormat, weight_layout
from .packing import Kind

__all__ = ["StreamDecoder", "command_layout", "fields_per_cycle"]


def command_layout(*, count_width, levels_max, positions_max, bits_max):
    """One command of the decoder (see :class:`StreamDecoder` for the fields)."""
    return data.StructLayout({
        "kind": Kind,
        "count": unsigned(count_width),
        "bits": unsigned(bits_max.bit_length()),
        "levels": unsigned(levels_max.bit_length()),
        "positions": unsigned(positions_max.bit_length()),
        "per_pos": unsigned(count_width),
        "replay": 1,
    })


def fields_per_cycle(b, lanes):
    """Codes of ``b`` bits a decoder of ``lanes`` lanes takes in one cycle: a byte's worth."""
    return min(lanes, 8, -(-8 // b))


def _pow2(n):
    return n >= 1 and n & (n - 1) == 0


# Byte -> five 2-bit ternary codes (0: 0, 1: +1, 2: -1); 3 in every lane for a byte above 242.
_TRIT5 = [sum(((v // 3 ** j) % 3) << (2 * j) for j in range(5)) if v < 243 else 0x3FF
          for v in range(256)]


class StreamDecoder(wiring.Component):
    """Turns the weight stream of :mod:`hw.engine.packing` into weights, thresholds, biases.

    Each command on ``c`` says what the next data in the flash stream ``i`` is
    (its kind and size, :func:`command_layout`); the decoder reads exactly that
    data, skips the pad bits that complete its last byte, and goes on with the
    next command. Commands are decoded in order and each one's data starts on a
    byte of ``i``. A command of count 0 has no data and does nothing.

    * ``TRIT5``, ``TERN2``, ``CODES``: ``count`` weights leave on ``w`` in beats of
      ``lanes`` weights (weight ``n`` of the command in lane ``n % lanes``). A
      command's weights start a new beat; its last beat has ``last`` set and
      ``nlanes`` weights (``lanes`` unless ``count`` is not a multiple of
      ``lanes``), the other lanes being zero. ``error`` marks a beat with an
      invalid weight (a TRIT5 byte above 242 or TERN2 code 3), which reads as
      zero. ``CODES`` codes index the translation table: entry ``code *
      positions + pos``, ``pos`` advancing every ``per_pos`` weights, which must
      then be a multiple of ``lanes``. With ``replay`` the data holds the codes
      of the first position of each block of ``positions * per_pos`` weights
      only, and ``count`` counts those codes (:meth:`command` sees to it).
    * ``TABLE``: ``count`` entries are written into the translation table. A KQ
      table (``positions`` > 1) is kept ``positions_max`` places per code, so
      that a code and a position address it without a multiplier. A ``TABLE``
      command waits until no code of an earlier weight command is left to read
      the old table.
    * ``THRESH``: ``count`` rows of ``levels`` thresholds of ``bits`` bits leave
      on ``t``, one per beat, sign-extended to ``t_width``.
    * ``BIAS``: ``count`` signed ``bits``-bit values leave on ``b``, one per beat.
    * ``SKIP``: ``count`` bytes are dropped. The decoder reads ahead, so a stream
      that the flash reader sends again (the next inference) must end on one of
      its words: the compiler pads it with a ``SKIP``.

    ``last`` on ``t`` and ``b`` marks a command's last value.

    Inside, bytes pass through a bit store (:class:`_BitStore`); every
    ``cycles_per_item`` cycles the item at its head (up to a byte's worth of
    codes, a threshold, a bias, a table entry) is decoded and taken if its
    destination has room (with 2, the cycle between registers the store's
    window, so that the loop from the bits taken to the next item is two short
    paths, for fast clocks; with 3, the decode's outcome is registered as well,
    and the last cycle only looks at the destination); codes go through a gearbox into beats
    (:class:`_Gearbox`) and a beat through the table (:class:`_Translate`). The
    next command waits in a register, so ``c.ready`` is a register too.

    Throughput, with ready outputs: an item every ``cycles_per_item`` cycles,
    that is a byte of ``i`` per item as 5 TRIT5 weights or ``min(lanes, 8,
    ceil(8 / b))`` ``b``-bit codes (:func:`fields_per_cycle`), or one threshold
    (a row whose first code escapes takes an item more), one bias or one table
    entry, as far as the input keeps up (:meth:`cycles`). Weight commands of a
    multiple of ``lanes`` weights follow each other without a bubble; a command
    of a single item costs an item more (its successor is fetched meanwhile).
    :meth:`check` tells whether a :class:`~hw.engine.packing.Command` suits this
    decoder; :meth:`command` gives its fields.

    Parameters
    ----------
    fmt : :class:`~hw.engine.layouts.DigitFormat` of the run-time weights.
    lanes : weights per ``w`` beat.
    word_bytes : bytes per ``i`` word (the flash reader's), the first in the low bits.
    table_depth : entries of the translation table (a power of two).
    positions_max : most KQ positions (a power of two; 1: no KQ).
    replay_beats : beats of codes a replayed position may have (0: no replay).
    t_width, b_width : widths of the thresholds and biases out.
    count_width : width of the ``count`` and ``per_pos`` fields.
    levels_max : most thresholds per row.
    cycles_per_item : 1; 2 to register the bit store's window before each decode; 3 to
        register the decode's outcome too.

    Members
    -------
    i : In(stream.Signature(ArrayLayout(unsigned(8), word_bytes)))
    c : In(stream.Signature(command_layout(...)))
    w : Out(stream.Signature(StructLayout(w, nlanes, last, error)))
    t : Out(stream.Signature(StructLayout(value, last)))
    b : Out(stream.Signature(StructLayout(value, last)))
    """

    def __init__(self, *, fmt=DigitFormat(), lanes=8, word_bytes=1, table_depth=64,
                 positions_max=1, replay_beats=0, t_width=24, b_width=24, count_width=24,
                 levels_max=255, cycles_per_item=2):
        problem = self._problem(lanes, word_bytes, table_depth, positions_max, replay_beats,
                                t_width, b_width, count_width, levels_max, cycles_per_item)
        if problem:
            self._MustUse__silence = True
            raise ValueError(f"StreamDecoder: {problem}")
        self.fmt, self.lanes, self.word_bytes = fmt, lanes, word_bytes
        self.cycles_per_item = cycles_per_item
        self.table_depth, self.positions_max, self.replay_beats = (table_depth, positions_max,
                                                                   replay_beats)
        self.t_width, self.b_width = t_width, b_width
        self.count_width, self.levels_max = count_width, levels_max
        self.addr_bits = (table_depth - 1).bit_length()
        self.pos_bits = (positions_max - 1).bit_length()
        # Codes are as wide as a table address, and never narrower than a ternary code.
        self.code_bits = max(2, self.addr_bits)
        self.bits_max = max(16, t_width, b_width)
        self.cmd_layout = command_layout(count_width=count_width, levels_max=levels_max,
                                         positions_max=positions_max, bits_max=self.bits_max)
        self.w_layout = data.StructLayout({
            "w": data.ArrayLayout(weight_layout(fmt), lanes),
            "nlanes": unsigned(lanes.bit_length()),
            "last": 1, "error": 1,
        })
        self.t_layout = data.StructLayout({"value": signed(t_width), "last": 1})
        self.b_layout = data.StructLayout({"value": signed(b_width), "last": 1})
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(8), word_bytes))),
            "c": In(stream.Signature(self.cmd_layout)),
            "w": Out(stream.Signature(self.w_layout)),
            "t": Out(stream.Signature(self.t_layout)),
            "b": Out(stream.Signature(self.b_layout)),
        })

    @staticmethod
    def _problem(lanes, word_bytes, table_depth, positions_max, replay_beats, t_width, b_width,
                 count_width, levels_max, cycles_per_item):
        if lanes < 1:
            return f"lanes must be 1 or more, not {lanes}"
        if word_bytes < 1:
            return f"word_bytes must be 1 or more, not {word_bytes}"
        if not _pow2(table_depth) or table_depth < 2:
            return f"table_depth must be a power of two, 2 or more, not {table_depth}"
        if not _pow2(positions_max) or positions_max > table_depth:
            return f"positions_max must be a power of two up to table_depth, not {positions_max}"
        if replay_beats < 0:
            return f"replay_beats must be 0 or more, not {replay_beats}"
        if t_width < 2 or b_width < 1:
            return f"need t_width >= 2 and b_width >= 1, not {t_width}, {b_width}"
        if count_width < 1 or levels_max < 1:
            return f"need count_width >= 1 and levels_max >= 1, not {count_width}, {levels_max}"
        if cycles_per_item not in (1, 2, 3):
            return f"cycles_per_item must be 1, 2 or 3, not {cycles_per_item}"
        return None

    # The Python side ----------------------------------------------------------------

    def check(self, cmd):
        """Why this decoder cannot run ``cmd`` (a sentence), or None."""
        k, g = cmd.kind, self.lanes
        count = cmd.codes if k == Kind.CODES else cmd.count
        if count >= 1 << self.count_width:
            return f"count {count} needs more than count_width = {self.count_width} bits"
        if k == Kind.CODES:
            code_bits = self.addr_bits - (self.pos_bits if cmd.positions > 1 else 0)
            if cmd.bits > code_bits:
                return (f"{cmd.bits}-bit codes do not fit a table of {self.table_depth} entries"
                        + (f" at {self.positions_max} positions" if cmd.positions > 1 else ""))
        if k in (Kind.CODES, Kind.TABLE) and cmd.positions > self.positions_max:
            return f"{cmd.positions} positions, more than positions_max = {self.positions_max}"
        if k == Kind.CODES and cmd.positions > 1:
            if cmd.per_pos % g:
                return f"per_pos ({cmd.per_pos}) must be a multiple of lanes ({g})"
            if cmd.per_pos >= 1 << self.count_width:
                return f"per_pos {cmd.per_pos} needs more than count_width bits"
        if cmd.replay and cmd.per_pos // g > self.replay_beats:
            return (f"replay of {cmd.per_pos} codes per position needs {cmd.per_pos // g} "
                    f"beats, more than replay_beats = {self.replay_beats}")
        if k == Kind.TABLE:
            stored = (-(-cmd.count // cmd.positions) * self.positions_max if cmd.positions > 1
                      else cmd.count)
            if stored > self.table_depth:
                return (f"a table of {cmd.count} entries at {cmd.positions} positions needs "
                        f"{stored} places, more than table_depth = {self.table_depth}")
        if k == Kind.THRESH:
            if cmd.bits > self.t_width:
                return f"{cmd.bits}-bit thresholds are wider than t_width = {self.t_width}"
            if cmd.levels > self.levels_max:
                return f"{cmd.levels} levels, more than levels_max = {self.levels_max}"
        if k == Kind.BIAS and cmd.bits > self.b_width:
            return f"{cmd.bits}-bit biases are wider than b_width = {self.b_width}"
        return None

    def cycles(self, cmd):
        """Cycles the decoder spends on ``cmd`` when its input keeps up and its outputs never
        stall: an item every ``cycles_per_item`` cycles, a weight beat at most a cycle;
        replayed beats follow the command's read ones."""
        k = cmd.kind
        if k == Kind.TRIT5:
            items, beats = -(-cmd.count // 5), -(-cmd.count // self.lanes)
        elif k in (Kind.TERN2, Kind.CODES):
            codes = cmd.codes if k == Kind.CODES else cmd.count
            per = fields_per_cycle(2 if k == Kind.TERN2 else cmd.bits, self.lanes)
            items, beats = -(-codes // per), -(-codes // self.lanes)
            replayed = -(-cmd.count // self.lanes) - beats
            return max(beats, self.cycles_per_item * items) + replayed
        elif k == Kind.THRESH:
            items, beats = cmd.count * cmd.levels, 0
        else:
            items, beats = cmd.count, 0
        return max(beats, self.cycles_per_item * items)

    def command(self, cmd):
        """The fields of ``cmd`` on ``c`` (a dict for :data:`cmd_layout`); ValueError if unfit."""
        problem = self.check(cmd)
        if problem:
            raise ValueError(f"{cmd.kind.name} command: {problem}")
        return {"kind": int(cmd.kind), "count": cmd.codes if cmd.kind == Kind.CODES else cmd.count,
                "bits": cmd.bits, "levels": cmd.levels, "positions": cmd.positions,
                "per_pos": cmd.per_pos, "replay": int(cmd.replay)}

    # The hardware -------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        g, fmt = self.lanes, self.fmt
        cw, abits, pbits = self.code_bits, self.addr_bits, self.pos_bits
        tw, bw = self.t_width, self.b_width
        ew = max(tw, bw)
        fmax = max(5, min(g, 8))                  # codes one weight item may bring
        widest = max(fields_per_cycle(b, g) * b for b in range(1, cw + 1))
        need_max = max(8, widest, fmt.bits, bw, tw + 2)
        # Room for the widest item plus the byte arriving with it. A byte comes in only
        # while 8 bits are free (before the cycle's take, to keep `i.ready` off the
        # decode logic), so more than cap - 8 bits wait when a threshold row starts;
        # its first threshold (tw) and, next cycle, its step and code (tw + 2) must
        # be there without the byte that the first cycle may not take.
        cap = max(need_max + 8, 2 * tw + 9)

        m.submodules.bits = bits = _BitStore(self.word_bytes, cap, need_max)
        wiring.connect(m, wiring.flipped(self.i), bits.i)
        m.submodules.gearbox = gear = _Gearbox(
            lanes=g, fmax=fmax, code_bits=cw, pos_bits=pbits, replay_beats=self.replay_beats,
            positions_shape=self.cmd_layout["positions"].shape,
            per_pos_shape=self.cmd_layout["per_pos"].shape)
        m.submodules.translate = trans = _Translate(fmt=fmt, lanes=g, code_bits=cw,
                                                    addr_bits=abits, pos_bits=pbits)
        wiring.connect(m, gear.o, trans.i)
        # With three cycles an item, items reach the gearbox through a skid, so that
        # whether an item goes does not wait on the beats leaving (the gearbox's ready
        # follows its output's). A table entry waits until the skid is empty too.
        if self.cycles_per_item == 3:
            m.submodules.item_skid = skid = SkidBuffer(gear.item_layout)
            wiring.connect(m, skid.o, gear.i)
            items, gear_idle = skid.i, ~gear.busy & ~skid.o.valid
        else:
            items, gear_idle = gear.i, ~gear.busy
        wiring.connect(m, trans.o, wiring.flipped(self.w))
        # With two cycles per item: in the first the store's window is registered, in
        # the second that register is decoded and the item taken. The loop from the bits
        # an item takes to the next window is then two paths, the window's shift and the
        # decode, where it is one path through both with one cycle. With three, the
        # decode's outcome (whether the item goes, how many bits it takes) is registered
        # too, and the third cycle only checks its destination's room and takes it.
        if self.cycles_per_item == 1:
            go, buf, have = Const(1), bits.bits, bits.have
        else:
            phase = Signal(range(self.cycles_per_item))
            m.d.sync += phase.eq(Mux(phase == self.cycles_per_item - 1, 0, phase + 1))
            go = phase == self.cycles_per_item - 1
            buf, have = Signal.like(bits.bits), Signal.like(bits.have)
            m.d.sync += [buf.eq(bits.bits), have.eq(bits.have)]

        # ---- The command being read -----------------------------------------------------
        cmd = Signal(self.cmd_layout)
        active = Signal()
        left = Signal(self.count_width)           # items still to read
        per = Signal(range(9))                    # codes per full weight item
        per_bits = Signal(range(8 * 16 + 1))      # bits of a full weight item
        # Kept ahead in registers, off the path that decides whether an item goes:
        one_left = Signal()                       # left == 1
        w_last = Signal()                         # left <= per: the next weight item ends it
        after = Signal(self.count_width + 1)      # left - per: what a full weight item leaves
        tail_bits = Signal(range(8 * 16 + 1))     # bits of that last item
        kind = cmd.kind
        width = Signal(range(self.bits_max + 1))  # field width: codes, thresholds, biases
        m.d.comb += width.eq(cmd.bits)
        width2 = Signal(range(self.bits_max + 3))  # width + 2: a field and a code
        is_w = Signal()
        m.d.comb += is_w.eq((kind == Kind.TRIT5) | (kind == Kind.TERN2) | (kind == Kind.CODES))

        # Threshold rows: the first one, then the step with a code, then codes.
        FIRST, STEP, CODE = 0, 1, 2
        tstate = Signal(2)
        lvl = Signal(range(self.levels_max + 1))  # thresholds of the row already out
        step = Signal(tw)
        # Table entries go to code tq, position tr.
        tq = Signal(abits)
        tr = Signal(max(pbits, 1))

        # ---- The item at the head of the bits: what it is, what it needs ----------------
        k = Signal(range(9))                      # codes in a weight item

        # Weight items: up to a byte's worth of codes.
        item = items.payload
        with m.Switch(kind):
            with m.Case(Kind.TRIT5):
                trits = Signal(10)
                m.d.comb += trits.eq(Array(Const(v, 10) for v in _TRIT5)[buf[:8]])
                m.d.comb += [item.codes[j].eq(trits[2 * j:2 * j + 2]) for j in range(5)]
            with m.Default(), m.Switch(width):
                for b in range(1, cw + 1):
                    with m.Case(b):
                        m.d.comb += [item.codes[j].eq(buf[j * b:(j + 1) * b])
                                     for j in range(fields_per_cycle(b, g))]
        m.d.comb += [item.k.eq(k), item.last.eq(w_last), item.direct.eq(kind != Kind.CODES),
                     item.positions.eq(cmd.positions), item.per_pos.eq(cmd.per_pos),
                     item.replay.eq(cmd.replay if self.replay_beats else 0)]

        # Thresholds and biases: a signed field at bit 0 (first, bias) or bit 2 (escape).
        escaped = Signal()
        produce_t = Signal()
        row_done = Signal()
        src = Signal(ew)
        m.d.comb += src.eq(Mux((kind == Kind.THRESH) & (tstate == CODE), buf[2:2 + ew],
                               buf[:ew]))
        sign = Signal()
        m.d.comb += sign.eq(Array(src[n] for n in range(ew))[width - 1])
        field = Signal(signed(ew))
        m.d.comb += field.eq(Cat(*(Mux(width > n, src[n], sign) for n in range(ew))))
        s_new = Signal(tw)                        # the step, read in STEP
        m.d.comb += s_new.eq(Cat(*(buf[n] & (width > n) for n in range(tw))))
        code_at_w = Signal(2)
        m.d.comb += code_at_w.eq(Array(buf[n:n + 2] for n in range(tw + 1))[width])
        tcode = Signal(2)
        m.d.comb += tcode.eq(Mux(tstate == STEP, code_at_w, buf[:2]))
        s_cur = Signal(tw)
        m.d.comb += s_cur.eq(Mux(tstate == STEP, s_new, step))
        # A threshold goes first to `pend` (what to do: load a value, or add the step
        # and the code to the one before), then the sum is made into `t`.
        pend = Signal(data.StructLayout({"load": 1, "value": signed(tw), "step": tw, "code": 2,
                                         "last": 1}))
        pend_valid = Signal()
        t_go = Signal()
        m.d.comb += t_go.eq(~self.t.valid | self.t.ready)

        # What the item needs and takes is known from registers twice over, without and
        # with an escape (a threshold code 3); the bits pick one late, next to `fire`.
        need = [Signal(range(need_max + 1), name=f"need{e}") for e in (0, 1)]
        raw = [Signal(range(need_max + 1), name=f"raw{e}") for e in (0, 1)]
        final = [Signal(name=f"final{e}") for e in (0, 1)]
        sink = [Signal(name=f"sink{e}") for e in (0, 1)]
        m.d.comb += [raw[e].eq(need[e]) for e in (0, 1)]
        # `have >= need` with a comparator per case, so that the case only picks a bit.
        enough = [Signal(name=f"enough{e}") for e in (0, 1)]

        def needs(e, amount):
            return [need[e].eq(amount), enough[e].eq(have >= amount)]

        t_free = ~pend_valid | t_go
        with m.Switch(kind):
            with m.Case(Kind.TRIT5):
                m.d.comb += needs(0, 8) + needs(1, 8)
                m.d.comb += [f.eq(w_last) for f in final] + [x.eq(items.ready) for x in sink]
                m.d.comb += k.eq(Mux(w_last, left, 5))
            with m.Case(Kind.TERN2, Kind.CODES):
                m.d.comb += [n.eq(Mux(w_last, tail_bits, per_bits)) for n in need]
                m.d.comb += [x.eq(Mux(w_last, have >= tail_bits, have >= per_bits))
                             for x in enough]
                m.d.comb += [f.eq(w_last) for f in final] + [x.eq(items.ready) for x in sink]
                m.d.comb += k.eq(Mux(w_last, left, per))
            with m.Case(Kind.TABLE):
                # Beats still to be read from the old table hold the new one back.
                m.d.comb += needs(0, fmt.bits) + needs(1, fmt.bits)
                m.d.comb += [f.eq(one_left) for f in final] + [x.eq(gear_idle) for x in sink]
            with m.Case(Kind.BIAS):
                m.d.comb += needs(0, width) + needs(1, width)
                m.d.comb += [f.eq(one_left) for f in final]
                m.d.comb += [x.eq(~self.b.valid | self.b.ready) for x in sink]
            with m.Case(Kind.SKIP):
                m.d.comb += needs(0, 8) + needs(1, 8)
                m.d.comb += [f.eq(one_left) for f in final] + [x.eq(1) for x in sink]
            with m.Case(Kind.THRESH):
                last_level = Signal()
                m.d.comb += last_level.eq(lvl == cmd.levels - 1)
                with m.Switch(tstate):
                    with m.Case(FIRST):
                        m.d.comb += needs(0, width) + needs(1, width)
                        m.d.comb += [f.eq(one_left & (cmd.levels == 1)) for f in final]
                        m.d.comb += [x.eq(t_free) for x in sink]
                    with m.Case(STEP):
                        # An escape right after the step: the step alone, this cycle.
                        m.d.comb += needs(0, width2) + needs(1, width2)
                        m.d.comb += [raw[1].eq(width), final[0].eq(one_left & last_level),
                                     sink[0].eq(t_free), sink[1].eq(1)]
                    with m.Default():
                        m.d.comb += needs(0, 2) + needs(1, width2)
                        m.d.comb += [f.eq(one_left & last_level) for f in final]
                        m.d.comb += [x.eq(t_free) for x in sink]
        with m.If(kind == Kind.THRESH):
            m.d.comb += escaped.eq(Mux(tstate == STEP, code_at_w == 3,
                                       (tstate == CODE) & (buf[:2] == 3)))
        with m.Switch(tstate):
            with m.Case(FIRST):
                m.d.comb += [produce_t.eq(1), row_done.eq(cmd.levels == 1)]
            with m.Case(STEP):
                m.d.comb += [produce_t.eq(~escaped), row_done.eq(~escaped & last_level)]
            with m.Default():
                m.d.comb += [produce_t.eq(1), row_done.eq(last_level)]

        taken = [Signal(range(cap + 1), name=f"taken{e}") for e in (0, 1)]
        for e in (0, 1):
            # The last item also takes the pad bits up to the next byte: the bits always
            # end on a byte, so what is left after them is a multiple of 8.
            m.d.comb += taken[e].eq(Mux(final[e], have - ((have - raw[e]) & ~7), raw[e]))
        # The decode's outcome. With three cycles per item it is registered: it holds
        # in the cycle after, as nothing it reads changes until the item goes (a
        # command is taken over only while none is active, and bits only come in,
        # which moves no bit of the item; the pad bits of a last item, `taken - raw`,
        # stay the same while whole bytes come in).
        dec = Signal(data.StructLayout({
            "ok": 1, "w": 1, "escaped": 1, "final": 1, "taken": range(cap + 1),
            "produce_t": 1, "row_done": 1}))
        now = [dec.ok.eq(active & Mux(escaped, enough[1], enough[0])),
               dec.w.eq(active & is_w & enough[0]), dec.escaped.eq(escaped),
               dec.final.eq(Mux(escaped, final[1], final[0])),
               dec.taken.eq(Mux(escaped, taken[1], taken[0])),
               dec.produce_t.eq(produce_t), dec.row_done.eq(row_done)]
        if self.cycles_per_item == 3:
            m.d.sync += now
        else:
            m.d.comb += now
        fire = Signal()
        m.d.comb += fire.eq(go & dec.ok & Mux(dec.escaped, sink[1], sink[0]))
        with m.If(fire):
            m.d.comb += bits.take.eq(dec.taken)
        m.d.comb += items.valid.eq(go & dec.w)

        # ---- State ----------------------------------------------------------------------
        done = fire & dec.final
        # `left` counts down; one_left, w_last and tail_bits follow it.
        with m.If(fire & is_w):
            m.d.sync += [left.eq(Mux(w_last, 0, after)), after.eq(after - per),
                         w_last.eq(after <= per), tail_bits.eq(small_product(after[:4], width))]
        single = (kind == Kind.TABLE) | (kind == Kind.BIAS) | (kind == Kind.SKIP)
        with m.If(fire & (single | ((kind == Kind.THRESH) & dec.row_done))):
            m.d.sync += [left.eq(left - 1), one_left.eq(left == 2)]
        with m.If(done):
            m.d.sync += active.eq(0)

        with m.If(fire & (kind == Kind.THRESH)):
            with m.If(tstate == STEP):
                m.d.sync += step.eq(s_new)
            with m.If(dec.produce_t):
                m.d.sync += [lvl.eq(lvl + 1), tstate.eq(Mux(tstate == FIRST, STEP, CODE))]
            with m.Elif(dec.escaped):
                m.d.sync += tstate.eq(CODE)
            with m.If(dec.row_done):
                m.d.sync += [tstate.eq(FIRST), lvl.eq(0)]
        t = self.t.payload
        with m.If(pend_valid & t_go):
            m.d.sync += [pend_valid.eq(0), self.t.valid.eq(1), t.last.eq(pend.last),
                         t.value.eq(Mux(pend.load, pend.value, Mux(
                             pend.code == 2, t.value,
                             (t.value + pend.step + (pend.code == 1))[:tw].as_signed())))]
        with m.Elif(self.t.ready):
            m.d.sync += self.t.valid.eq(0)
        with m.If(fire & dec.produce_t & (kind == Kind.THRESH)):
            m.d.sync += [pend_valid.eq(1), pend.load.eq((tstate == FIRST) | dec.escaped),
                         pend.value.eq(field[:tw]), pend.step.eq(s_cur), pend.code.eq(tcode),
                         pend.last.eq(dec.final)]

        with m.If(fire & (kind == Kind.BIAS)):
            m.d.sync += [self.b.valid.eq(1), self.b.payload.value.eq(field[:bw].as_signed()),
                         self.b.payload.last.eq(dec.final)]
        with m.Elif(self.b.ready):
            m.d.sync += self.b.valid.eq(0)

        # Table entries: a KQ table (positions > 1) keeps positions_max places per code.
        write = trans.write
        m.d.comb += [write.en.eq(fire & (kind == Kind.TABLE)), write.data.eq(buf[:fmt.bits]),
                     write.addr.eq(Mux(cmd.positions > 1, Cat(tr[:pbits], tq), tq)
                                   if pbits else tq)]
        with m.If(write.en):
            last_pos = tr + 1 >= cmd.positions
            m.d.sync += [tr.eq(Mux(last_pos, 0, tr + 1)), tq.eq(tq + last_pos)]

        # The next command waits in `queued` with its counting state worked out, so
        # that `c.ready` is a register and taking the command over is a plain load.
        queued = Signal(data.StructLayout({
            "cmd": self.cmd_layout, "per": per.shape(), "per_bits": per_bits.shape(),
            "w_last": 1, "after": after.shape(), "tail_bits": tail_bits.shape(),
            "one_left": 1, "some": 1,
            "width2": width2.shape()}))
        q_valid = Signal()
        p = self.c.payload
        p_bits = Signal.like(p.bits)
        p_per = Signal.like(per)
        p_per_bits = Signal.like(per_bits)
        m.d.comb += p_bits.eq(Mux(p.kind == Kind.TERN2, 2, p.bits))
        with m.Switch(p_bits):
            for b in range(1, cw + 1):
                with m.Case(b):
                    m.d.comb += [p_per.eq(fields_per_cycle(b, g)),
                                 p_per_bits.eq(fields_per_cycle(b, g) * b)]
        with m.If(p.kind == Kind.TRIT5):
            m.d.comb += [p_per.eq(5), p_per_bits.eq(8)]
        m.d.comb += self.c.ready.eq(~q_valid)
        with m.If(self.c.valid & self.c.ready):
            m.d.sync += [q_valid.eq(1), queued.cmd.eq(p), queued.cmd.bits.eq(p_bits),
                         queued.per.eq(p_per), queued.w_last.eq(p.count <= p_per),
                         queued.per_bits.eq(p_per_bits),
                         queued.tail_bits.eq(small_product(p.count[:4], p_bits)),
                         queued.after.eq(p.count - p_per),
                         queued.one_left.eq(p.count == 1), queued.some.eq(p.count != 0),
                         queued.width2.eq(p_bits + 2)]
        # Taken over last: it overrides the updates above.
        with m.If(q_valid & (~active | done)):
            q = queued
            m.d.sync += [q_valid.eq(0), cmd.eq(q.cmd), active.eq(q.some), left.eq(q.cmd.count),
                         one_left.eq(q.one_left), per.eq(q.per), w_last.eq(q.w_last),
                         after.eq(q.after),
                         per_bits.eq(q.per_bits), tail_bits.eq(q.tail_bits), width2.eq(q.width2),
                         tstate.eq(FIRST), lvl.eq(0), tq.eq(0), tr.eq(0)]
        return m


class _BitStore(wiring.Component):
    """Flash words in; the oldest unread bits out, ``take`` of them gone each cycle.

    Words are split into bytes, one a cycle, while 8 bits are free. A byte enters
    at the top of the store and everything moves down a byte; the valid bits are
    the top ``have``. Taking bits moves nothing: ``have`` shrinks, and ``bits``
    is a window that starts at the oldest valid bit (bits above ``have`` are 0).
    The store ends on a byte of the stream, so ``have`` counts up to the end of
    the last byte in.

    Members
    -------
    i : In(stream.Signature(ArrayLayout(unsigned(8), word_bytes)))
    bits : Out(window)
    have : Out(range(cap + 1))
    take : In(range(cap + 1))  (at most ``have``)
    """

    def __init__(self, word_bytes, cap, window):
        self.word_bytes, self.cap = word_bytes, cap
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(8), word_bytes))),
            "bits": Out(window),
            "have": Out(range(cap + 1)),
            "take": In(range(cap + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        cap = self.cap
        word = Signal(8 * self.word_bytes)
        nbytes = Signal(range(self.word_bytes + 1))
        store = Signal(cap)
        have = Signal(range(cap + 1))
        start = Signal(range(cap + 1), init=cap)  # cap - have, kept to shorten the window path
        m.d.comb += [self.bits.eq(store >> start), self.have.eq(have)]
        append = Signal()
        m.d.comb += append.eq((nbytes != 0) & (have <= cap - 8))
        m.d.comb += self.i.ready.eq((nbytes == 0) | ((nbytes == 1) & append))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [word.eq(self.i.payload), nbytes.eq(self.word_bytes)]
        with m.Elif(append):
            m.d.sync += [word.eq(word >> 8), nbytes.eq(nbytes - 1)]
        with m.If(append):
            m.d.sync += store.eq(Cat(store[8:], word[:8]))
        m.d.sync += [have.eq(have + Mux(append, 8, 0) - self.take),
                     start.eq(start - Mux(append, 8, 0) + self.take)]
        return m


class _Gearbox(wiring.Component):
    """Weight items of up to ``fmax`` codes in; beats of ``lanes`` codes out.

    An item's ``k`` codes follow the codes before it; a beat leaves once
    ``lanes`` codes are in, or with the last codes of a command (``last``),
    which never share a beat with the next command's. The first item of a
    command brings how its beats count positions: ``pos`` advances after every
    ``per_pos`` weights and wraps at ``positions``; with ``replay``, the beats
    of position 0 are kept and leave again, without new items, at the other
    positions. ``busy`` while any code of a command is still to leave.

    Members
    -------
    i : In(stream.Signature(StructLayout(codes, k, last, direct, positions, per_pos, replay)))
    o : Out(stream.Signature(StructLayout(codes, nlanes, last, direct, kq, pos)))
    busy : Out(1)
    """

    def __init__(self, *, lanes, fmax, code_bits, pos_bits, replay_beats, positions_shape,
                 per_pos_shape):
        self.lanes, self.fmax, self.code_bits = lanes, fmax, code_bits
        self.replay_beats = replay_beats
        self.span = fmax + lanes - 1              # codes held
        self.item_layout = data.StructLayout({
            "codes": data.ArrayLayout(code_bits, fmax), "k": range(fmax + 1), "last": 1,
            "direct": 1, "positions": positions_shape, "per_pos": per_pos_shape, "replay": 1,
        })
        self.beat_layout = data.StructLayout({
            "codes": data.ArrayLayout(code_bits, lanes), "nlanes": range(lanes + 1),
            "last": 1, "direct": 1, "kq": 1, "pos": max(pos_bits, 1),
        })
        super().__init__({
            "i": In(stream.Signature(self.item_layout)),
            "o": Out(stream.Signature(self.beat_layout)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        g, fmax, span, cw = self.lanes, self.fmax, self.span, self.code_bits
        item, beat = self.i.payload, self.o.payload
        slot = [Signal(cw, name=f"slot{s}") for s in range(span)]
        n = Signal(range(span + 1))               # codes held
        busy = Signal()                           # a command is in
        closed = Signal()                         # its last item is in
        ended = Signal()                          # replay: its last item's codes are out
        direct, kq, replay = Signal(), Signal(), Signal()
        positions = Signal(item.positions.shape())
        per_pos = Signal(item.per_pos.shape())
        pcnt = Signal(item.per_pos.shape())       # weights out at this position
        pos = Signal(beat.pos.shape())
        bidx = Signal(range(max(self.replay_beats, 1)))
        m.d.comb += self.busy.eq(busy)

        from_replay = Signal()
        if self.replay_beats:
            m.d.comb += from_replay.eq(replay & (pos != 0))
        some = Signal()                           # a beat's worth of codes, or the last ones
        m.d.comb += some.eq((n >= g) | (closed & ~ended & (n != 0)))
        gear_last = Signal()
        m.d.comb += gear_last.eq(closed & ~ended & (n <= g))
        pos_end = Signal()                        # this beat ends its position

        m.d.comb += [
            self.o.valid.eq(from_replay | some),
            beat.nlanes.eq(Mux(from_replay | (n >= g), g, n)),
            beat.last.eq(Mux(replay, from_replay & ended & pos_end & (pos == positions - 1),
                             gear_last)),
            beat.direct.eq(direct), beat.kq.eq(kq), beat.pos.eq(pos),
        ]
        emit = self.o.valid & self.o.ready
        take = Signal()                           # the beat is made of held codes
        m.d.comb += take.eq(emit & ~from_replay)
        # Where the next item's codes go, and whether they fit, with and without a
        # beat leaving: known from registers, picked by `take` (late: it waits on `o`).
        n_left = Signal(range(span + 1))
        m.d.comb += n_left.eq(Mux(n >= g, n - g, 0))
        base = Signal(range(span + 1))
        m.d.comb += base.eq(Mux(take, n_left, n))
        fresh = Signal()                          # the next item starts a command
        m.d.comb += fresh.eq(~busy | (emit & beat.last))
        fits = Mux(take, n_left <= span - fmax, n <= span - fmax)
        m.d.comb += self.i.ready.eq(Mux(busy & ~closed, fits, fresh))
        put = self.i.valid & self.i.ready

        for s in range(span):
            value = Mux(take, slot[s + g] if s + g < span else 0, slot[s])
            for j in range(fmax):
                if 0 <= s - j <= span - fmax:
                    value = Mux(put & (base == s - j), item.codes[j], value)
            m.d.sync += slot[s].eq(value)
        m.d.sync += n.eq(base + Mux(put, item.k, 0))

        with m.If(emit):
            with m.If(pos_end):
                m.d.sync += [pcnt.eq(0), bidx.eq(0), pos_end.eq(per_pos <= g),
                             pos.eq(Mux(pos + 1 >= positions, 0, pos + 1))]
            with m.Else():
                m.d.sync += [pcnt.eq(pcnt + g), bidx.eq(bidx + 1),
                             pos_end.eq(pcnt + 2 * g >= per_pos)]
            with m.If(take & gear_last & replay):
                m.d.sync += ended.eq(1)
            with m.If(beat.last):
                m.d.sync += [busy.eq(0), closed.eq(0), ended.eq(0)]
        with m.If(put):
            with m.If(fresh):
                m.d.sync += [busy.eq(1), ended.eq(0), pcnt.eq(0), pos.eq(0), bidx.eq(0),
                             pos_end.eq(item.per_pos <= g),
                             direct.eq(item.direct), kq.eq(item.positions > 1),
                             replay.eq(item.replay), positions.eq(item.positions),
                             per_pos.eq(item.per_pos)]
            m.d.sync += closed.eq(item.last)

        # Replay: the codes of position 0, read again at the others.
        if self.replay_beats:
            m.submodules.replay = mem = Memory(shape=data.ArrayLayout(cw, g),
                                               depth=self.replay_beats, init=[])
            wr, rd = mem.write_port(), mem.read_port(domain="comb")
            m.d.comb += [wr.addr.eq(bidx), rd.addr.eq(bidx), wr.data.eq(Cat(*slot[:g])),
                         wr.en.eq(take & replay & (pos == 0))]
            m.d.comb += [beat.codes[j].eq(Mux(from_replay, rd.data[j], slot[j]))
                         for j in range(g)]
        else:
            m.d.comb += [beat.codes[j].eq(slot[j]) for j in range(g)]
        return m


class _Translate(wiring.Component):
    """Beats of codes in; beats of run-time weights out.

    A direct beat holds ternary codes (0: 0, 1: +1, 2: -1, 3: invalid, read as 0
    and flagged in ``error``); any other beat reads each code's weight from the
    translation table, at ``Cat(pos, code)`` for a KQ beat. The table has one
    read port per lane, so that a beat reads every lane at once; ``write``
    fills it. Lanes from ``nlanes`` on are zero.

    Members
    -------
    i : In(stream.Signature(StructLayout(codes, nlanes, last, direct, kq, pos)))
    o : Out(stream.Signature(StructLayout(w, nlanes, last, error)))
    write : In(StructLayout(en, addr, data))
    """

    def __init__(self, *, fmt, lanes, code_bits, addr_bits, pos_bits):
        self.fmt, self.lanes = fmt, lanes
        self.addr_bits, self.pos_bits = addr_bits, pos_bits
        self.beat_layout = data.StructLayout({
            "codes": data.ArrayLayout(code_bits, lanes), "nlanes": range(lanes + 1),
            "last": 1, "direct": 1, "kq": 1, "pos": max(pos_bits, 1),
        })
        super().__init__({
            "i": In(stream.Signature(self.beat_layout)),
            "o": Out(stream.Signature(data.StructLayout({
                "w": data.ArrayLayout(weight_layout(fmt), lanes),
                "nlanes": unsigned(lanes.bit_length()), "last": 1, "error": 1}))),
            "write": In(data.StructLayout({"en": 1, "addr": addr_bits,
                                           "data": weight_layout(fmt)})),
        })

    def elaborate(self, platform):
        m = Module()
        g, abits, pbits = self.lanes, self.addr_bits, self.pos_bits
        m.submodules.table = mem = Memory(shape=weight_layout(self.fmt),
                                          depth=1 << abits, init=[])
        wr = mem.write_port()
        m.d.comb += [wr.addr.eq(self.write.addr), wr.data.eq(self.write.data),
                     wr.en.eq(self.write.en)]
        reads = [mem.read_port() for _ in range(g)]

        beat = self.i.payload
        take = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        for j in range(g):
            addr = beat.codes[j][:abits]
            if pbits:
                addr = Mux(beat.kq, Cat(beat.pos[:pbits], beat.codes[j][:abits - pbits]), addr)
            m.d.comb += [reads[j].addr.eq(addr), reads[j].en.eq(take)]

        # The table answers a cycle later: hold the rest of the beat as long.
        held = Signal(self.beat_layout)
        with m.If(take):
            m.d.sync += [self.o.valid.eq(1), held.eq(beat)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        errors = []
        for j in range(g):
            live = held.nlanes > j
            tern = held.codes[j][:2]              # a ternary code; the bits above are 0
            ternary = Mux(tern == 1, 0b01, Mux(tern == 2, 0b11, 0))
            m.d.comb += self.o.payload.w[j].as_value().eq(
                Mux(live, Mux(held.direct, ternary, reads[j].data.as_value()), 0))
            errors.append(live & held.direct & (tern == 3))
        m.d.comb += [self.o.payload.nlanes.eq(held.nlanes), self.o.payload.last.eq(held.last),
                     self.o.payload.error.eq(Cat(*errors).any())]
        return m

"""The layer engine's stream decoder: flash bytes and commands in, weights, thresholds, biases out.

The data format is :mod:`hw.engine.packing`; this is its hardware reader.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

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
    """Turns the weight stream of :mod:`hw.engine.packing` into run-time weights, thresholds, biases.

    Each command on ``c`` says what the next data in the flash stream ``i`` is
    (its kind and size, :func:`command_layout`); the decoder reads exactly that
    data, skips the pad bits that complete its last byte, and goes on with the
    next command. Commands are decoded in order and each one's data starts on a
    byte of ``i``.

    * ``TRIT5``, ``TERN2``, ``CODES``: ``count`` weights leave on ``w`` in beats of
      ``lanes`` weights (weight ``n`` of the command in lane ``n % lanes``). A
      command's weights start a new beat; its last beat has ``last`` set and
      ``nlanes`` weights (``lanes`` unless ``count`` is not a multiple of
      ``lanes``), the other lanes being zero. ``error`` marks a beat with an
      invalid weight (a TRIT5 byte above 242 or TERN2 code 3), which reads as
      zero. ``CODES`` codes index the translation
      table (entry ``code * positions + pos``, ``pos`` advancing every
      ``per_pos`` weights, which must then be a multiple of ``lanes``). With
      ``replay`` the data holds the codes of the first position of each block
      of ``positions * per_pos`` weights only, and ``count`` counts those codes.
    * ``TABLE``: ``count`` entries are written into the translation table (KQ
      tables with ``positions`` > 1 are stored ``positions_max`` entries per
      code, so that a code and a position address them without a multiplier). A
      ``TABLE`` command waits until every beat read from the old table has left.
    * ``THRESH``: ``count`` rows of ``levels`` thresholds of ``bits`` bits leave
      on ``t``, one per beat, sign-extended to ``t_width``; ``last`` marks the
      command's last threshold.
    * ``BIAS``: ``count`` signed ``bits``-bit values leave on ``b``, one per beat.

    A command of count 0 has no data and does nothing.

    Throughput, with ready outputs: one byte of ``i`` per cycle, that is
    ``min(5, lanes)`` TRIT5 weights, ``min(lanes, 8, ceil(8 / b))`` ``b``-bit
    codes (:func:`fields_per_cycle`), one threshold (two cycles for a row that
    starts with an escape), one bias or one table entry per cycle, as far as the
    input keeps up. Weight commands of a multiple of ``lanes`` weights follow
    each other without a bubble. :meth:`check` tells whether a
    :class:`~hw.engine.packing.Command` suits this decoder; :meth:`command`
    gives its fields.

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
                 levels_max=255):
        problem = self._problem(lanes, word_bytes, table_depth, positions_max, replay_beats,
                                t_width, b_width, count_width, levels_max)
        if problem:
            self._MustUse__silence = True
            raise ValueError(f"StreamDecoder: {problem}")
        self.fmt, self.lanes, self.word_bytes = fmt, lanes, word_bytes
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
                 count_width, levels_max):
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
        fmax = max(5, min(g, 8))                 # codes one cycle may bring
        span = max(fmax + g - 1, g)               # codes the gearbox holds
        tw, bw = self.t_width, self.b_width
        ew = max(tw, bw)
        e_bits = fmt.bits
        widest = max(fields_per_cycle(b, g) * b for b in range(1, cw + 1))
        need_max = max(8, widest, e_bits, bw, tw + 2)
        # Room for the widest item plus the byte arriving with it. A byte comes in only
        # while 8 bits are free (before the cycle's take, to keep `i.ready` off the
        # decode logic), so more than cap - 8 bits wait when a threshold row starts;
        # its first threshold (tw) and, next cycle, its step and code (tw + 2) must
        # be there without the byte that the first cycle may not take.
        cap = max(need_max + 8, 2 * tw + 9)

        # ---- Input words -> one byte per cycle -------------------------------------------
        word = Signal(8 * self.word_bytes)
        nbytes = Signal(range(self.word_bytes + 1))
        # Bytes enter at the top of `store` and everything moves down a byte; the valid
        # bits are its top `have`. Taking bits moves nothing: `have` shrinks, and the
        # items read a window that starts at the oldest valid bit.
        store = Signal(cap)
        have = Signal(range(cap + 1))
        start = Signal(range(cap + 1))
        m.d.comb += start.eq(cap - have)
        buf = Signal(need_max)
        m.d.comb += buf.eq(store >> start)
        room = Signal()
        m.d.comb += room.eq(have <= cap - 8)
        append = Signal()
        m.d.comb += append.eq((nbytes != 0) & room)
        m.d.comb += self.i.ready.eq((nbytes == 0) | ((nbytes == 1) & room))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [word.eq(self.i.payload), nbytes.eq(self.word_bytes)]
        with m.Elif(append):
            m.d.sync += [word.eq(word >> 8), nbytes.eq(nbytes - 1)]

        # ---- The command being read -----------------------------------------------------
        cmd = Signal(self.cmd_layout)
        active = Signal()
        left = Signal(self.count_width)           # items still to read
        per = Signal(range(9))                    # codes per full weight item
        per_bits = Signal(range(8 * 16 + 1))      # bits of a full weight item
        kind = cmd.kind
        width = Signal(range(self.bits_max + 1))  # field width: codes, thresholds, biases
        m.d.comb += width.eq(cmd.bits)
        is_w = Signal()
        m.d.comb += is_w.eq((kind == Kind.TRIT5) | (kind == Kind.TERN2) | (kind == Kind.CODES))

        # Threshold rows: the first one, then the step with a code, then codes.
        FIRST, STEP, CODE = 0, 1, 2
        tstate = Signal(2)
        lvl = Signal(range(self.levels_max + 1))  # thresholds of the row already out
        prev = Signal(signed(tw))
        step = Signal(tw)
        # Table entries: code q, position r.
        tq = Signal(abits)
        tr = Signal(max(pbits, 1))

        # ---- What the item at the head of the buffer is ---------------------------------
        need = Signal(range(need_max + 1))        # bits that must be there to decide
        raw = Signal(range(need_max + 1))         # bits it takes (before the pad)
        final = Signal()                          # the command's last item
        sink = Signal()                           # its destination can take it
        produce_t = Signal()
        row_done = Signal()
        k = Signal(range(9))                      # codes in a weight item

        # Weight items.
        codes = [Signal(cw, name=f"code{j}") for j in range(fmax)]
        with m.Switch(kind):
            with m.Case(Kind.TRIT5):
                trits = Signal(10)
                m.d.comb += trits.eq(Array(Const(v, 10) for v in _TRIT5)[buf[:8]])
                m.d.comb += [codes[j].eq(trits[2 * j:2 * j + 2]) for j in range(5)]
            with m.Default(), m.Switch(width):
                for b in range(1, cw + 1):
                    with m.Case(b):
                        m.d.comb += [codes[j].eq(buf[j * b:(j + 1) * b])
                                     for j in range(fields_per_cycle(b, g))]
        w_final = Signal()
        m.d.comb += w_final.eq(left <= per)

        # Thresholds and biases: a signed field at bit 0 (first, bias) or bit 2 (escape).
        escaped = Signal()
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
        t_next = Signal(signed(tw))
        m.d.comb += t_next.eq(Mux(tcode == 2, prev,
                                  (prev + s_cur + (tcode == 1))[:tw].as_signed()))
        t_value = Signal(signed(tw))

        with m.Switch(kind):
            with m.Case(Kind.TRIT5):
                m.d.comb += [need.eq(8), final.eq(w_final), k.eq(Mux(w_final, left, 5))]
            with m.Case(Kind.TERN2, Kind.CODES):
                m.d.comb += [k.eq(Mux(w_final, left, per)), final.eq(w_final),
                             need.eq(Mux(w_final, left[:4] * width, per_bits))]
            with m.Case(Kind.TABLE):
                m.d.comb += [need.eq(e_bits), final.eq(left == 1)]
            with m.Case(Kind.BIAS):
                m.d.comb += [need.eq(width), final.eq(left == 1)]
            with m.Case(Kind.THRESH):
                last_level = Signal()
                m.d.comb += last_level.eq(lvl == cmd.levels - 1)
                with m.Switch(tstate):
                    with m.Case(FIRST):
                        m.d.comb += [need.eq(width), produce_t.eq(1), t_value.eq(field),
                                     row_done.eq(cmd.levels == 1)]
                    with m.Case(STEP):
                        # An escape right after the step: the step alone, this cycle.
                        m.d.comb += [escaped.eq(code_at_w == 3), need.eq(width + 2),
                                     raw.eq(Mux(escaped, width, width + 2)),
                                     produce_t.eq(~escaped), t_value.eq(t_next),
                                     row_done.eq(~escaped & last_level)]
                    with m.Default():
                        m.d.comb += [escaped.eq(buf[:2] == 3),
                                     need.eq(Mux(escaped, width + 2, 2)), produce_t.eq(1),
                                     t_value.eq(Mux(escaped, field[:tw], t_next)),
                                     row_done.eq(last_level)]
                m.d.comb += final.eq((left == 1) & row_done)

        # ---- Gearbox: weight items -> beats of `lanes` codes ----------------------------
        slot = [Signal(cw, name=f"slot{s}") for s in range(span)]
        n = Signal(range(span + 1))               # codes held
        gopen = Signal()                          # the gearbox serves a command
        closed = Signal()                         # its last item is in
        ended = Signal()                          # replay: every stored code has left
        g_direct, g_kq, g_replay = Signal(), Signal(), Signal()
        g_positions = Signal.like(cmd.positions)
        g_per_pos = Signal.like(cmd.per_pos)
        pcnt = Signal.like(cmd.per_pos)           # weights out at this position
        pos = Signal(max(pbits, 1))
        bidx = Signal(range(max(self.replay_beats, 1)))

        from_replay = Signal()
        if self.replay_beats:
            m.d.comb += from_replay.eq(g_replay & (pos != 0))
        gear_has = Signal()
        m.d.comb += gear_has.eq((n >= g) | (closed & ~ended & (n != 0)))
        gear_last = Signal()
        m.d.comb += gear_last.eq(closed & ~ended & (n <= g))
        pos_end = Signal()
        m.d.comb += pos_end.eq(pcnt + g >= g_per_pos)
        beat_last = Signal()
        m.d.comb += beat_last.eq(Mux(g_replay, from_replay & ended & pos_end &
                                     (pos == g_positions - 1), gear_last))
        s3_ready = Signal()
        emit = Signal()
        m.d.comb += emit.eq(Mux(from_replay, 1, gear_has) & s3_ready)
        take_gear = Signal()
        m.d.comb += take_gear.eq(emit & ~from_replay)
        nlanes = Signal(range(g + 1))
        m.d.comb += nlanes.eq(Mux(from_replay | (n >= g), g, n))
        base = Signal(range(span + 1))
        m.d.comb += base.eq(n - Mux(take_gear, nlanes, 0))
        fresh = Signal()                          # the next item starts a command
        m.d.comb += fresh.eq(~gopen | (emit & beat_last))
        in_ready = Signal()
        m.d.comb += in_ready.eq(Mux(gopen & ~closed, base + fmax <= span, fresh))

        # ---- Fire ---------------------------------------------------------------------
        with m.Switch(kind):
            with m.Case(Kind.TRIT5, Kind.TERN2, Kind.CODES):
                m.d.comb += sink.eq(in_ready)
            with m.Case(Kind.TABLE):
                m.d.comb += sink.eq(~gopen)
            with m.Case(Kind.BIAS):
                m.d.comb += sink.eq(~self.b.valid | self.b.ready)
            with m.Case(Kind.THRESH):
                m.d.comb += sink.eq(~produce_t | ~self.t.valid | self.t.ready)
        with m.If(~((kind == Kind.THRESH) & (tstate == STEP))):
            m.d.comb += raw.eq(need)
        fire = Signal()
        m.d.comb += fire.eq(active & (have >= need) & sink)
        take = Signal(range(cap + 1))
        # The last item also takes the pad bits up to the next byte: the buffer always
        # ends on a byte, so what is left after them is a multiple of 8.
        with m.If(fire):
            m.d.comb += take.eq(Mux(final, have - ((have - raw) & ~7), raw))
        with m.If(append):
            m.d.sync += store.eq(Cat(store[8:], word[:8]))
        m.d.sync += have.eq(have + Mux(append, 8, 0) - take)

        # Commands.
        done = fire & final
        m.d.comb += self.c.ready.eq(~active | done)
        with m.If(fire & is_w):
            m.d.sync += left.eq(left - k)
        with m.If(fire & ((kind == Kind.TABLE) | (kind == Kind.BIAS))):
            m.d.sync += left.eq(left - 1)
        with m.If(done):
            m.d.sync += active.eq(0)
        # Thresholds.
        with m.If(fire & (kind == Kind.THRESH)):
            with m.If(tstate == STEP):
                m.d.sync += step.eq(s_new)
            with m.If(produce_t):
                m.d.sync += [prev.eq(t_value), lvl.eq(lvl + 1),
                             tstate.eq(Mux(tstate == FIRST, STEP, CODE))]
            with m.Elif(escaped):
                m.d.sync += tstate.eq(CODE)
            with m.If(row_done):
                m.d.sync += [tstate.eq(FIRST), lvl.eq(0), left.eq(left - 1)]
        with m.If(fire & produce_t & (kind == Kind.THRESH)):
            m.d.sync += [self.t.valid.eq(1), self.t.payload.value.eq(t_value),
                         self.t.payload.last.eq(final)]
        with m.Elif(self.t.ready):
            m.d.sync += self.t.valid.eq(0)

        # Biases.
        with m.If(fire & (kind == Kind.BIAS)):
            m.d.sync += [self.b.valid.eq(1), self.b.payload.value.eq(field[:bw].as_signed()),
                         self.b.payload.last.eq(final)]
        with m.Elif(self.b.ready):
            m.d.sync += self.b.valid.eq(0)

        # The translation table: one copy per lane, so that a beat reads every lane at once.
        kq_table = cmd.positions > 1
        t_addr = Signal(abits)
        m.d.comb += t_addr.eq(Mux(kq_table, Cat(tr[:pbits], tq) if pbits else tq, tq))
        t_we = fire & (kind == Kind.TABLE)
        with m.If(t_we):
            last_pos = tr + 1 >= cmd.positions
            m.d.sync += [tr.eq(Mux(last_pos, 0, tr + 1)), tq.eq(tq + last_pos)]

        # A new command, last: it overrides the updates above.
        with m.If(self.c.valid & self.c.ready):
            p = self.c.payload
            m.d.sync += [cmd.eq(p), active.eq(p.count != 0), left.eq(p.count),
                         tstate.eq(FIRST), lvl.eq(0), tq.eq(0), tr.eq(0)]
            with m.If(p.kind == Kind.TERN2):
                m.d.sync += cmd.bits.eq(2)
            with m.Switch(Mux(p.kind == Kind.TERN2, 2, p.bits)):
                for b in range(1, cw + 1):
                    with m.Case(b):
                        f = fields_per_cycle(b, g)
                        m.d.sync += [per.eq(f), per_bits.eq(f * b)]
            with m.If(p.kind == Kind.TRIT5):
                m.d.sync += [per.eq(5), per_bits.eq(8)]

        m.submodules.table = mem = Memory(shape=weight_layout(fmt), depth=self.table_depth,
                                          init=[])
        wr = mem.write_port()
        m.d.comb += [wr.addr.eq(t_addr), wr.data.eq(buf[:e_bits]), wr.en.eq(t_we)]
        reads = [mem.read_port() for _ in range(g)]

        # Gearbox state.
        w_fire = fire & is_w
        for s in range(span):
            nxt = slot[s + g] if s + g < span else Const(0, cw)
            value = Mux(take_gear, nxt, slot[s])
            for j in range(fmax):
                if 0 <= s - j <= span - fmax:
                    value = Mux(w_fire & (base == s - j), codes[j], value)
            m.d.sync += slot[s].eq(value)
        m.d.sync += n.eq(base + Mux(w_fire, k, 0))
        with m.If(emit):
            with m.If(pos_end):
                m.d.sync += [pcnt.eq(0), bidx.eq(0),
                             pos.eq(Mux(pos + 1 >= g_positions, 0, pos + 1))]
            with m.Else():
                m.d.sync += [pcnt.eq(pcnt + g), bidx.eq(bidx + 1)]
            with m.If(take_gear & gear_last & g_replay):
                m.d.sync += ended.eq(1)
            with m.If(beat_last):
                m.d.sync += [gopen.eq(0), closed.eq(0), ended.eq(0)]
        with m.If(w_fire):
            with m.If(fresh):
                m.d.sync += [gopen.eq(1), ended.eq(0), pcnt.eq(0), pos.eq(0), bidx.eq(0),
                             g_direct.eq(kind != Kind.CODES), g_kq.eq(cmd.positions > 1),
                             g_replay.eq(cmd.replay if self.replay_beats else 0),
                             g_positions.eq(cmd.positions), g_per_pos.eq(cmd.per_pos)]
            m.d.sync += closed.eq(final)

        # Replay memory: the codes of the first position, read again at the others.
        beat_codes = [Signal(cw, name=f"beat{j}") for j in range(g)]
        if self.replay_beats:
            rmem = Memory(shape=data.ArrayLayout(cw, g), depth=self.replay_beats, init=[])
            m.submodules.replay = rmem
            rw = rmem.write_port()
            rr = rmem.read_port(domain="comb")
            m.d.comb += [rw.addr.eq(bidx), rr.addr.eq(bidx),
                         rw.data.eq(Cat(*slot[:g])),
                         rw.en.eq(take_gear & g_replay & (pos == 0))]
            m.d.comb += [beat_codes[j].eq(Mux(from_replay, rr.data[j], slot[j]))
                         for j in range(g)]
        else:
            m.d.comb += [beat_codes[j].eq(slot[j]) for j in range(g)]

        # ---- Stage 3: translate a beat --------------------------------------------------
        v3 = Signal()
        code3 = [Signal(cw, name=f"code3_{j}") for j in range(g)]
        nlanes3 = Signal(range(g + 1))
        last3, direct3 = Signal(), Signal()
        m.d.comb += s3_ready.eq(~v3 | self.w.ready)
        hi_bits = abits - pbits                   # code bits of a KQ address
        for j in range(g):
            addr = beat_codes[j][:abits]
            if pbits:
                addr = Mux(g_kq, Cat(pos[:pbits], beat_codes[j][:hi_bits]), addr)
            m.d.comb += [reads[j].addr.eq(addr), reads[j].en.eq(emit)]
        with m.If(emit):
            m.d.sync += [v3.eq(1), nlanes3.eq(nlanes), last3.eq(beat_last),
                         direct3.eq(g_direct)]
            m.d.sync += [code3[j].eq(beat_codes[j]) for j in range(g)]
        with m.Elif(self.w.ready):
            m.d.sync += v3.eq(0)
        errors = []
        for j in range(g):
            live = nlanes3 > j
            # A ternary code is 2 bits; the bits above are zero.
            tern = code3[j][:2]
            ternary = Mux(tern == 1, 0b01, Mux(tern == 2, 0b11, 0))
            m.d.comb += self.w.payload.w[j].as_value().eq(
                Mux(live, Mux(direct3, ternary, reads[j].data.as_value()), 0))
            errors.append(live & direct3 & (tern == 3))
        m.d.comb += [self.w.valid.eq(v3), self.w.payload.nlanes.eq(nlanes3),
                     self.w.payload.last.eq(last3),
                     self.w.payload.error.eq(Cat(*errors).any())]
        return m

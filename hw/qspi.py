"""Quad-SPI flash reader: one Quad I/O Fast Read (0xEB) per request, words out.

:class:`QSPIReader` turns a request (byte address, byte length) into one
continuous 0xEB read and streams the bytes out as words of ``word_bytes``
bytes, the first flash byte in the low bits. It talks to the pins through
:func:`qspi_bus`, an abstract per-cycle bus that a simulation model
(``sim/flash_model.py``) or a board PHY (``boards/qspi_phy.py``) sits on.

The bus (every reader output is a register)
-------------------------------------------
Cycle ``t`` is the system clock period that starts with rising edge ``t``.

``cs_n``
    Chip select, low for the whole transaction. It changes only at a cycle
    boundary with SCLK low on both sides of it.
``sck[0]``, ``sck[1]``
    The SCLK level in the first and in the second half of the cycle (the two
    data inputs of an output DDR register). A PHY reproduces this waveform at
    the pin, delayed by a fixed number of whole cycles that is the same for
    every output of the bus.
``dq_o``, ``dq_oe``
    The reader's level and output enable per data line (line ``k`` is bit
    ``k``). They change only at the cycle boundary where an SPI clock starts
    (or when CS# falls), so they are stable from at least ``divider`` half
    cycles before a rising SCLK edge to ``divider`` half cycles after it.
``dq_i``
    The data lines as the PHY presents them to the reader in this cycle.

SCLK for ``divider = D``: one SPI clock takes ``D`` cycles, low for the first
``D`` half cycles and high for the last ``D``. Its falling edge is therefore
always at a cycle boundary, its rising edge ``D`` half cycles into the clock
(mid-cycle when ``D`` is odd: ``D = 1`` gives ``sck = 0b10``, the system
clock itself, gated). Between two SPI clocks SCLK may stay low for any
number of cycles: SPI flash lets the master pause the clock anywhere.

One request, accepted in cycle ``a`` (``req.valid & req.ready``), with
``A = addr_width``:

* cycle ``a+1``: CS# falls; SCLK stays low; DQ0 already carries the first
  instruction bit (one cycle of CS# set-up).
* 8 clocks: the instruction 0xEB, most significant bit first, on DQ0
  (``dq_oe = 0b1101``: DQ2 and DQ3 driven high, DQ1 left to the flash).
* ``A/4`` clocks: the address, most significant nibble first, each nibble on
  DQ3..DQ0 (``dq_oe = 0b1111``).
* ``mode_clocks`` clocks: ``mode_value`` the same way (0xFF: the flash does
  not enter continuous read, so every request is a whole command).
* ``dummy_clocks`` clocks with every line released (``dq_oe = 0``).
* The falling edge that ends the last dummy clock launches data nibble 0;
  the one that ends data clock ``j`` launches nibble ``j``. Within each byte
  the high nibble comes first. ``2*W*ceil(n/W) - 1`` data clocks follow for
  ``n`` bytes in words of ``W`` bytes: the last nibble needs no clock after it.
* The reader takes ``dq_i`` in cycle ``e + read_latency``, where ``e`` is the
  cycle that begins with the falling edge launching that nibble.
* CS# rises in the cycle after the last nibble is taken and stays high for at
  least ``cs_high`` cycles; the next request is accepted, at the earliest, in
  the last of them.

Without stalls the clocks follow each other: SPI clock ``c`` (from 1) takes
cycles ``a+2+D*(c-1)`` to ``a+1+D*c``. With ``P = 8 + A/4 + mode_clocks +
dummy_clocks`` and ``N = 2*W*ceil(n/W)`` nibbles there are ``C = P + N - 1``
clocks, word ``k`` (from 0) leaves on ``o`` in cycle
``a + 4 + read_latency + D*(P + 2*W*(k+1) - 1)`` (two of those cycles are the
output FIFO), the last in ``a + 4 + read_latency + D*C``, and the next request
can be accepted in cycle ``a + 2 + D*C + read_latency + cs_high``
(:meth:`QSPIReader.timing`). At ``D = 1`` data flows at one nibble per cycle.

Back-pressure: before it starts the clock that would launch the first nibble
of a word, the reader makes sure its output FIFO has room for that word next
to the words already in flight; if not, SCLK stays low until it has. No nibble
is launched without a place to go, so a stalled consumer never loses data.

Lengths: ``ceil(n/W)`` whole words are read, so a length that is not a multiple
of ``word_bytes`` is rounded up with the bytes that follow in the flash; a
request of length 0 is accepted and does nothing (no command). Addresses wrap
at the end of the flash as the flash wraps them.
"""

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["qspi_bus", "read_request", "QSPIPart", "PARTS", "QSPIReader", "ReadTiming"]

INSTRUCTION = 0xEB


def qspi_bus():
    """The reader side of the per-cycle flash bus (see the module docstring)."""
    return wiring.Signature({"cs_n": Out(1, init=1), "sck": Out(2), "dq_o": Out(4),
                             "dq_oe": Out(4), "dq_i": In(4)})


def read_request(addr_width=24, length_width=None):
    """Payload of a read request: byte ``addr`` and byte ``length``."""
    return data.StructLayout({"addr": unsigned(addr_width),
                              "length": unsigned(length_width or addr_width + 1)})


@dataclass(frozen=True)
class QSPIPart:
    """The 0xEB timing of a flash part at its factory configuration.

    ``mode_clocks`` carry the mode byte after the address; ``dummy_clocks``
    follow it with the lines released; ``max_sclk_hz`` is the fastest SCLK the
    datasheet allows for 0xEB with that many dummy clocks.
    """
    name: str
    mode_clocks: int
    dummy_clocks: int
    max_sclk_hz: int
    source: str


PARTS = {p.name: p for p in [
    # Infineon (Spansion) S25FL128S, Arty A7 rev. D/E: QIOR (EBh) with the default
    # latency code LC=00 in CR1 has 2 mode and 4 dummy cycles, up to 80 MHz.
    QSPIPart("S25FL128S", 2, 4, 80_000_000,
             "Infineon S25FL128S/256S datasheet, latency codes for SDR high performance"),
    # Winbond W25Q128JV (ULX3S, older boards): Fast Read Quad I/O is 8 + 6 address
    # clocks, M7-0 in 2 clocks, then 4 dummy clocks.
    QSPIPart("W25Q128JV", 2, 4, 104_000_000, "Winbond W25Q128JV datasheet, 8.2.11"),
    # ISSI IS25LP128F (ULX3S): FRQIO's default 6 dummy cycles include the 2 mode-bit
    # cycles, which is the same 2 + 4.
    QSPIPart("IS25LP128F", 2, 4, 104_000_000,
             "ISSI IS25LP128F datasheet, FRQIO and read dummy cycles table"),
]}


@dataclass(frozen=True)
class ReadTiming:
    """Cycles of one request without stalls, counted from the cycle it is accepted."""
    clocks: int          # SPI clocks in the transaction
    first_word: int      # cycle the first word is on ``o``
    last_word: int       # cycle the last word is on ``o``
    next_request: int    # earliest cycle the next request is accepted


def _check(word_bytes, addr_width, divider, read_latency, part, cs_high):
    if word_bytes < 1:
        return f"word_bytes must be 1 or more, not {word_bytes}"
    if addr_width < 4 or addr_width % 4:
        return f"addr_width must be a positive multiple of 4, not {addr_width}"
    if divider < 1:
        return f"divider must be 1 or more, not {divider}"
    if read_latency < 0:
        return f"read_latency must be 0 or more, not {read_latency}"
    if part.dummy_clocks < 1:
        # Without a dummy clock the flash would start driving at the very edge
        # after which the reader stops driving the mode bits.
        return f"{part.name}: at least one dummy clock is needed"
    if cs_high < 1:
        return f"cs_high must be 1 or more, not {cs_high}"
    return None


class QSPIReader(wiring.Component):
    """Read flash bytes with one Quad I/O Fast Read (0xEB) per request.

    Members
    -------
    req : In(stream.Signature(read_request(addr_width, length_width)))
    o : Out(stream.Signature(ArrayLayout(unsigned(8), word_bytes)))
        Byte ``k`` of a word (bits ``8k`` up) is flash byte ``addr + k``.
    bus : Out(qspi_bus())

    Parameters
    ----------
    word_bytes : bytes per output word.
    addr_width : address bits sent (a multiple of 4; 24 for 16 MB parts).
    length_width : bits of a request's length (default ``addr_width + 1``).
    divider : system cycles per SPI clock, 1 or more (1: SCLK is the gated
        system clock).
    read_latency : cycles from the cycle that begins with the falling SCLK
        edge launching a nibble to the cycle ``dq_i`` is taken.
    part : :class:`QSPIPart` giving mode and dummy clocks.
    mode_value : the mode byte sent after the address.
    cs_high : cycles CS# stays high between two transactions, 1 or more.
    fifo_depth : output words buffered; the default just keeps a full-rate
        stream going at this divider and latency.
    """

    def __init__(self, *, word_bytes: int = 4, addr_width: int = 24,
                 length_width: int | None = None, divider: int = 1, read_latency: int = 0,
                 part: QSPIPart = PARTS["S25FL128S"], mode_value: int = 0xFF, cs_high: int = 2,
                 fifo_depth: int | None = None):
        problem = _check(word_bytes, addr_width, divider, read_latency, part, cs_high)
        if problem:
            self._MustUse__silence = True      # never built, so never "unused"
            raise ValueError(problem)
        self.word_bytes, self.addr_width = word_bytes, addr_width
        self.length_width = length_width or addr_width + 1
        self.divider, self.read_latency, self.part = divider, read_latency, part
        self.mode_value, self.cs_high = mode_value, cs_high
        self.nibbles_per_word = 2 * word_bytes
        span = divider * self.nibbles_per_word
        self.fifo_depth = fifo_depth or max(3, 2 + -(-(read_latency + 3) // span))
        self.header_clocks = 8 + addr_width // 4 + part.mode_clocks
        self.prefix_clocks = self.header_clocks + part.dummy_clocks
        super().__init__({
            "req": In(stream.Signature(read_request(addr_width, self.length_width))),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(8), word_bytes))),
            "bus": Out(qspi_bus()),
        })

    def timing(self, length):
        """The :class:`ReadTiming` of a request of ``length`` bytes (module docstring)."""
        words = -(-length // self.word_bytes)
        if words == 0:
            return ReadTiming(0, None, None, 1)
        d, lat, p, nw = self.divider, self.read_latency, self.prefix_clocks, self.nibbles_per_word
        clocks = p + nw * words - 1
        return ReadTiming(clocks, 4 + lat + d * (p + nw - 1), 4 + lat + d * clocks,
                          2 + d * clocks + lat + self.cs_high)

    def _header(self, addr):
        """Per SPI clock of the header: (dq_o, dq_oe) values."""
        out = [(0b1100 | (INSTRUCTION >> (7 - i)) & 1, 0b1101) for i in range(8)]
        out += [(addr[self.addr_width - 4 * (i + 1):self.addr_width - 4 * i], 0b1111)
                for i in range(self.addr_width // 4)]
        mc = self.part.mode_clocks
        out += [((self.mode_value >> 4 * (mc - 1 - i)) & 0xF, 0b1111) for i in range(mc)]
        return out

    def elaborate(self, platform):
        m = Module()
        d, lat, nw = self.divider, self.read_latency, self.nibbles_per_word
        prefix, depth = self.prefix_clocks, self.fifo_depth
        bus = self.bus

        m.submodules.fifo = q = fifo.SyncFIFOBuffered(width=8 * self.word_bytes, depth=depth)
        m.d.comb += [self.o.payload.eq(q.r_data), self.o.valid.eq(q.r_rdy),
                     q.r_en.eq(self.o.ready)]

        busy = Signal()          # CS# low: a transaction runs
        draining = Signal()      # no SPI clock left; waiting for the last nibbles
        active = Signal()        # this cycle is inside an SPI clock
        tick = Signal(range(d))  # cycle within the SPI clock
        # Index of the current SPI clock (or of the next one, between clocks) among
        # the header and dummy clocks; every data clock has index ``prefix``.
        index = Signal(range(prefix + 1))
        left = Signal(self.length_width + 1)   # nibbles the length still asks for
        wnib = Signal(range(nw))               # place in its word of the next nibble launched
        reserved = Signal(range(depth + 1))    # words launched but not yet in the FIFO
        gap = Signal(range(self.cs_high))      # CS# high cycles still owed
        addr = Signal(self.addr_width)

        header = self._header(addr) + [(0, 0)] * (prefix + 1 - self.header_clocks)
        hdr_o = Array(Const(v, 4) if isinstance(v, int) else v for v, _ in header)
        hdr_oe = Array(Const(oe, 4) for _, oe in header)

        def sck(k):
            # SCLK of the cycle ``k`` cycles into an SPI clock: low for D half cycles.
            return Cat(2 * k >= d, 2 * k + 1 >= d)

        # What the next SPI clock is, once the current one (if it ends now) is done.
        last_tick = Signal()
        m.d.comb += last_tick.eq(tick == d - 1)
        ends = active & last_tick
        nxt = Signal.like(index)
        m.d.comb += nxt.eq(Mux(ends & (index < prefix), index + 1, index))
        launches = nxt >= prefix - 1          # its falling edge launches a nibble
        more = (nxt < prefix - 1) | (left != 0) | (wnib != 0)
        need_room = launches & (wnib == 0)    # it starts a word: reserve its place
        room = (q.level + reserved) < depth
        go = Signal()
        m.d.comb += go.eq(busy & ~draining & (~active | last_tick) & more & (~need_room | room))

        # Falling edges that launch a nibble, delayed to the cycle the nibble is taken.
        pipe = Signal(lat + 1)
        m.d.sync += pipe.eq(Cat(ends & (index >= prefix - 1), pipe[:-1]))
        take = pipe[lat]
        rnib = Signal(range(nw))
        nibbles = Signal(4 * nw)
        full = Cat(nibbles[4:], bus.dq_i)     # nibble j of the word at bits 4j..4j+3
        push = take & (rnib == nw - 1)
        with m.If(take):
            m.d.sync += [nibbles.eq(full), rnib.eq(Mux(rnib == nw - 1, 0, rnib + 1))]
        # Nibble 2b of a word is the high half of its byte b.
        m.d.comb += [q.w_data.eq(Cat(*(Cat(full[8 * b + 4:8 * b + 8], full[8 * b:8 * b + 4])
                                       for b in range(self.word_bytes)))),
                     q.w_en.eq(push)]
        m.d.sync += reserved.eq(reserved + (go & need_room) - push)

        # The SPI clock sequencer.
        with m.If(active & ~last_tick):
            m.d.sync += [tick.eq(tick + 1), bus.sck.eq(sck(tick + 1))]
        with m.Else():
            m.d.sync += index.eq(nxt)
            with m.If(go):
                m.d.sync += [active.eq(1), tick.eq(0), bus.sck.eq(sck(0)),
                             bus.dq_o.eq(hdr_o[nxt]), bus.dq_oe.eq(hdr_oe[nxt])]
                with m.If(launches):
                    m.d.sync += [left.eq(Mux(left != 0, left - 1, 0)),
                                 wnib.eq(Mux(wnib == nw - 1, 0, wnib + 1))]
            with m.Else():
                m.d.sync += [active.eq(0), bus.sck.eq(0)]
                with m.If(busy & ~more):
                    m.d.sync += draining.eq(1)

        # CS# rises once the last nibble is being taken; then ``cs_high`` cycles of rest.
        with m.If(draining & (pipe[:lat] == 0)):
            m.d.sync += [busy.eq(0), draining.eq(0), bus.cs_n.eq(1), bus.dq_oe.eq(0),
                         gap.eq(self.cs_high - 1)]
        with m.If(~busy & (gap != 0)):
            m.d.sync += gap.eq(gap - 1)
        m.d.comb += self.req.ready.eq(~busy & (gap == 0))
        with m.If(self.req.valid & self.req.ready & (self.req.payload.length != 0)):
            m.d.sync += [busy.eq(1), bus.cs_n.eq(0), addr.eq(self.req.payload.addr),
                         left.eq(self.req.payload.length << 1), index.eq(0), wnib.eq(0),
                         bus.dq_o.eq(hdr_o[0]), bus.dq_oe.eq(hdr_oe[0])]
        return m

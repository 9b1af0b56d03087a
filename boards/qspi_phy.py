"""Board PHYs for the quad-SPI flash bus of :mod:`hw.qspi`.

A :class:`QSPIPHY` turns the reader's per-cycle bus into pins:

* CS# and each DQ line go through an IOB register (``io.FFBuffer``; one per DQ
  line, since each has its own output enable). Outputs reach the pins one
  cycle after the bus shows them; ``dq_i`` shows the pins as they were at the
  rising edge that starts its cycle.
* SCLK cannot use an IOB register on these boards: it is the FPGA's
  configuration clock pin, reachable only through a primitive that takes a
  fabric signal (Xilinx 7-series ``STARTUPE2.USRCCLKO``, ECP5 ``USRMCLK``).
  :class:`SCLKForward` makes that signal from the bus's two half-cycle SCLK
  levels with one rising-edge and one falling-edge flip-flop and an XOR: each
  clock edge changes exactly one XOR input, so the output cannot glitch, and
  the waveform comes out one cycle late, in step with the IOB registers.
  At an even divider SCLK only changes at rising edges, and the forwarder is a
  single flip-flop driving the primitive directly: the shortest, best bounded
  path (the timing budgets in ``docs/boards.md`` count on it).

So relative to the bus the PHY adds one cycle on the way out and one on the
way in; the board's ``read_latency`` counts both plus the round trip (SCLK
path, the flash's clock-to-output time, the board). :data:`QSPI_BOARDS` holds
each board's pins, clock primitive, divider and read latency; ``docs/boards.md``
has the timing budgets behind them.
"""

from dataclasses import dataclass

from amaranth.build import Attrs, Pins, PinsN, Resource, ResourceError, Subsignal
from amaranth.hdl import (ClockDomain, ClockSignal, Const, Instance, Module, Mux, ResetSignal,
                          Signal)
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from hw.qspi import qspi_bus

__all__ = ["SCLKForward", "QSPIPHY", "QSPIBoardPins", "QSPI_BOARDS", "qspi_board"]


@dataclass(frozen=True)
class QSPIBoardPins:
    """How a board's configuration flash is wired, and how fast it may be read.

    ``clock`` is the primitive SCLK goes through; ``startup_clocks`` are SCLK
    pulses it swallows after configuration; ``part`` names the flash whose 0xEB
    timing the reader uses (:data:`hw.qspi.PARTS`); ``divider`` and
    ``read_latency`` are the safe reader settings at the board clock.
    """
    cs: str
    dq: str
    attrs: dict
    clock: str
    startup_clocks: int
    part: str
    divider: int
    read_latency: int

    def resource(self):
        """CS# and the four DQ lines; SCLK is no user pin on these boards."""
        return Resource("qspi_flash", 0, Subsignal("cs", PinsN(self.cs, dir="o")),
                        Subsignal("dq", Pins(self.dq, dir="io")), Attrs(**self.attrs))


_ARTY = QSPIBoardPins(
    # Digilent's Arty A7 master XDC (rev. D/E): qspi_cs L13 (FCS_B), qspi_dq[0..3] K17
    # K18 L14 M14 (D00..D03) and no clock: SCK is CCLK_0, a dedicated pin of bank 0.
    cs="L13", dq="K17 K18 L14 M14", attrs={"IOSTANDARD": "LVCMOS33", "SLEW": "FAST"},
    # UG470: after configuration the first three USRCCLKO cycles switch the clock
    # source and never reach CCLK; one more for margin (CS# is high meanwhile).
    clock="STARTUPE2", startup_clocks=4, part="S25FL128S",
    # 50 MHz SCLK (the S25FL128S allows 80 MHz for 0xEB at its default latency
    # code); the read window at 100 MHz puts the sample at latency 3 (docs/boards.md).
    divider=2, read_latency=3)

QSPI_BOARDS = {
    "arty_a7_35": _ARTY,
    "arty_a7_100": _ARTY,
    # amaranth-boards' ULX3S spi_flash: CS# R2, MOSI W2, MISO V2, WP# Y2, HOLD# W1;
    # its SCLK (U3, CCLK) goes through USRMCLK, which is why the resource has no clk.
    "ulx3s": QSPIBoardPins(
        cs="R2", dq="W2 V2 Y2 W1",
        attrs={"IO_TYPE": "LVCMOS33", "PULLMODE": "NONE", "DRIVE": "4"},
        clock="USRMCLK", startup_clocks=0, part="IS25LP128F",
        # 25 MHz SCLK: the gated board clock; the sample lands at latency 2.
        divider=1, read_latency=2),
}


def qspi_board(name):
    """The :class:`QSPIBoardPins` of a board registry name; ValueError if it has none."""
    if name not in QSPI_BOARDS:
        raise ValueError(f"{name}: no quad-SPI flash PHY for this board; boards with one: "
                         + ", ".join(sorted(QSPI_BOARDS)))
    return QSPI_BOARDS[name]


class SCLKForward(wiring.Component):
    """``sck`` (levels in the two halves of a cycle) as one glitch-free signal, a cycle late.

    With ``single_edge`` the two halves of every cycle must be equal (an even
    divider): ``sclk`` is then one rising-edge flip-flop, nothing after it.

    Members
    -------
    sck : In(2)
    sclk : Out(1)
    """

    def __init__(self, *, single_edge=False):
        self.single_edge = single_edge
        super().__init__({"sck": In(2), "sclk": Out(1)})

    def elaborate(self, platform):
        m = Module()
        if self.single_edge:
            m.d.sync += self.sclk.eq(self.sck[0])
            return m
        m.domains.sclk_fall = fall = ClockDomain(clk_edge="neg", local=True)
        m.d.comb += [fall.clk.eq(ClockSignal()), fall.rst.eq(ResetSignal(allow_reset_less=True))]
        rise_q, fall_q, second = Signal(), Signal(), Signal()
        # sclk = rise_q ^ fall_q: the rising edge sets the first half, the falling
        # edge the second, each by flipping its own flip-flop when the level changes.
        m.d.sync += [rise_q.eq(fall_q ^ self.sck[0]), second.eq(self.sck[1])]
        m.d.sclk_fall += fall_q.eq(rise_q ^ second)
        m.d.comb += self.sclk.eq(rise_q ^ fall_q)
        return m


class QSPIPHY(wiring.Component):
    """The pins of a board's configuration flash, driven from the reader's bus.

    ``sclk`` is the forwarded flash clock: it goes to ``USRMCLK``, instantiated
    here, or to the platform's one ``STARTUPE2`` (:mod:`boards.startup`).
    ``ready`` rises once the ``startup_clocks`` pulses are out; hold the
    reader until then. ``divider`` is the reader's (default: the board's); at
    an even one the SCLK forwarder is a single flip-flop.

    Members
    -------
    bus : In(qspi_bus())
    sclk : Out(1)
    ready : Out(1)
    """

    def __init__(self, pins, *, divider=None):
        self.pins = pins
        self.divider = pins.divider if divider is None else divider
        super().__init__({"bus": In(qspi_bus()), "sclk": Out(1), "ready": Out(1)})

    def elaborate(self, platform):
        m = Module()
        try:
            platform.lookup("qspi_flash", 0)
        except ResourceError:
            platform.add_resources([self.pins.resource()])
        pins = platform.request("qspi_flash", 0, dir="-")

        m.submodules.cs = cs = io.FFBuffer("o", pins.cs)
        m.d.comb += cs.o.eq(~self.bus.cs_n)
        for k in range(4):
            m.submodules[f"dq{k}"] = dq = io.FFBuffer("io", pins.dq[k])
            m.d.comb += [dq.o.eq(self.bus.dq_o[k]), dq.oe.eq(self.bus.dq_oe[k]),
                         self.bus.dq_i[k].eq(dq.i)]

        # SCLK pulses the clock primitive swallows, sent with CS# still high: one a
        # cycle (low, then high), or one every two cycles for a single-edge forwarder.
        single = self.divider % 2 == 0
        count = self.pins.startup_clocks * (2 if single else 1)
        pulses = Signal(range(count + 1), init=count)
        with m.If(pulses != 0):
            m.d.sync += pulses.eq(pulses - 1)
        m.d.comb += self.ready.eq(pulses == 0)
        # (With no pulses to send, ``pulses`` has no bits and ``ready`` is constant.)
        pulse = Mux(pulses[0], 0b11, 0b00) if single and count else 0b10
        m.submodules.sclk = fwd = SCLKForward(single_edge=single)
        m.d.comb += [fwd.sck.eq(Mux(self.ready, self.bus.sck, pulse)), self.sclk.eq(fwd.sclk)]
        if self.pins.clock == "USRMCLK":
            # USRMCLKTS low: the MCLK pin is driven (ECP5 sysCONFIG, TN1260).
            m.submodules.usrmclk = Instance("USRMCLK", i_USRMCLKI=fwd.sclk,
                                            i_USRMCLKTS=Const(0, 1))
        else:
            # The platform's STARTUPE2 (boards/startup.py): a device has only one.
            if not hasattr(platform, "set_usrcclko"):
                raise ValueError(f"{type(platform).__name__} cannot drive CCLK; use the "
                                 "platform of boards.registry (boards/startup.py)")
            platform.set_usrcclko(fwd.sclk)
        return m

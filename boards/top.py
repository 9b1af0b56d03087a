"""The board top: an accelerator behind the board's USB UART.

    rx pin -> UARTRx -> FIFO -> BytesToLanes -> accelerator.i
    accelerator.o -> LanesToBytes -> UARTTx -> tx pin

The byte format is :mod:`hw.serdes`'s; the host side is :mod:`boards.host`;
docs/boards.md describes the protocol.
"""

import math
from fractions import Fraction

from amaranth.hdl import (ClockDomain, ClockSignal, DomainRenamer, Elaboratable, Module, Shape,
                          Signal)
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from hw.fifo import StreamFIFO
from hw.serdes import BytesToLanes, LanesToBytes
from hw.uart import UARTRx, UARTTx

from .clocking import PLL_NET, PLLClock, global_buffer, pll_frequency
from .host import LaneFormat
from .registry import Board, BoardError, get_board
from .toolchain import BoardClock

__all__ = ["UARTBridge", "BoardTop", "DEFAULT_BAUD", "lane_format", "clocks_per_bit",
           "fastest_baud"]

# Every USB-UART and terminal program speaks 115200 baud; the boards' FTDI bridges go
# much faster, and a top runs at the fastest rate both ends make exactly
# (:func:`fastest_baud`) unless given ``baud=``; this one is the floor.
DEFAULT_BAUD = 115_200

# The largest baud-rate error the UART tolerates with margin: a receiver sampling
# mid-bit drifts half a bit over a 10-bit frame at 5 %; half of that is safe.
_MAX_BAUD_ERROR = 0.025


def lane_format(port):
    """The :class:`~boards.host.LaneFormat` of a stream port carrying an array of lanes."""
    layout = port.payload.shape()
    elem = Shape.cast(layout.elem_shape)
    return LaneFormat(elem.width, elem.signed, layout.length)


def clocks_per_bit(clock_hz, baud, *, board_name="the board", max_baud=None):
    """Clock cycles per UART bit for ``baud``, or BoardError if the rate is unusable."""
    if not isinstance(baud, int) or baud <= 0:
        raise BoardError(f"baud rate must be a positive integer, not {baud!r}")
    if max_baud is not None and baud > max_baud:
        raise BoardError(f"{baud} baud is faster than {board_name}'s USB-UART allows "
                         f"({max_baud} baud)")
    cycles = round(clock_hz / baud)
    if cycles < 4:
        raise BoardError(f"{baud} baud leaves {clock_hz / baud:.2f} clock cycles per bit at "
                         f"{clock_hz / 1e6:g} MHz; the UART needs at least 4")
    error = abs(clock_hz / cycles - baud) / baud
    if error > _MAX_BAUD_ERROR:
        raise BoardError(f"{baud} baud is {error:.1%} off at {clock_hz / 1e6:g} MHz "
                         f"({cycles} cycles per bit); choose a rate that divides the clock "
                         "more evenly")
    return cycles


def fastest_baud(clock_hz, board):
    """The highest whole baud rate that both ends make exactly: the FPGA's UART as
    ``clock_hz / k`` (``k >= 4`` whole cycles a bit) and the board's FTDI bridge as
    ``uart_max_baud / d``, its divisor ``d`` being 1, 1.5 or a multiple of 1/8 from 2
    (FTDI AN232B-05; ``uart_max_baud`` is the chip's 3 or 12 MHz baud clock)."""
    clock = Fraction(clock_hz).limit_denominator(1_000_000)
    base = Fraction(board.uart_max_baud)
    k = max(4, math.ceil(clock / base))
    while clock / k >= DEFAULT_BAUD:
        rate = clock / k
        d = base / rate
        if rate.denominator == 1 and (d in (1, Fraction(3, 2))
                                      or (d >= 2 and (8 * d).denominator == 1)):
            return int(rate)
        k += 1
    return DEFAULT_BAUD


class UARTBridge(wiring.Component):
    """An accelerator behind a UART: bytes in on ``rx``, result bytes out on ``tx``.

    Received bytes wait in a FIFO of ``rx_fifo_depth`` bytes, because a UART
    cannot stall its sender; the accelerator's backpressure reaches back to the
    FIFO and no further. A break on ``rx`` resets the FIFO, the byte converters,
    the accelerator and the transmitter, so a host can start clean after an
    aborted transfer. The reset lasts ``reset_cycles`` cycles after the break,
    and as long after start-up (or a reset of ``sync``); ``reset`` shows it, a
    flip-flop output, for logic outside the bridge that must start over with
    the accelerator (the layer engine's flash side, in its own clock domain).

    Members
    -------
    rx : In(1)
        Serial input (idle high).
    tx : Out(1)
        Serial output (idle high).
    activity : Out(1)
        High for about ``led_cycles`` (rounded up to a step of a power of two) after any
        byte in or out.
    result : Out(1)
        High once output bytes have gone out, until the next input byte arrives.
    error : Out(1)
        Sticky: a received frame was malformed or a byte was lost because the
        FIFO was full. A break clears it.
    reset : Out(1)
        High while the accelerator is held in reset: after start-up, and from the
        cycle after a break. The bridge resets its parts with this flip-flop alone,
        never with the receiver's combinational break flag, so the reset net that
        reaches every flip-flop of the accelerator starts at a register.

    The parts run in a domain of their own, ``sync``'s clock with ``reset`` as its
    only reset, so their flip-flops take it straight from that register, not
    through a LUT joining it to ``sync``'s reset (which sets ``reset`` anyway).
    ``reset_buffer(m, signal)``, if given, returns the net that carries it to them:
    on ECP5, a global buffer (:func:`boards.clocking.global_buffer`), as a net to
    every flip-flop of a large design routed through the fabric takes longer
    than a 100 MHz period.
    """

    def __init__(self, accelerator, clocks_per_bit, *, rx_fifo_depth=512, led_cycles=1,
                 reset_cycles=1, reset_buffer=None):
        self.reset_buffer = reset_buffer
        self.accelerator = accelerator
        self.clocks_per_bit = clocks_per_bit
        self.rx_fifo_depth = rx_fifo_depth
        self.led_cycles = max(1, int(led_cycles))
        self.reset_cycles = max(1, int(reset_cycles))
        self.in_format = lane_format(accelerator.i)
        self.out_format = lane_format(accelerator.o)
        super().__init__({
            "rx": In(1, init=1), "tx": Out(1, init=1),
            "activity": Out(1), "result": Out(1), "error": Out(1), "reset": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        in_shape = Shape(self.in_format.width, self.in_format.signed)
        out_shape = Shape(self.out_format.width, self.out_format.signed)
        m.submodules.uart_rx = rx = UARTRx(self.clocks_per_bit)

        # ``self.reset`` is a flip-flop (it may drive an asynchronous reset elsewhere):
        # high from start-up, and from the cycle after a break, for ``reset_cycles``.
        left = Signal(range(self.reset_cycles + 1), init=self.reset_cycles - 1)
        with m.If(rx.brk):
            m.d.sync += [self.reset.eq(1), left.eq(self.reset_cycles - 1)]
        with m.Elif(left != 0):
            m.d.sync += left.eq(left - 1)
        with m.Else():
            m.d.sync += self.reset.eq(0)
        fifo = StreamFIFO(8, self.rx_fifo_depth)
        des = BytesToLanes(in_shape, self.in_format.count)
        ser = LanesToBytes(out_shape, self.out_format.count)
        tx = UARTTx(self.clocks_per_bit)
        m.domains.parts = parts = ClockDomain("parts", local=True)
        m.d.comb += [parts.clk.eq(ClockSignal("sync")),
                     parts.rst.eq(self.reset if self.reset_buffer is None
                                  else self.reset_buffer(m, self.reset))]
        for name, part in [("rx_fifo", fifo), ("bytes_to_lanes", des),
                           ("accelerator", self.accelerator), ("lanes_to_bytes", ser),
                           ("uart_tx", tx)]:
            m.submodules[name] = DomainRenamer({"sync": "parts"})(part)

        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]
        wiring.connect(m, rx.o, fifo.i)
        wiring.connect(m, fifo.o, des.i)
        wiring.connect(m, des.o, self.accelerator.i)
        wiring.connect(m, self.accelerator.o, ser.i)
        wiring.connect(m, ser.o, tx.i)

        got_byte = rx.o.valid & rx.o.ready
        sent_byte = tx.i.valid & tx.i.ready

        # The LED stays on for led_cycles counted in steps of 2 ** shift cycles: two short
        # counters rather than one long one, whose loaded, decremented carry chain
        # (22 bits at 50 MHz) was the slowest path of a small design on the iCE40.
        shift = max(0, self.led_cycles.bit_length() - 8)
        tick = Signal(init=1)
        if shift:
            prescale = Signal(shift)
            m.d.sync += [prescale.eq(prescale + 1), tick.eq(prescale.all())]
        steps = -(-self.led_cycles >> shift)
        stretch = Signal(range(steps + 1))
        with m.If(got_byte | sent_byte):
            m.d.sync += stretch.eq(steps)
        with m.Elif((stretch != 0) & tick):
            m.d.sync += stretch.eq(stretch - 1)
        m.d.comb += self.activity.eq(stretch != 0)

        with m.If(got_byte):
            m.d.sync += self.result.eq(0)
        with m.Elif(sent_byte):
            m.d.sync += self.result.eq(1)

        with m.If(rx.brk):
            m.d.sync += self.error.eq(0)
        with m.Elif(rx.error | rx.overrun):
            m.d.sync += self.error.eq(1)
        return m


class BoardTop(Elaboratable):
    """The top of a board build: the board clock, the accelerator and its UART.

    ``sync`` runs at ``clock_hz`` (default: the board's ``default_clock_hz``):
    the oscillator itself where it runs at that frequency (Amaranth creates the
    domain), else the board's PLL (:class:`boards.clocking.PLLClock`), at the
    frequency closest to the request that it makes (``clock_hz`` after
    construction). The UART divisor follows the clock.
    LED 0 shows UART activity, LED 1 that a result has been sent, LED 2 (where
    the board has one) a receive error. On the ULX3S the FTDI's ``TXDEN``
    line (amaranth-boards' ``uart_tx_enable``) is left alone: it is an output
    of the FT231X, and the UART works without it.

    Elaborated without a platform (in simulation) the top is just the
    :class:`UARTBridge`; drive ``top.bridge.rx`` and watch ``top.bridge.tx``.

    Parameters
    ----------
    accelerator : a Component with streams ``i`` and ``o`` of integer lanes
    board : a :class:`~boards.registry.Board` or its name
    baud : UART rate (default: :func:`fastest_baud` at the clock)
    rx_fifo_depth : input bytes buffered while the accelerator stalls
    clock_hz : the ``sync`` clock asked for
    """

    def __init__(self, accelerator, board, *, baud=None, rx_fifo_depth=512,
                 clock_hz=None):
        try:
            self.board = board if isinstance(board, Board) else get_board(board)
            self.clock_hz = pll_frequency(self.board, clock_hz or self.board.sync_hz)
            baud = fastest_baud(self.clock_hz, self.board) if baud is None else baud
            self.clocks_per_bit = clocks_per_bit(self.clock_hz, baud,
                                                 board_name=self.board.name,
                                                 max_baud=self.board.uart_max_baud)
        except BoardError:
            # A top refused for a user error is not an unused design: no warning at exit
            # on top of the one-line error.
            self._MustUse__silence = True
            raise
        self.baud = baud
        self.accelerator = accelerator
        # 50 ms: long enough to see a single byte flash the LED.
        self.bridge = UARTBridge(accelerator, self.clocks_per_bit, rx_fifo_depth=rx_fifo_depth,
                                 led_cycles=int(self.clock_hz) // 20,
                                 reset_buffer=global_buffer(self.board.family))

    @property
    def board_clocks(self):
        """``sync`` and what nextpnr calls its clock (a PLL's output net is kept by name)."""
        if self.clock_hz == self.board.clock_hz:
            return {"sync": BoardClock(self.clock_hz)}
        return {"sync": BoardClock(self.clock_hz, f"clock.{PLL_NET}")}

    @property
    def in_format(self):
        return self.bridge.in_format

    @property
    def out_format(self):
        return self.bridge.out_format

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        if platform is None:
            return m
        if self.clock_hz != self.board.clock_hz:
            PLLClock(self.board, self.clock_hz).domain(m)
        connect_pins(m, platform, bridge, self.board)
        return m


def connect_pins(m, platform, bridge, board):
    """The bridge's UART to the board's USB serial pins, and its activity, result and
    error flags to as many of the board's LEDs as it has."""
    uart = platform.request("uart", 0, dir="-")
    m.submodules.rx_buffer = rx = io.Buffer("i", uart.rx)
    m.submodules.tx_buffer = tx = io.Buffer("o", uart.tx)
    m.d.comb += [bridge.rx.eq(rx.i), tx.o.eq(bridge.tx)]
    for index, signal in enumerate([bridge.activity, bridge.result, bridge.error]):
        if index < board.leds:
            m.submodules[f"led{index}"] = led = io.Buffer("o", platform.request(
                "led", index, dir="-"))
            m.d.comb += led.o.eq(signal)

"""An 8N1 UART: a byte stream to and from a serial line.

Both directions take the bit period as a whole number of clock cycles
(``clocks_per_bit``); the board top picks it from its clock and baud rate. A
frame is a start bit (0), eight data bits LSB first, and a stop bit (1); the
line idles high.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx"]


def _check_clocks_per_bit(clocks_per_bit):
    if not isinstance(clocks_per_bit, int) or clocks_per_bit < 4:
        # Below 4 cycles per bit the mid-bit sample has no margin left for the
        # two-cycle input synchronizer and for a transmitter running a little fast.
        raise ValueError(f"clocks_per_bit must be an integer >= 4, not {clocks_per_bit!r}")
    return clocks_per_bit


class UARTRx(wiring.Component):
    """Receive 8N1 frames from ``rx`` as a stream of bytes.

    The line is synchronized to ``sync`` by two flip-flops. A falling edge starts
    a frame; the start bit is checked half a bit later (a glitch shorter than
    that is ignored) and every later bit is sampled in its middle. A frame whose
    stop bit is 1 yields a byte on ``o``. A serial line cannot wait, so a byte
    that arrives while the previous one still waits on ``o`` is lost and
    ``overrun`` pulses; put a FIFO behind ``o`` if its consumer may stall.

    A frame whose stop bit is 0 pulses ``error``; if all of its bits were 0 it
    is a *break* (the line held low for a whole frame): ``brk`` pulses too and
    a byte still waiting on ``o`` is dropped.
    After an error the receiver waits for the line to go idle (high) before it
    looks for the next start bit.

    Members
    -------
    rx : In(1)
        The serial line (idle high).
    o : Out(stream.Signature(8))
        Received bytes.
    error : Out(1)
        One-cycle pulse: a frame ended without its stop bit.
    brk : Out(1)
        One-cycle pulse: a break was received.
    overrun : Out(1)
        One-cycle pulse: a byte was lost because ``o`` was not taken in time.
    """

    def __init__(self, clocks_per_bit: int):
        self.clocks_per_bit = _check_clocks_per_bit(clocks_per_bit)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "error": Out(1),
            "brk": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.clocks_per_bit
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(n))
        bit = Signal(range(9))
        shift = Signal(8)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("idle"):
                with m.If(~line):
                    m.d.sync += timer.eq(n // 2 - 1)
                    m.next = "start"
            with m.State("start"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.next = "idle"                      # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(n - 1), bit.eq(0)]
                    m.next = "data"
            with m.State("data"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), timer.eq(n - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "stop"
            with m.State("stop"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    # Back to idle at mid-stop-bit, so a transmitter that runs a
                    # little fast can start its next frame early.
                    with m.If(self.o.valid & ~self.o.ready):
                        m.d.comb += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                    m.next = "idle"
                with m.Else():
                    m.d.comb += [self.error.eq(1), self.brk.eq(shift == 0)]
                    with m.If(shift == 0):
                        # A break means the sender started over: what it sent
                        # before is void, including a byte still waiting on ``o``.
                        m.d.sync += self.o.valid.eq(0)
                    m.next = "wait_idle"
            with m.State("wait_idle"):
                with m.If(line):
                    m.next = "idle"
        return m


class UARTTx(wiring.Component):
    """Send the bytes of stream ``i`` as 8N1 frames on ``tx``.

    ``i.ready`` is high while the transmitter is idle; a byte taken is sent at
    once, back to back with the previous one when one is waiting.

    Members
    -------
    i : In(stream.Signature(8))
        Bytes to send.
    tx : Out(1)
        The serial line, driven from a register (idle high).
    busy : Out(1)
        A frame is being sent.
    """

    def __init__(self, clocks_per_bit: int):
        self.clocks_per_bit = _check_clocks_per_bit(clocks_per_bit)
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.clocks_per_bit
        timer = Signal(range(n))
        # Bits still to send after the one on the line: stop, data[7:0] -> 9.
        left = Signal(range(10))
        frame = Signal(9)                      # data bits then the stop bit, LSB first

        m.d.comb += self.i.ready.eq(~self.busy)
        with m.If(~self.busy):
            with m.If(self.i.valid):
                m.d.sync += [
                    self.tx.eq(0),                              # start bit
                    frame.eq(Cat(self.i.payload, Const(1, 1))),
                    timer.eq(n - 1), left.eq(9), self.busy.eq(1),
                ]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Elif(left != 0):
            m.d.sync += [self.tx.eq(frame[0]), frame.eq(frame >> 1),
                         timer.eq(n - 1), left.eq(left - 1)]
        with m.Else():
            m.d.sync += self.busy.eq(0)         # the stop bit has had its full period
        return m

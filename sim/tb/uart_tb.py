"""The virtual board's line: a host's UART for a board top in Verilator.

The top has ``clk``, ``rst``, ``rx`` and ``tx`` (a :class:`boards.top.UARTBridge`).
The bench connects to the Unix socket ``SHIFTADD_UART_SOCKET``, where
:class:`sim.uart_board.SimPort` waits, and serves it until the host hangs up:

* from the host, frames ``W`` + 4-byte length + bytes (send them as 8N1 frames on
  ``rx``), ``B`` (hold ``rx`` low for 12 bit times: a break) and ``Q`` (stop);
* to the host, every byte decoded from ``tx``, as it arrives.

``SHIFTADD_UART_CPB`` is the clock cycles per bit; ``SHIFTADD_UART_CLOCKS`` (JSON)
maps further clock inputs of the top to their periods in ns (``clk`` has 10). While it
has nothing to send the bench lets the design run a frame's time between looks at the
socket.
"""

import json
import os
import socket
import struct

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

BREAK_BITS = 12


async def _send(dut, byte, cpb):
    for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
        dut.rx.value = bit
        await ClockCycles(dut.clk, cpb)


async def _listen(dut, sock, cpb):
    while True:
        await FallingEdge(dut.tx)
        await ClockCycles(dut.clk, cpb // 2)         # the middle of the start bit
        byte = 0
        for k in range(8):
            await ClockCycles(dut.clk, cpb)
            byte |= int(dut.tx.value) << k
        await ClockCycles(dut.clk, cpb)              # the stop bit
        sock.sendall(bytes([byte]))


def _frames(buf):
    """Split complete frames off ``buf``: ``(frames, rest)``."""
    frames = []
    while buf:
        kind = buf[:1]
        if kind == b"W":
            if len(buf) < 5:
                break
            (n,) = struct.unpack("<I", buf[1:5])
            if len(buf) < 5 + n:
                break
            frames.append((kind, buf[5:5 + n]))
            buf = buf[5 + n:]
        else:
            frames.append((kind, b""))
            buf = buf[1:]
    return frames, buf


@cocotb.test()
async def serve(dut):
    cpb = int(os.environ["SHIFTADD_UART_CPB"])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["SHIFTADD_UART_SOCKET"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for name, period in json.loads(os.environ.get("SHIFTADD_UART_CLOCKS", "{}")).items():
        cocotb.start_soon(Clock(getattr(dut, name), period, unit="ns").start())
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    cocotb.start_soon(_listen(dut, sock, cpb))
    sock.setblocking(False)
    buf = b""
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except BlockingIOError:
            chunk = None
        if chunk == b"":
            return                                    # the host hung up
        buf += chunk or b""
        frames, buf = _frames(buf)
        for kind, data in frames:
            if kind == b"Q":
                return
            if kind == b"B":
                dut.rx.value = 0
                await ClockCycles(dut.clk, BREAK_BITS * cpb)
                dut.rx.value = 1
                await ClockCycles(dut.clk, 2 * cpb)
            for byte in data:
                await _send(dut, byte, cpb)
        if not frames:
            await ClockCycles(dut.clk, 10 * cpb)

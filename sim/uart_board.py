"""A virtual board: a build's accelerator behind the board's UART bridge, in Verilator,
reached through a port object that behaves like pyserial's.

:class:`SimPort` is what ``python -m compiler run BUILD --port sim`` talks to. It
wraps the build's own Verilog (``accel.v``; the layer engine's ``engine_sim.v``, the
engine with its flash reader and a flash model) in the
:class:`boards.top.UARTBridge` every board top has (receive FIFO, byte
converters, transmitter, break reset), at 4 clock cycles per bit so that the
simulation spends its time in the accelerator rather than in the line, builds
that with Verilator once per design, and runs it under the cocotb bench
:mod:`sim.tb.uart_tb`, which turns the bytes written to the port into frames on
``rx`` and the frames on ``tx`` back into bytes to read. Everything between the
host's bytes and the accelerator is the hardware the board runs.
"""

import hashlib
import json
import os
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.lanes import lanes

from .verilator import SimulationError, build_model, ensure_verilator

__all__ = ["VerilogCore", "SimPort", "SIM_CLOCKS_PER_BIT"]

#: Clock cycles per UART bit on the virtual board (the fewest the receiver takes).
SIM_CLOCKS_PER_BIT = 4


class VerilogCore(wiring.Component):
    """A Verilog module with streams ``i`` and ``o`` of integer lanes, as Amaranth emits
    a component (ports ``clk``, ``rst``, ``i__valid``, ``i__ready``, ``i__payload``,
    and the same for ``o``), and further clock inputs ``clocks`` (the layer engine's
    ``flash_clk``), each a 1-bit member of that name.

    Members
    -------
    i : In(stream.Signature(lanes(in_shape, in_count)))
    o : Out(stream.Signature(lanes(out_shape, out_count)))
    """

    def __init__(self, module, in_shape, in_count, out_shape, out_count, clocks=()):
        self.module, self.clocks = module, tuple(clocks)
        super().__init__({
            "i": In(stream.Signature(lanes(Shape.cast(in_shape), in_count))),
            "o": Out(stream.Signature(lanes(Shape.cast(out_shape), out_count))),
            **{name: In(1) for name in self.clocks},
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = Instance(
            self.module, i_clk=ClockSignal(), i_rst=ResetSignal(),
            i_i__valid=self.i.valid, i_i__payload=self.i.payload.as_value(),
            o_i__ready=self.i.ready,
            o_o__valid=self.o.valid, o_o__payload=self.o.payload.as_value(),
            i_o__ready=self.o.ready,
            **{f"i_{name}": getattr(self, name) for name in self.clocks})
        return m


def uart_top_verilog(in_format, out_format, module="accel", clocks=(), rx_fifo_depth=512):
    """Verilog of ``uart_top``: the bridge around ``module``, at SIM_CLOCKS_PER_BIT; the
    module's further clock inputs ``clocks`` are inputs of the top."""
    from boards.top import UARTBridge
    core = VerilogCore(module, Shape(in_format.width, in_format.signed), in_format.count,
                       Shape(out_format.width, out_format.signed), out_format.count, clocks)
    bridge = UARTBridge(core, SIM_CLOCKS_PER_BIT, rx_fifo_depth=rx_fifo_depth)
    m = Module()
    m.submodules.bridge = bridge
    pins = {name: Signal(name=name) for name in clocks}
    m.d.comb += [getattr(core, name).eq(pin) for name, pin in pins.items()]
    return verilog.convert(m, name="uart_top", emit_src=False,
                           ports=[bridge.rx, bridge.tx, bridge.activity, bridge.result,
                                  bridge.error, *pins.values()])


class SimPort:
    """A pyserial-like port (``write``, ``read``, ``flush``, ``send_break``,
    ``reset_input_buffer``, ``close``) onto the virtual board: the Verilog ``module``
    of ``verilog`` (a file) behind the UART bridge.

    ``clocks`` maps the module's further clock inputs to their periods in ns (the
    bridge's clock has 10 ns); ``plusargs`` go to the simulation (the flash model's
    image). ``read(n)`` returns up to ``n`` bytes, fewer if ``timeout`` seconds (of
    wall time: the simulation is slower than the board) pass without a byte, as a
    serial port with a timeout does. ``work_dir`` keeps the Verilator build (one per
    design).
    """

    def __init__(self, verilog_file, module, in_format, out_format, *, work_dir, clocks=None,
                 plusargs=(), timeout=60.0, progress=None):
        from cocotb_tools.runner import get_runner  # noqa: F401  (fail early if missing)
        ensure_verilator()
        self.timeout = timeout
        clocks = dict(clocks or {})
        verilog_file = Path(verilog_file)
        work_dir = Path(work_dir).resolve()
        top_v = uart_top_verilog(in_format, out_format, module, tuple(clocks))
        digest = hashlib.sha256(verilog_file.read_bytes() + top_v.encode()).hexdigest()[:16]
        build_dir = work_dir / f"uart-{digest}"
        build_dir.mkdir(parents=True, exist_ok=True)
        (build_dir / "uart_top.v").write_text(top_v)
        runner = build_model([verilog_file, build_dir / "uart_top.v"], "uart_top", build_dir,
                             progress)

        self._tmp = tempfile.TemporaryDirectory(prefix="shiftadd-uart-")
        path = os.path.join(self._tmp.name, "line")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen(1)
        self._error = None

        def run():
            try:
                runner.test(test_module="sim.tb.uart_tb", hdl_toplevel="uart_top",
                            hdl_toplevel_lang="verilog", build_dir=build_dir,
                            test_dir=build_dir, log_file=build_dir / f"sim_{os.getpid()}.log",
                            results_xml=str(build_dir / f"results_{os.getpid()}.xml"),
                            plusargs=list(plusargs),
                            extra_env={"SHIFTADD_UART_SOCKET": path,
                                       "SHIFTADD_UART_CPB": str(SIM_CLOCKS_PER_BIT),
                                       "SHIFTADD_UART_CLOCKS": json.dumps(clocks)})
            except (SystemExit, Exception) as err:      # the runner exits on a failed test
                self._error = err

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self._server.settimeout(1.0)
        deadline = time.monotonic() + 120
        while True:
            try:
                self._sock, _ = self._server.accept()
                break
            except socket.timeout:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    self.close()
                    raise SimulationError("the virtual board did not start "
                                          f"(see {build_dir}/sim_{os.getpid()}.log)") from None
        self._buf = bytearray()

    # pyserial's interface ---------------------------------------------------------------

    def write(self, data):
        data = bytes(data)
        self._sock.sendall(b"W" + struct.pack("<I", len(data)) + data)
        return len(data)

    def flush(self):
        pass

    def read(self, n=1):
        deadline = time.monotonic() + self.timeout
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._sock.settimeout(min(left, 1.0))
            try:
                chunk = self._sock.recv(1 << 16)
            except socket.timeout:
                if not self._thread.is_alive():
                    break
                continue
            if not chunk:
                break
            self._buf += chunk
            deadline = time.monotonic() + self.timeout
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def send_break(self, duration=0.25):
        self._sock.sendall(b"B")

    def reset_input_buffer(self):
        self._buf.clear()
        self._sock.setblocking(False)
        try:
            while self._sock.recv(1 << 16):
                pass
        except BlockingIOError:
            pass
        finally:
            self._sock.setblocking(True)

    def close(self):
        sock = getattr(self, "_sock", None)
        if sock is not None:
            try:
                sock.sendall(b"Q")
            except OSError:
                pass
            sock.close()
            self._sock = None
        self._thread.join(timeout=30)
        self._server.close()
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

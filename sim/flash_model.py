"""A quad-SPI NOR flash for simulation, on the per-cycle bus of ``hw/qspi.py``.

:class:`QSPIFlashModel` answers the Quad I/O Fast Read (0xEB) of one flash
part with that part's real clock counts: 8 instruction clocks on DQ0, the
address on four lines, the mode clocks, the dummy clocks, then one data
nibble per falling SCLK edge, high nibble first, from the falling edge that
ends the last dummy clock until CS# rises. It flags everything else on
``errors`` (sticky; ``error`` is their OR) rather than guessing:

======  ==============================================================
bit     meaning
======  ==============================================================
0 CMD   an instruction other than 0xEB (the flash then stays silent)
1 MODE  mode bits that would put this part into continuous (XIP) read
2 SETUP DQ or its enable changed at the same cycle boundary as a rising
        SCLK edge (no set-up or hold time left)
3 FLOAT a line the flash samples was not driven at a rising edge
4 CLASH the reader drives a line while the flash drives data
5 CS    CS# changed while SCLK was high (mode 0 needs SCLK low)
6 IDLE  an SCLK edge with CS# high
7 SHORT CS# rose before the first data nibble of a command
======  ==============================================================

The bus is read per system cycle: ``sck[0]``/``sck[1]`` are the SCLK levels
in the two halves of the cycle, so edges happen at cycle boundaries or in the
middle of a cycle, and the model handles both in their order. The data lines
it drives appear on ``dq_i`` ``output_delay`` cycles after the cycle that
starts with (or contains) the falling edge launching them: 0 puts them there
in that very cycle, as a pin sampled within the cycle would; more stand for
the flash's clock-to-output time and the board. Lines nobody drives read 1
(the boards' pull-ups).

Every transaction is reported when CS# rises: ``txn`` is high for that cycle
with ``txn_addr`` (the address received), ``txn_nibbles`` (data nibbles
launched) and ``txn_errors``. ``commands`` counts 0xEB commands.

Memory: ``image`` (bytes) makes an Amaranth ``Memory``, for the Amaranth
simulator and small images; ``hex_file`` instead instantiates the Verilog
module :data:`ROM_VERILOG`, which ``$readmemh``-loads the file named by the
``+qspi_flash_hex=<path>`` plusarg at simulation start, or else the
``hex_file`` given here, a path relative to the simulation's working
directory as written into the Verilog. Add :data:`ROM_VERILOG` to the
simulator's sources and write the file with :func:`write_hex`; a Verilator
build then serves any contents of up to ``size`` bytes. Unwritten bytes read
0xFF, as erased flash does. Addresses wrap at ``size`` (a power of two), as a
real part wraps at its capacity.

This module imports nothing from the project (``sim/`` never does), so it
declares the bus itself; it matches ``hw.qspi.qspi_bus()`` member for member.
"""

from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import Cat, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["QSPIFlashModel", "FlashTiming", "PARTS", "ERRORS", "ROM_VERILOG", "write_hex",
           "hex_plusarg", "rom_size"]

INSTRUCTION = 0xEB

ERRORS = {"CMD": 0, "MODE": 1, "SETUP": 2, "FLOAT": 3, "CLASH": 4, "CS": 5, "IDLE": 6,
          "SHORT": 7}


@dataclass(frozen=True)
class FlashTiming:
    """0xEB clock counts of a part, and the mode bits that start continuous read.

    Mode byte ``m`` enters continuous read when ``m & xip_mask == xip_value``.
    """
    mode_clocks: int
    dummy_clocks: int
    xip_mask: int
    xip_value: int


PARTS = {
    # Spansion/Infineon S25FL128S, latency code 00: 2 mode + 4 dummy; Axh continues.
    "S25FL128S": FlashTiming(2, 4, 0xF0, 0xA0),
    # Winbond W25Q128JV: M7-0 then 4 dummy; M5-4 = 10b continues.
    "W25Q128JV": FlashTiming(2, 4, 0x30, 0x20),
    # ISSI IS25LP128F: 6 dummy cycles of which the first 2 carry the mode bits; AXh continues.
    "IS25LP128F": FlashTiming(2, 4, 0xF0, 0xA0),
}

ROM_MODULE = "qspi_flash_rom"

ROM_VERILOG = """\
// Flash contents for QSPIFlashModel: $readmemh at simulation start. The file is the
// +qspi_flash_hex=<path> plusarg if given, else the FILE parameter (relative to the
// simulation's working directory). Bytes the file does not set read 8'hff.
module qspi_flash_rom #(parameter DEPTH = 1024, parameter ABITS = 10,
                        parameter FILE = "") (
    input  wire [ABITS-1:0] addr,
    output wire [7:0]       data
);
    reg [7:0] mem [0:DEPTH-1];
    reg [8*1024-1:0] path;
    integer i;
    initial begin
        for (i = 0; i < DEPTH; i = i + 1) mem[i] = 8'hff;
        if ($value$plusargs("qspi_flash_hex=%s", path)) $readmemh(path, mem);
        else if (FILE != "") $readmemh(FILE, mem);
    end
    assign data = mem[addr];
endmodule
"""


def rom_size(nbytes):
    """The smallest power of two that holds ``nbytes`` (at least 16)."""
    return max(16, 1 << (max(nbytes, 1) - 1).bit_length())


def write_hex(path, image):
    """Write ``image`` (bytes) for ``$readmemh``: one byte per line, two hex digits."""
    text = "".join(f"{b:02x}\n" for b in bytes(image))
    Path(path).write_text(text)
    return Path(path)


def hex_plusarg(path):
    """The plusarg that makes :data:`ROM_VERILOG` load ``path`` (for ``simulate(plusargs=...)``)."""
    return f"+qspi_flash_hex={path}"


def _bus():
    return wiring.Signature({"cs_n": Out(1, init=1), "sck": Out(2), "dq_o": Out(4),
                             "dq_oe": Out(4), "dq_i": In(4)})


class QSPIFlashModel(wiring.Component):
    """A flash answering 0xEB on the reader's bus (module docstring).

    Members
    -------
    bus : In(the bus of hw.qspi.qspi_bus())
    errors : Out(8), sticky; error : Out(1)
    commands : Out(32)
    txn : Out(1); txn_addr : Out(addr_width); txn_nibbles : Out(32); txn_errors : Out(8)

    Parameters
    ----------
    part : a key of :data:`PARTS`, or a :class:`FlashTiming`.
    addr_width : address bits of the command (24 for 16 MB parts).
    output_delay : cycles from a launching falling edge to the nibble on ``dq_i``.
    image : bytes of a small memory (Amaranth simulator), or
    hex_file : a ``$readmemh`` file name for :data:`ROM_VERILOG` (Verilator).
    size : bytes of memory, a power of two (default: fits ``image``, else 16 MiB).
    """

    def __init__(self, *, part="S25FL128S", addr_width=24, output_delay=0, image=None,
                 hex_file=None, size=None):
        if (image is None) == (hex_file is None):
            raise ValueError("give exactly one of image (bytes) and hex_file (a file name)")
        self.timing = PARTS[part] if isinstance(part, str) else part
        if self.timing.dummy_clocks < 1:
            raise ValueError("the model needs at least one dummy clock")
        if addr_width % 4 or addr_width < 4:
            raise ValueError(f"addr_width must be a positive multiple of 4, not {addr_width}")
        self.addr_width, self.output_delay = addr_width, output_delay
        self.image = None if image is None else bytes(image)
        self.hex_file = hex_file
        self.size = size or (rom_size(len(self.image)) if self.image is not None else 1 << 24)
        if self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two, not {self.size}")
        if self.image is not None and len(self.image) > self.size:
            raise ValueError(f"image of {len(self.image)} bytes does not fit size {self.size}")
        self.header_clocks = 8 + addr_width // 4 + self.timing.mode_clocks
        self.prefix_clocks = self.header_clocks + self.timing.dummy_clocks
        super().__init__({
            "bus": In(_bus()), "errors": Out(8), "error": Out(1), "commands": Out(32),
            "txn": Out(1), "txn_addr": Out(addr_width), "txn_nibbles": Out(32),
            "txn_errors": Out(8),
        })

    def _memory(self, m, addr):
        abits = (self.size - 1).bit_length()
        byte = Signal(8)
        if self.image is not None:
            init = list(self.image) + [0xFF] * (self.size - len(self.image))
            m.submodules.mem = mem = Memory(shape=8, depth=self.size, init=init)
            rp = mem.read_port(domain="comb")
            m.d.comb += [rp.addr.eq(addr[:abits]), byte.eq(rp.data)]
        else:
            m.submodules.rom = Instance(ROM_MODULE, p_DEPTH=self.size, p_ABITS=abits,
                                        p_FILE=str(self.hex_file), i_addr=addr[:abits],
                                        o_data=byte)
        return byte

    def elaborate(self, platform):
        m = Module()
        bus, t = self.bus, self.timing
        aw, hdr, pre = self.addr_width, self.header_clocks, self.prefix_clocks
        err = {k: Signal(name=f"err_{k.lower()}") for k in ERRORS}

        prev_cs_n = Signal(init=1)
        prev_sck = Signal()       # SCLK in the second half of the previous cycle
        prev_dq = Signal(8)       # dq_o and dq_oe of the previous cycle
        m.d.sync += [prev_cs_n.eq(bus.cs_n), prev_sck.eq(bus.sck[1]),
                     prev_dq.eq(Cat(bus.dq_o, bus.dq_oe))]

        sel = ~bus.cs_n & ~prev_cs_n          # selected on both sides of the boundary
        s0, s1 = bus.sck[0], bus.sck[1]
        rise_b, fall_b = ~prev_sck & s0, prev_sck & ~s0    # at the cycle boundary
        rise_m, fall_m = ~s0 & s1, s0 & ~s1                # in mid-cycle
        m.d.comb += [
            err["CS"].eq((bus.cs_n != prev_cs_n) & (prev_sck | s0)),
            err["IDLE"].eq((bus.cs_n & (rise_m | fall_m))
                           | (bus.cs_n & prev_cs_n & (rise_b | fall_b))),
            err["SETUP"].eq(sel & rise_b & (Cat(bus.dq_o, bus.dq_oe) != prev_dq)),
        ]

        rises = Signal(32)        # rising edges in this transaction so far
        launched = Signal(32)     # data nibbles launched so far
        cmd = Signal(8)
        cmd_ok = Signal()
        addr = Signal(aw)
        mode = Signal(4 * t.mode_clocks)
        driving = Signal()
        terr = Signal(8)          # errors of this transaction

        # A rising edge: the bit or nibble the reader drives is taken.
        rise = Signal()
        m.d.comb += rise.eq((sel & rise_b) | (~bus.cs_n & rise_m))
        n = rises + 1             # number of this rising edge
        with m.If(rise):
            m.d.sync += rises.eq(n)
            with m.If(n <= 8):
                m.d.sync += cmd.eq(Cat(bus.dq_o[0], cmd[:7]))
                m.d.comb += err["FLOAT"].eq(~bus.dq_oe[0])
                with m.If(n == 8):
                    m.d.comb += err["CMD"].eq(Cat(bus.dq_o[0], cmd[:7]) != INSTRUCTION)
                    with m.If(Cat(bus.dq_o[0], cmd[:7]) == INSTRUCTION):
                        m.d.sync += [cmd_ok.eq(1), self.commands.eq(self.commands + 1)]
            with m.Elif(n <= hdr):
                m.d.comb += err["FLOAT"].eq(bus.dq_oe != 0b1111)
                with m.If(n <= 8 + aw // 4):
                    m.d.sync += addr.eq(Cat(bus.dq_o, addr[:-4]))
                with m.Else():
                    new_mode = Cat(bus.dq_o, mode[:-4]) if t.mode_clocks > 1 else bus.dq_o
                    m.d.sync += mode.eq(new_mode)
                    with m.If(n == hdr):
                        m.d.comb += err["MODE"].eq((new_mode & t.xip_mask) == t.xip_value)

        # A falling edge after the last dummy rising edge launches the next nibble.
        rises_before = Mux(fall_b, rises, rises + rise_b)
        launch = Signal()
        m.d.comb += launch.eq(((sel & fall_b) | (~bus.cs_n & fall_m)) & cmd_ok
                              & (rises_before >= pre))
        byte = self._memory(m, addr + launched[1:])
        nibble = Mux(launched[0], byte[:4], byte[4:])
        out = Signal(4)
        with m.If(launch):
            m.d.sync += [launched.eq(launched + 1), out.eq(nibble), driving.eq(1)]
        flash_drives = driving | launch
        m.d.comb += err["CLASH"].eq(~bus.cs_n & flash_drives & (bus.dq_oe != 0))
        lines = Mux(flash_drives, Mux(launch, nibble, out),
                    (bus.dq_o & bus.dq_oe) | ~bus.dq_oe)
        for _ in range(self.output_delay):
            delayed = Signal(4, init=0b1111)
            m.d.sync += delayed.eq(lines)
            lines = delayed
        m.d.comb += bus.dq_i.eq(lines)

        # CS# rising ends the transaction: report it, then forget it.
        ending = bus.cs_n & ~prev_cs_n
        # (a refused instruction was flagged already)
        m.d.comb += err["SHORT"].eq(ending & (launched == 0) & (cmd_ok | (rises < 8)))
        new = Cat(*(err[k] for k in ERRORS))
        m.d.sync += [self.errors.eq(self.errors | new), terr.eq(terr | new)]
        m.d.comb += [self.error.eq(self.errors != 0), self.txn.eq(ending),
                     self.txn_addr.eq(addr), self.txn_nibbles.eq(launched),
                     self.txn_errors.eq(terr | new)]
        with m.If(bus.cs_n):
            m.d.sync += [rises.eq(0), launched.eq(0), cmd.eq(0), cmd_ok.eq(0), addr.eq(0),
                         mode.eq(0), driving.eq(0), terr.eq(0)]
        return m

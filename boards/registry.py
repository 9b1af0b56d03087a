"""The boards this project targets, with their resource budgets.

Budgets come from the vendors' datasheets (numbers in the comments), counted in
the units the compiler's estimates use (``compiler/cost.py``): LUTs of the
family's native size, flip-flops, block RAMs in the family's native unit, and
DSP blocks. On Xilinx the block RAM unit is the RAMB18 (18 Kib; a RAMB36 tile
is two), on ECP5 the DP16KD (18 Kib), on iCE40 the EBR (4 Kib).
"""

from dataclasses import dataclass, field

from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

# amaranth-boards' Arty platforms, able to share their STARTUPE2 with the flash clock.
from .startup import ArtyA7_35Platform, ArtyA7_100Platform

__all__ = ["Board", "BoardError", "BOARDS", "ALIASES", "DEFAULT_BOARD", "get_board",
           "board_names"]


class BoardError(Exception):
    """A board-level problem a user can cause or fix (unknown board, missing tool or file).

    ``str(err)`` is one complete line; the compiler wraps it in its own BuildError.
    """


@dataclass(frozen=True)
class Board:
    """One FPGA board: its platform, device, clock and resource budget.

    Members
    -------
    name : registry name (``arty_a7_35``)
    platform_class : the amaranth-boards platform
    family : ``xilinx``, ``ecp5`` or ``ice40`` (keys of ``compiler.backends.dataflow.cost.FABRICS``)
    device : the FPGA part
    clock_hz : the board's oscillator
    default_clock_hz : the ``sync`` clock a build asks for unless told otherwise
        (``build --clock``); made from the oscillator by the board's PLL where it
        differs (:mod:`boards.clocking`). The clock the generated cores are
        pipelined for: 100 MHz on the ECP5 and Artix-7, 50 MHz on the iCE40UP5K.
    luts, lut_kind : logic LUTs and their size (``LUT6`` or ``LUT4``)
    ffs : flip-flops
    brams, bram_kind, bram_bits : block RAMs, the primitive counted, its size in bits
    dsps, dsp_kind : hard multiplier blocks (our designs use none; reported anyway)
    toolchain : Amaranth toolchain name (``Vivado``, ``Trellis``, ``IceStorm``)
    open_toolchain : True if Yosys + nextpnr (YoWASP) take it to a bitstream
    loader_board : the ``openFPGALoader -b`` name
    sram_load : False if openFPGALoader can only write the SPI flash on this board
    uart_max_baud : what the board's USB-UART bridge can do
    leds : user LEDs on the board itself
    """
    name: str
    platform_class: type
    family: str
    device: str
    clock_hz: int
    luts: int
    lut_kind: str
    ffs: int
    brams: int
    bram_kind: str
    bram_bits: int
    dsps: int
    dsp_kind: str
    toolchain: str
    open_toolchain: bool
    loader_board: str
    uart_bridge: str
    uart_max_baud: int
    leds: int
    sram_load: bool = True
    notes: tuple = field(default=())
    default_clock_hz: int = None

    @property
    def sync_hz(self):
        """The default ``sync`` clock."""
        return self.default_clock_hz or self.clock_hz

    @property
    def budget(self):
        """The resources the planner may use, as a JSON-able dict."""
        return {"luts": self.luts, "ffs": self.ffs, "brams": self.brams, "dsps": self.dsps,
                "bram_bits": self.bram_bits}

    def platform(self):
        """A fresh amaranth-boards platform instance (platforms hold per-build state)."""
        return self.platform_class()

    def describe(self):
        return (f"{self.name}: {self.device}, {self.clock_hz / 1e6:g} MHz, "
                f"{self.luts:,} {self.lut_kind}, {self.ffs:,} FFs, {self.brams} {self.bram_kind} "
                f"({self.bram_bits // 1024} Kib), {self.dsps} {self.dsp_kind}")


_ARTY = dict(family="xilinx", clock_hz=100_000_000, lut_kind="LUT6", bram_kind="RAMB18",
             bram_bits=18 * 1024, dsp_kind="DSP48E1", toolchain="Vivado",
             open_toolchain=False, uart_bridge="FT2232HQ", uart_max_baud=12_000_000, leds=4)

BOARDS = {b.name: b for b in [
    # Artix-7 XC7A35T (DS180, table 2): 5,200 slices of 4 LUT6 and 8 flip-flops,
    # 50 RAMB36 = 100 RAMB18 (1,800 Kib), 90 DSP48E1.
    Board("arty_a7_35", ArtyA7_35Platform, device="xc7a35ticsg324-1L",
          luts=20_800, ffs=41_600, brams=100, dsps=90, loader_board="arty_a7_35t", **_ARTY),
    # Artix-7 XC7A100T (DS180): 15,850 slices -> 63,400 LUT6, 126,800 flip-flops,
    # 135 RAMB36 = 270 RAMB18 (4,860 Kib), 240 DSP48E1.
    Board("arty_a7_100", ArtyA7_100Platform, device="xc7a100ticsg324-1L",
          luts=63_400, ffs=126_800, brams=270, dsps=240, loader_board="arty_a7_100t", **_ARTY),
    # ECP5 LFE5U-85F (FPGA-DS-02012, table 1.1): 84K LUT4 (41,820 slices of two LUT4
    # and two flip-flops: 83,640 of each), 208 sysMEM DP16KD blocks of 18 Kib
    # (3,744 Kib), 156 18x18 multipliers.
    Board("ulx3s", ULX3S_85F_Platform, family="ecp5", device="LFE5U-85F-6BG381C",
          clock_hz=25_000_000, luts=83_640, lut_kind="LUT4", ffs=83_640, brams=208,
          bram_kind="DP16KD", bram_bits=18 * 1024, dsps=156, dsp_kind="MULT18X18D",
          toolchain="Trellis", open_toolchain=True, loader_board="ulx3s",
          uart_bridge="FT231X", uart_max_baud=3_000_000, leds=8,
          default_clock_hz=100_000_000),
    # iCE40 UltraPlus iCE40UP5K (FPGA-DS-02008, table 1.1): 5,280 LUT4 each with a
    # flip-flop, 30 EBR of 4 Kib (120 Kib), 8 SB_MAC16 DSPs; also 4 SPRAM of 256 Kib
    # that the compiler does not use.
    Board("icebreaker", ICEBreakerPlatform, family="ice40", device="iCE40UP5K-SG48",
          clock_hz=12_000_000, luts=5_280, lut_kind="LUT4", ffs=5_280, brams=30,
          bram_kind="EBR", bram_bits=4 * 1024, dsps=8, dsp_kind="SB_MAC16",
          toolchain="IceStorm", open_toolchain=True, loader_board="ice40_generic",
          uart_bridge="FT2232H", uart_max_baud=12_000_000, leds=2,
          # openFPGALoader reaches the iCE40 through its SPI flash only.
          sram_load=False, default_clock_hz=50_000_000),
]}

# The Arty A7 comes as -35T and -100T; the -35T is the common, cheaper part, so a
# design that fits it runs on both and "arty_a7" means it.
ALIASES = {"arty_a7": "arty_a7_35"}

DEFAULT_BOARD = "arty_a7"


def board_names():
    """Every name get_board() accepts, aliases included, sorted."""
    return sorted([*BOARDS, *ALIASES])


def get_board(name):
    """The :class:`Board` called ``name`` (or an alias); BoardError lists the valid names."""
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in BOARDS:
        raise BoardError(f"unknown board {name!r}; choose one of: "
                         + ", ".join(f"{n} (= {ALIASES[n]})" if n in ALIASES else n
                                     for n in board_names()))
    return BOARDS[key]

"""The layer engine's two clocks on each board, and the primitives that make them.

The engine runs in ``sync``; the flash reader in ``flash``, a clock of its
own, so the flash can be read as fast as the board's flash path allows
whatever the engine's clock. :class:`EngineClocks` says, per board, how fast
each runs and how the reader is set for it; the compiler simulates the engine
with the same figures (``sim_flash_setup``), so simulated cycles are the
board's. The budget behind each choice is :mod:`boards.qspi_timing` and
``docs/boards.md``.

==========  ==========================  =============================  =======  =======
board       engine (``sync``)           flash reader (``flash``)       SCLK     stream
==========  ==========================  =============================  =======  =======
Arty A7     100 MHz, the oscillator     100 MHz, MMCME2_ADV, divider   50 MHz   25 MB/s
                                        2, read latency 3
ULX3S       25 MHz, EHXPLLL CLKOP       62.5 MHz, EHXPLLL CLKOS,       31.25    15.6
                                        divider 2, read latency 3      MHz      MB/s
==========  ==========================  =============================  =======  =======

:func:`boards.clocking.mmcm` and :func:`boards.clocking.ecp5_pll` instantiate the clock
primitives.
"""

from dataclasses import dataclass, replace

from .clocking import ecp5_pll_divisors
from .registry import BoardError, get_board

__all__ = ["EngineClocks", "ENGINE_CLOCKS", "engine_clocks"]


@dataclass(frozen=True)
class EngineClocks:
    """How fast a board runs the layer engine and reads its flash.

    ``engine_hz`` clocks ``sync``; ``flash_hz`` the reader, whose SCLK is
    ``flash_hz / divider`` and which takes a nibble ``read_latency`` cycles
    after the falling edge launching it (:class:`hw.qspi.QSPIReader`);
    ``part`` is the flash (:data:`hw.qspi.PARTS`).
    """
    board: str
    engine_hz: int
    flash_hz: int
    divider: int
    read_latency: int
    part: str
    source: str

    @property
    def sclk_hz(self):
        return self.flash_hz / self.divider

    @property
    def stream_bytes_per_s(self):
        """Peak data rate of a quad read: four bits per SCLK."""
        return self.sclk_hz / 2

    @property
    def flash_period_ns(self):
        return 1e9 / self.flash_hz

    @property
    def engine_period_ns(self):
        return 1e9 / self.engine_hz

    def sim_flash_setup(self):
        """Keyword arguments for the simulation's flash set-up: the reader as on the
        board and a flash model whose data arrive ``read_latency`` cycles late, which
        is what the board's PHY and wires amount to (docs/boards.md)."""
        return {"part": self.part, "divider": self.divider, "read_latency": self.read_latency,
                "output_delay": self.read_latency, "flash_period_ns": self.flash_period_ns,
                "engine_period_ns": self.engine_period_ns}

    def as_dict(self):
        return {"engine_hz": self.engine_hz, "flash_hz": self.flash_hz,
                "divider": self.divider, "read_latency": self.read_latency, "part": self.part,
                "sclk_hz": self.sclk_hz, "stream_bytes_per_s": self.stream_bytes_per_s}


_ARTY = dict(engine_hz=100_000_000, flash_hz=100_000_000, divider=2, read_latency=3,
             part="S25FL128S",
             # 133 MHz (SCLK 66.7 MHz) has no read latency with a positive slack: the
             # 0.5-7.5 ns of USRCCLKO -> CCLK alone takes half the SCLK period.
             source="MMCME2_ADV: 100 MHz x 10 / 10; 50 MHz SCLK is the fastest with "
                    "positive slack at every worst-case corner (boards/qspi_timing.py)")

ENGINE_CLOCKS = {c.board: c for c in [
    EngineClocks("arty_a7_35", **_ARTY),
    EngineClocks("arty_a7_100", **_ARTY),
    EngineClocks("ulx3s", engine_hz=25_000_000, flash_hz=62_500_000, divider=2,
                 read_latency=3, part="IS25LP128F",
                 source="EHXPLLL: 25 MHz -> VCO 500 MHz, CLKOP / 20 (engine), CLKOS / 8 "
                        "(flash); SCLK at flash / 2 keeps 2 ns of slack with USRMCLK's "
                        "undocumented delay budgeted at up to 12 ns"),
]}


def engine_clocks(board, engine_hz=None):
    """The :class:`EngineClocks` of a board (a name or a Board); BoardError if it has none.

    ``engine_hz`` asks for another engine clock (``build --clock``), the flash's staying
    as it is: on the ULX3S any the PLL makes together with the flash clock, on the
    Arty only the oscillator's 100 MHz (``sync`` is the oscillator there)."""
    board = get_board(board if isinstance(board, str) else board.name)
    if board.name not in ENGINE_CLOCKS:
        raise BoardError(f"{board.name}: the layer engine has no board top for this board (it "
                         "needs a quad-SPI flash PHY); boards with one: "
                         + ", ".join(ENGINE_CLOCKS))
    c = ENGINE_CLOCKS[board.name]
    if engine_hz is None or engine_hz == c.engine_hz:
        return c
    if board.family == "ecp5":
        try:
            p = ecp5_pll_divisors(board.clock_hz, engine_hz, c.flash_hz)
        except ValueError:
            raise BoardError(f"--clock {engine_hz / 1e6:g} MHz: {board.name}'s PLL cannot make "
                             f"it together with the flash's {c.flash_hz / 1e6:g} MHz (the VCO, "
                             "400-800 MHz, must be a whole multiple of both); 25, 50 or 100 "
                             "MHz can") from None
        return replace(c, engine_hz=engine_hz, source=(
            f"EHXPLLL: CLKOP {engine_hz / 1e6:g} MHz (build --clock), CLKOS / "
            f"{p['CLKOS_DIV']} {c.flash_hz / 1e6:g} MHz (flash)"))
    raise BoardError(f"--clock {engine_hz / 1e6:g} MHz: on {board.name} the layer engine runs "
                     f"at the oscillator's {c.engine_hz / 1e6:g} MHz")

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

:func:`mmcm` and :func:`ecp5_pll` instantiate the clock primitives.
"""

from dataclasses import dataclass
from fractions import Fraction

from amaranth.hdl import Const, Instance, Signal

from .registry import BoardError, get_board

__all__ = ["EngineClocks", "ENGINE_CLOCKS", "engine_clocks", "mmcm", "ecp5_pll"]


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
                "sclk_hz": self.sclk_hz}


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


def engine_clocks(board):
    """The :class:`EngineClocks` of a board (a name or a Board); BoardError if it has none."""
    name = board if isinstance(board, str) else board.name
    name = get_board(name).name
    if name not in ENGINE_CLOCKS:
        raise BoardError(f"{name}: the layer engine has no board top for this board (it needs "
                         "a quad-SPI flash PHY); boards with one: " + ", ".join(ENGINE_CLOCKS))
    return ENGINE_CLOCKS[name]


def mmcm(clkin, clkin_hz, outputs):
    """An MMCME2_ADV: ``outputs`` are ``(signal, hz)`` pairs, CLKOUT0 first; the
    feedback loops back internally (no phase relation to the input is needed).
    Returns ``(instance, locked)``; the outputs still need a BUFG each."""
    vco = 1_000_000_000                    # 600-1200 MHz on every 7-series speed grade
    mult = Fraction(vco, clkin_hz)
    if not 2 <= mult <= 64 or (mult * 8).denominator != 1:
        raise ValueError(f"MMCM: a {clkin_hz / 1e6:g} MHz input cannot make a 1 GHz VCO")
    if len(outputs) > 2:
        raise ValueError("MMCM: at most two outputs here")
    locked = Signal()
    feedback = Signal()
    params = dict(p_BANDWIDTH="OPTIMIZED", p_COMPENSATION="INTERNAL", p_STARTUP_WAIT="FALSE",
                  p_DIVCLK_DIVIDE=1, p_CLKFBOUT_MULT_F=float(mult), p_CLKFBOUT_PHASE=0.0,
                  p_CLKIN1_PERIOD=round(1e9 / clkin_hz, 3), p_REF_JITTER1=0.01,
                  i_CLKIN1=clkin, i_CLKIN2=Const(0, 1), i_CLKINSEL=Const(1, 1),
                  i_CLKFBIN=feedback, o_CLKFBOUT=feedback, o_LOCKED=locked,
                  i_RST=Const(0, 1), i_PWRDWN=Const(0, 1),
                  i_DADDR=Const(0, 7), i_DCLK=Const(0, 1), i_DEN=Const(0, 1),
                  i_DI=Const(0, 16), i_DWE=Const(0, 1),
                  i_PSCLK=Const(0, 1), i_PSEN=Const(0, 1), i_PSINCDEC=Const(0, 1))
    for k, (signal, hz) in enumerate(outputs):
        divide = Fraction(vco, hz)
        if (divide * 8).denominator != 1 or not (1 <= divide <= 128):
            raise ValueError(f"MMCM: {hz / 1e6:g} MHz is not 1 GHz / (a multiple of 1/8)")
        if k == 0:
            params["p_CLKOUT0_DIVIDE_F"] = float(divide)
        else:
            if divide.denominator != 1:
                raise ValueError(f"MMCM: CLKOUT{k} divides by integers only")
            params[f"p_CLKOUT{k}_DIVIDE"] = int(divide)
        params[f"p_CLKOUT{k}_PHASE"] = 0.0
        params[f"p_CLKOUT{k}_DUTY_CYCLE"] = 0.5
        params[f"o_CLKOUT{k}"] = signal
    return Instance("MMCME2_ADV", **params), locked


def ecp5_pll(clkin, clkin_hz, primary, primary_hz, secondary, secondary_hz):
    """An EHXPLLL with ``primary`` on CLKOP (also its feedback) and ``secondary`` on
    CLKOS. Returns ``(instance, locked)``. The VCO (400-800 MHz) must divide into both."""
    ratio = Fraction(primary_hz, clkin_hz)
    if ratio.numerator > 80 or ratio.denominator > 128:
        raise ValueError(f"EHXPLLL: cannot make {primary_hz / 1e6:g} MHz from "
                         f"{clkin_hz / 1e6:g} MHz")
    for op_div in range(1, 129):
        vco = primary_hz * op_div
        if 400e6 <= vco <= 800e6 and vco % secondary_hz == 0 and vco // secondary_hz <= 128:
            os_div = vco // secondary_hz
            break
    else:
        raise ValueError(f"EHXPLLL: no VCO in 400-800 MHz makes {primary_hz / 1e6:g} and "
                         f"{secondary_hz / 1e6:g} MHz")
    locked = Signal()
    inst = Instance(
        "EHXPLLL",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
        p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
        p_CLKI_DIV=ratio.denominator, p_CLKFB_DIV=ratio.numerator, p_FEEDBK_PATH="CLKOP",
        p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=op_div, p_CLKOP_CPHASE=op_div - 1,
        p_CLKOP_FPHASE=0,
        p_CLKOS_ENABLE="ENABLED", p_CLKOS_DIV=os_div, p_CLKOS_CPHASE=os_div - 1,
        p_CLKOS_FPHASE=0,
        a_FREQUENCY_PIN_CLKI=f"{clkin_hz / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{primary_hz / 1e6:g}",
        a_FREQUENCY_PIN_CLKOS=f"{secondary_hz / 1e6:g}",
        i_CLKI=clkin, i_CLKFB=primary, i_RST=Const(0, 1), i_STDBY=Const(0, 1),
        i_PHASESEL0=Const(0, 1), i_PHASESEL1=Const(0, 1), i_PHASEDIR=Const(0, 1),
        i_PHASESTEP=Const(0, 1), i_PHASELOADREG=Const(0, 1), i_PLLWAKESYNC=Const(0, 1),
        i_ENCLKOP=Const(0, 1), i_ENCLKOS=Const(0, 1),
        o_CLKOP=primary, o_CLKOS=secondary, o_LOCK=locked)
    return inst, locked

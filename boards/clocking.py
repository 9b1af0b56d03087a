"""Clocks from the board's oscillator through its PLL.

A build asks for a ``sync`` clock (``build --clock MHz``). When the board's
oscillator runs at that frequency it clocks ``sync`` directly, as
amaranth-boards sets it up; otherwise :class:`PLLClock` makes it with the
family's clock primitive and holds ``sync`` in reset until the primitive
locks:

======  ==============  =====================================================
family  primitive       frequencies it makes here
======  ==============  =====================================================
ecp5    ``EHXPLLL``     ``f_in * CLKFB_DIV / CLKI_DIV``, VCO 400-800 MHz
ice40   ``SB_PLL40_PAD``  ``f_in * (DIVF + 1) / ((DIVR + 1) * 2 ** DIVQ)``,
                        PFD 10-133 MHz, VCO 533-1066 MHz
xilinx  ``MMCME2_ADV``  ``f_in * M / CLKOUT0_DIVIDE_F`` (both in eighths), VCO
                        600-1200 MHz
======  ==============  =====================================================

:func:`pll_frequency` says what a board's PLL makes closest to a request (a
PLL cannot make every frequency); the UART divisor, the report and the
timing constraint all use that achieved frequency.

:func:`ecp5_pll`, :func:`ice40_pll` and :func:`mmcm` instantiate the
primitives; the layer engine's board top uses the first and the last for its
two clocks (:mod:`boards.engine_clocks`).
"""

from dataclasses import dataclass
from fractions import Fraction

from amaranth.hdl import ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from .registry import BoardError

__all__ = ["PLLClock", "pll_frequency", "ecp5_pll", "ecp5_pll_divisors", "ice40_pll",
           "ice40_pll_divisors", "mmcm", "PLL_NET", "global_buffer"]

#: The name kept on a PLL's ``sync`` output, which the constraints and nextpnr's timing
#: report use (Yosys would otherwise name the net after any alias it likes).
PLL_NET = "pll_sync_clk"

# How far a PLL's output may be from the request and still be "that clock".
_TOLERANCE = 0.005


@dataclass(frozen=True)
class _Setting:
    hz: float           # what the PLL makes
    params: dict        # the family's divisors


def pll_frequency(board, hz):
    """The frequency ``board``'s PLL makes for a request of ``hz`` (the oscillator's own
    frequency is taken as it is); BoardError if nothing within 0.5% can be made."""
    if hz == board.clock_hz:
        return board.clock_hz
    return _setting(board, hz).hz


def _setting(board, hz):
    search = {"ecp5": _ecp5_setting, "ice40": _ice40_setting, "xilinx": _mmcm_setting}
    if board.family not in search:
        raise BoardError(f"{board.name}: no PLL for the {board.family} family")
    best = search[board.family](board.clock_hz, hz)
    if best is None or abs(best.hz - hz) > _TOLERANCE * hz:
        near = f"; the nearest is {best.hz / 1e6:.3f} MHz" if best else ""
        raise BoardError(f"--clock {hz / 1e6:g} MHz: {board.name}'s PLL cannot make it from "
                         f"its {board.clock_hz / 1e6:g} MHz oscillator{near}")
    return best


def _closest(candidates, hz):
    return min(candidates, key=lambda s: (abs(s.hz - hz), sorted(s.params.items())),
               default=None)


def _ecp5_setting(clkin_hz, hz):
    # CLKOP feeds back: f_out = f_in * CLKFB_DIV / CLKI_DIV; the VCO is f_out * CLKOP_DIV.
    cands = []
    for clki in range(1, 129):
        if clkin_hz / clki < 3.125e6:          # the phase detector's lowest input
            break
        for clkfb in range(1, 81):
            out = clkin_hz * clkfb / clki
            if not 3.125e6 <= out <= 400e6:
                continue
            op = next((d for d in range(1, 129) if 400e6 <= out * d <= 800e6), None)
            if op is not None:
                cands.append(_Setting(out, {"CLKI_DIV": clki, "CLKFB_DIV": clkfb,
                                            "CLKOP_DIV": op}))
    return _closest(cands, hz)


def _ice40_setting(clkin_hz, hz):
    cands = []
    for divr in range(16):
        pfd = clkin_hz / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                cands.append(_Setting(vco / 2 ** divq, {"DIVR": divr, "DIVF": divf,
                                                        "DIVQ": divq,
                                                        "FILTER_RANGE": _filter(pfd)}))
    return _closest(cands, hz)


def _filter(pfd):
    # The loop filter setting for a phase detector frequency (icepll's table).
    for limit, value in ((17e6, 1), (26e6, 2), (44e6, 3), (66e6, 4), (101e6, 5)):
        if pfd < limit:
            return value
    return 6


def ice40_pll_divisors(clkin_hz, hz):
    """``DIVR``, ``DIVF``, ``DIVQ`` and ``FILTER_RANGE`` for the iCE40 PLL's output
    closest to ``hz``, and that output's frequency."""
    s = _ice40_setting(clkin_hz, hz)
    return s.params, s.hz


def _mmcm_setting(clkin_hz, hz):
    cands = []
    for mult8 in range(16, 513):                 # CLKFBOUT_MULT_F, 2 to 64 in eighths
        vco = clkin_hz * mult8 / 8
        if not 600e6 <= vco <= 1200e6:
            continue
        div8 = round(vco * 8 / hz)               # CLKOUT0_DIVIDE_F, 1 to 128 in eighths
        for d in (div8 - 1, div8, div8 + 1):
            if 8 <= d <= 1024:
                cands.append(_Setting(vco * 8 / d, {"CLKFBOUT_MULT_F": mult8 / 8,
                                                    "CLKOUT0_DIVIDE_F": d / 8}))
    return _closest(cands, hz)


class PLLClock(Elaboratable):
    """``board``'s PLL making ``hz`` from its oscillator: ``clk`` (through a global
    buffer) and ``locked``.

    ``hz`` is what :func:`pll_frequency` says the PLL makes. Requests the
    oscillator's pin itself, so the platform does not build its own ``sync``; the
    top defines ``sync`` on ``clk`` (Amaranth wants a domain defined where it is
    used or above) and holds it in reset until ``locked``, as :meth:`domain` does.
    """

    def __init__(self, board, hz):
        self.board = board
        self.setting = _setting(board, hz)
        self.hz = self.setting.hz
        self.clk = Signal(name=PLL_NET, attrs={"keep": 1})
        self.locked = Signal()

    def domain(self, m):
        """Define ``sync`` in ``m`` (the top) on this PLL, with ``self`` as a submodule."""
        m.submodules.clock = self
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(self.clk)
        m.submodules.reset_sync = ResetSynchronizer(~self.locked, domain="sync")

    def elaborate(self, platform):
        m = Module()
        board, p, clk = self.board, self.setting.params, self.clk
        pin = platform.request(platform.default_clk, dir="-")
        if board.family == "ice40":
            # The PLL takes the oscillator straight from its pad (iCEBreaker: pin 35).
            m.submodules.pll, locked = ice40_pll(pin.io, p, clk)
        else:
            m.submodules.clk_buffer = clkin = io.Buffer("i", pin)
            if board.family == "ecp5":
                locked = Signal()
                m.submodules.pll = Instance("EHXPLLL", **_ehxplll_params(
                    clkin.i, board.clock_hz, p, clk, self.hz, locked))
            else:
                raw = Signal()
                m.submodules.pll, locked = mmcm(
                    clkin.i, board.clock_hz, [(raw, self.hz)],
                    mult=p["CLKFBOUT_MULT_F"], divides=[p["CLKOUT0_DIVIDE_F"]])
                m.submodules.bufg = Instance("BUFG", i_I=raw, o_O=clk)
        m.d.comb += self.locked.eq(locked)
        if board.family != "xilinx":       # Vivado derives the MMCM's output clock itself
            platform.add_clock_constraint(clk, self.hz)
        return m


def _ehxplll_params(clkin, clkin_hz, p, primary, primary_hz, locked, secondary=None,
                    secondary_hz=None, os_div=None):
    params = dict(
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
        p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
        p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"], p_FEEDBK_PATH="CLKOP",
        p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
        p_CLKOP_CPHASE=p["CLKOP_DIV"] - 1, p_CLKOP_FPHASE=0,
        a_FREQUENCY_PIN_CLKI=f"{clkin_hz / 1e6:g}",
        a_FREQUENCY_PIN_CLKOP=f"{primary_hz / 1e6:g}",
        i_CLKI=clkin, i_CLKFB=primary, i_RST=Const(0, 1), i_STDBY=Const(0, 1),
        i_PHASESEL0=Const(0, 1), i_PHASESEL1=Const(0, 1), i_PHASEDIR=Const(0, 1),
        i_PHASESTEP=Const(0, 1), i_PHASELOADREG=Const(0, 1), i_PLLWAKESYNC=Const(0, 1),
        i_ENCLKOP=Const(0, 1), i_ENCLKOS=Const(0, 1), o_CLKOP=primary, o_LOCK=locked)
    if secondary is not None:
        params.update(p_CLKOS_ENABLE="ENABLED", p_CLKOS_DIV=os_div, p_CLKOS_CPHASE=os_div - 1,
                      p_CLKOS_FPHASE=0, a_FREQUENCY_PIN_CLKOS=f"{secondary_hz / 1e6:g}",
                      o_CLKOS=secondary)
    return params


def ecp5_pll_divisors(clkin_hz, primary_hz, secondary_hz):
    """``CLKI_DIV``, ``CLKFB_DIV``, ``CLKOP_DIV`` and ``CLKOS_DIV`` of an EHXPLLL making
    exactly ``primary_hz`` (fed back) and ``secondary_hz``; ValueError if it cannot."""
    ratio = Fraction(primary_hz) / Fraction(clkin_hz)
    if ratio.numerator > 80 or ratio.denominator > 128:
        raise ValueError(f"EHXPLLL: cannot make {primary_hz / 1e6:g} MHz from "
                         f"{clkin_hz / 1e6:g} MHz")
    for op_div in range(1, 129):
        vco = primary_hz * op_div
        if 400e6 <= vco <= 800e6 and vco % secondary_hz == 0 and vco // secondary_hz <= 128:
            return {"CLKI_DIV": ratio.denominator, "CLKFB_DIV": ratio.numerator,
                    "CLKOP_DIV": op_div, "CLKOS_DIV": int(vco // secondary_hz)}
    raise ValueError(f"EHXPLLL: no VCO in 400-800 MHz makes {primary_hz / 1e6:g} and "
                     f"{secondary_hz / 1e6:g} MHz")


def ecp5_pll(clkin, clkin_hz, primary, primary_hz, secondary, secondary_hz):
    """An EHXPLLL with ``primary`` on CLKOP (also its feedback) and ``secondary`` on
    CLKOS. Returns ``(instance, locked)``. The VCO (400-800 MHz) must divide into both."""
    p = ecp5_pll_divisors(clkin_hz, primary_hz, secondary_hz)
    locked = Signal()
    inst = Instance("EHXPLLL", **_ehxplll_params(clkin, clkin_hz, p, primary, primary_hz,
                                                 locked, secondary, secondary_hz,
                                                 p["CLKOS_DIV"]))
    return inst, locked


def ice40_pll(pad, params, out):
    """An SB_PLL40_PAD fed by the clock pin ``pad`` (an IO port) with the divisors of
    :func:`ice40_pll_divisors`, its global output ``out``. Returns ``(instance, locked)``."""
    locked = Signal()
    inst = Instance("SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE",
                    p_DIVR=params["DIVR"], p_DIVF=params["DIVF"], p_DIVQ=params["DIVQ"],
                    p_FILTER_RANGE=params["FILTER_RANGE"],
                    i_PACKAGEPIN=pad, i_RESETB=Const(1, 1), i_BYPASS=Const(0, 1),
                    o_PLLOUTGLOBAL=out, o_LOCK=locked)
    return inst, locked


def mmcm(clkin, clkin_hz, outputs, *, mult=None, divides=None):
    """An MMCME2_ADV: ``outputs`` are ``(signal, hz)`` pairs, CLKOUT0 first; the
    feedback loops back internally (no phase relation to the input is needed).
    By default the VCO runs at 1 GHz; ``mult`` and ``divides`` (CLKFBOUT_MULT_F and
    each output's divide) set it otherwise. Returns ``(instance, locked)``; the
    outputs still need a BUFG each."""
    if mult is None:
        vco = 1_000_000_000                    # 600-1200 MHz on every 7-series speed grade
        mult = Fraction(vco, clkin_hz)
        if not 2 <= mult <= 64 or (mult * 8).denominator != 1:
            raise ValueError(f"MMCM: a {clkin_hz / 1e6:g} MHz input cannot make a 1 GHz VCO")
    else:
        mult = Fraction(mult)
        vco = clkin_hz * mult
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
        divide = Fraction(divides[k]) if divides else Fraction(vco) / Fraction(hz)
        if (divide * 8).denominator != 1 or not (1 <= divide <= 128):
            raise ValueError(f"MMCM: {hz / 1e6:g} MHz is not {vco / 1e6:g} MHz / (a multiple "
                             "of 1/8)")
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


def global_buffer(family):
    """``buffer(m, signal)`` putting ``signal`` on one of the family's global nets, for
    a reset that reaches every flip-flop, or None where the tools do it themselves.

    ECP5: a ``DCCA``; nextpnr-ecp5 routes what a DCCA drives over a global network
    (it promotes only clocks by itself), and routed through the fabric the reset of
    a design of a few thousand flip-flops took 16 ns (small CNN, ULX3S). nextpnr-ice40
    promotes resets to its global buffers itself; Vivado replicates high-fanout nets.
    """
    if family != "ecp5":
        return None

    def buffer(m, signal):
        out = Signal(name=f"{signal.name}_global")
        m.submodules[f"{signal.name}_dcca"] = Instance(
            "DCCA", i_CLKI=signal, i_CE=Const(1, 1), o_CLKO=out)
        return out
    return buffer


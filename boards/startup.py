"""Arty A7 platforms whose one ``STARTUPE2`` also drives the flash clock (CCLK).

A 7-series device has a single ``STARTUPE2``. Amaranth's Xilinx platform
places it when it creates the ``sync`` domain, to hold the clock until
configuration ends (``EOS``); the quad-SPI flash clock has to leave through
the same primitive (``USRCCLKO``), because CCLK is no user pin. These
platforms behave exactly like amaranth-boards' unless a design calls
:meth:`set_usrcclko`; then the ``sync`` domain is built as Amaranth builds it,
with that signal on ``USRCCLKO`` (CCLK driven: ``USRCCLKTS`` low).

The domain comes from the platform's missing-domain hook, so it is defined
at the top of the design, as Amaranth 0.6 will require. A design that makes
clocks of its own (the layer engine's flash clock, :mod:`boards.engine_top`)
takes the oscillator from the same input buffer with :meth:`board_clock`.
Constraints a design adds (the ``add_constraints`` override) are appended to
the XDC file after amaranth-boards' own.
"""

from amaranth.hdl import ClockDomain, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer
from amaranth_boards.arty_a7 import ArtyA7_35Platform, ArtyA7_100Platform

__all__ = ["ArtyA7_35Platform", "ArtyA7_100Platform"]


class _SharedStartup:
    _usrcclko = None
    _board_clock = None

    def set_usrcclko(self, signal):
        """Route ``signal`` to CCLK through the design's one ``STARTUPE2``."""
        if self._usrcclko is not None:
            raise ValueError("USRCCLKO is driven already: one flash clock per design")
        self._usrcclko = signal

    def board_clock(self):
        """The oscillator straight from its input buffer (before the ``sync`` BUFG), for
        an MMCM; the ``sync`` domain is then built here, whether or not CCLK is used."""
        if self._board_clock is None:
            self._board_clock = Signal()
        return self._board_clock

    def toolchain_prepare(self, fragment, name, *, add_constraints=None, **kwargs):
        # amaranth-boards' Arty passes its own ``add_constraints`` (bank voltages); a
        # design's constraints go after them, at the end of the XDC file.
        plan = super().toolchain_prepare(fragment, name, **kwargs)
        if add_constraints:
            xdc = f"{name}.xdc"
            plan.files[xdc] = plan.files[xdc].rstrip("\n") + "\n" + add_constraints + "\n"
        return plan

    def create_missing_domain(self, name):
        if name != "sync" or self.default_clk is None or (
                self._usrcclko is None and self._board_clock is None):
            return super().create_missing_domain(name)
        m = Module()
        m.submodules.clk_buf = clk = io.Buffer("i", self.request(self.default_clk, dir="-"))
        if self._board_clock is not None:
            m.d.comb += self._board_clock.eq(clk.i)
        usrcclko, usrcclkts = ((self._usrcclko, Const(0, 1)) if self._usrcclko is not None
                               else (Const(0, 1), Const(1, 1)))
        eos = Signal()
        # KEYCLEARB high keeps a battery-backed key; USRDONETS high leaves DONE alone.
        m.submodules.startup = Instance(
            "STARTUPE2", o_EOS=eos, i_CLK=Const(0, 1), i_GSR=Const(0, 1), i_GTS=Const(0, 1),
            i_KEYCLEARB=Const(1, 1), i_PACK=Const(0, 1), i_USRCCLKO=usrcclko,
            i_USRCCLKTS=usrcclkts, i_USRDONEO=Const(1, 1), i_USRDONETS=Const(1, 1))
        m.domains.sync = ClockDomain("sync", reset_less=self.default_rst is None)
        if self.toolchain == "Vivado":
            # As Amaranth does: a BUFGCTRL used as BUFGCE (its BUFGCE breaks some Vivados).
            m.submodules.bufg = Instance(
                "BUFGCTRL", p_SIM_DEVICE="7SERIES", i_I0=clk.i, i_S0=Const(1, 1), i_CE0=eos,
                i_IGNORE0=Const(0, 1), i_I1=Const(1, 1), i_S1=Const(0, 1), i_CE1=Const(0, 1),
                i_IGNORE1=Const(1, 1), o_O=ClockSignal("sync"))
        else:
            m.submodules.bufg = Instance("BUFGCE", i_CE=eos, i_I=clk.i, o_O=ClockSignal("sync"))
        if self.default_rst is not None:
            m.submodules.rst_buf = rst = io.Buffer("i", self.request(self.default_rst, dir="-"))
            m.submodules.reset_sync = ResetSynchronizer(rst.i, domain="sync")
        return m


class ArtyA7_35Platform(_SharedStartup, ArtyA7_35Platform):
    pass


class ArtyA7_100Platform(_SharedStartup, ArtyA7_100Platform):
    pass

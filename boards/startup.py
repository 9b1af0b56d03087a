"""Arty A7 platforms whose one ``STARTUPE2`` also drives the flash clock (CCLK).

A 7-series device has a single ``STARTUPE2``. Amaranth's Xilinx platform
places it when it creates the ``sync`` domain, to hold the clock until
configuration ends (``EOS``); the quad-SPI flash clock has to leave through
the same primitive (``USRCCLKO``), because CCLK is no user pin. These
platforms behave exactly like amaranth-boards' unless a design calls
:meth:`set_usrcclko`; then the ``sync`` domain is built as Amaranth builds it,
with that signal on ``USRCCLKO`` (CCLK driven: ``USRCCLKTS`` low).

The domain comes from the platform's missing-domain hook, so it is defined
at the top of the design, as Amaranth 0.6 will require.
"""

from amaranth.hdl import ClockDomain, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer
from amaranth_boards.arty_a7 import ArtyA7_35Platform, ArtyA7_100Platform

__all__ = ["ArtyA7_35Platform", "ArtyA7_100Platform"]


class _SharedStartup:
    _usrcclko = None

    def set_usrcclko(self, signal):
        """Route ``signal`` to CCLK through the design's one ``STARTUPE2``."""
        if self._usrcclko is not None:
            raise ValueError("USRCCLKO is driven already: one flash clock per design")
        self._usrcclko = signal

    def create_missing_domain(self, name):
        if name != "sync" or self._usrcclko is None or self.default_clk is None:
            return super().create_missing_domain(name)
        m = Module()
        m.submodules.clk_buf = clk = io.Buffer("i", self.request(self.default_clk, dir="-"))
        eos = Signal()
        # KEYCLEARB high keeps a battery-backed key; USRDONETS high leaves DONE alone.
        m.submodules.startup = Instance(
            "STARTUPE2", o_EOS=eos, i_CLK=Const(0, 1), i_GSR=Const(0, 1), i_GTS=Const(0, 1),
            i_KEYCLEARB=Const(1, 1), i_PACK=Const(0, 1), i_USRCCLKO=self._usrcclko,
            i_USRCCLKTS=Const(0, 1), i_USRDONEO=Const(1, 1), i_USRDONETS=Const(1, 1))
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

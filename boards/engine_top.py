"""The layer engine on a board: its UART, its two clocks and the flash it streams weights from.

::

    rx -> UARTBridge -> engine.i    engine.o -> UARTBridge -> tx         (sync)
    engine.flash_req -> FlashCrossing -> QSPIFlashPort.req               (sync -> flash)
    QSPIFlashPort.o -> FlashCrossing -> engine.flash_data                (flash -> sync)
    QSPIFlashPort: QSPIReader + QSPIPHY -> CS#, DQ0-3 pins, SCLK through
                   STARTUPE2 (Arty A7) or USRMCLK (ULX3S)

The clocks, divider and read latency are :mod:`boards.engine_clocks`'; the
weight image's place in flash is :mod:`boards.flash_layout`'s.
:func:`boards.toolchain.build` takes this top like a
:class:`~boards.top.BoardTop` and writes the extra constraints it asks for
(:meth:`EngineBoardTop.build_overrides`).
"""

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    DomainRenamer,
    Elaboratable,
    Instance,
    Module,
    Signal,
)
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer

from .clocking import ecp5_pll, global_buffer, mmcm
from .engine_clocks import engine_clocks
from .flash_cdc import FlashCrossing, reset_cycles_needed
from .flash_layout import flash_layout, weights_image
from .qspi_port import QSPIFlashPort
from .registry import Board, BoardError, get_board
from .toolchain import NEXTPNR_SEED, BoardClock, build
from .top import UARTBridge, clocks_per_bit, connect_pins, fastest_baud

__all__ = ["EngineBoardTop", "build_engine"]


class EngineBoardTop(Elaboratable):
    """A :class:`~hw.engine.engine.LayerEngine` on a board, behind the board's USB UART.

    The host speaks to it exactly as to a dataflow accelerator's
    :class:`~boards.top.BoardTop` (``docs/boards.md``, "Protocol"): input
    lanes in on ``rx``, output lanes out on ``tx``, a break resets. The engine
    reads ``weights.bin`` with its one request per inference, addressed from the
    file's first byte; the request reaches the flash moved by the board's weight
    offset (:data:`boards.flash_layout.FLASH_LAYOUTS`), so the image must be
    written there (``python -m compiler flash``) with the flash's quad-enable
    bit set.

    Clocks (:data:`boards.engine_clocks.ENGINE_CLOCKS`): the engine, the UART
    and the engine side of the crossing run in ``sync``; the flash reader and
    the PHY in ``flash``. On the Arty ``sync`` is the 100 MHz oscillator as
    amaranth-boards makes it and ``flash`` an MMCM output from the same input
    buffer; on the ULX3S one EHXPLLL makes both from the 25 MHz oscillator.

    Reset: the bridge holds the engine in reset after start-up and after a
    break (``reset_cycles``); its ``reset`` flip-flop also resets the ``flash``
    domain, asynchronously asserted and synchronously released
    (:class:`~amaranth.lib.cdc.ResetSynchronizer`), with the clock
    primitive's ``LOCKED`` low as a second cause. That ends any read under way
    (CS# high) and empties both FIFOs of the :class:`FlashCrossing` before the
    engine can ask again, so an inference after a break reads its weights
    from the start.

    Parameters
    ----------
    engine : a :class:`~hw.engine.engine.LayerEngine` (any Component with ``i``,
        ``o``, ``flash_req`` and ``flash_data`` as it has them)
    board : a :class:`~boards.registry.Board` or its name; it needs an entry in
        :data:`boards.engine_clocks.ENGINE_CLOCKS`
    baud : UART rate (default: :func:`~boards.top.fastest_baud`); the UART runs at the engine clock
    rx_fifo_depth : input bytes buffered while the engine stalls
    reset_cycles : engine clock cycles the bridge's reset lasts (default and least:
        :func:`~boards.flash_cdc.reset_cycles_needed` of the two clocks, at least 8)
    engine_hz : the engine clock, if not the board's (:func:`~boards.engine_clocks.engine_clocks`)
    """

    def __init__(self, engine, board, *, baud=None, rx_fifo_depth=512,
                 reset_cycles=None, engine_hz=None):
        try:
            self.board = board if isinstance(board, Board) else get_board(board)
            self.clocks = engine_clocks(self.board, engine_hz)
            self.layout = flash_layout(self.board.name)
            if baud is None:
                baud = fastest_baud(self.clocks.engine_hz, self.board)
            self.clocks_per_bit = clocks_per_bit(self.clocks.engine_hz, baud,
                                                 board_name=self.board.name,
                                                 max_baud=self.board.uart_max_baud)
        except BoardError:
            self._MustUse__silence = True
            raise
        least = reset_cycles_needed(self.clocks.engine_hz, self.clocks.flash_hz)
        if reset_cycles is not None and reset_cycles < least:
            self._MustUse__silence = True
            raise ValueError(f"reset_cycles={reset_cycles}: the flash side needs at least "
                             f"{least} engine clock cycles of reset")
        self.engine = engine
        self.baud = baud
        self.word_bytes = len(engine.flash_data.payload) // 8
        self.bridge = UARTBridge(engine, self.clocks_per_bit, rx_fifo_depth=rx_fifo_depth,
                                 led_cycles=self.clocks.engine_hz // 20,
                                 reset_cycles=reset_cycles or max(8, least),
                                 reset_buffer=global_buffer(self.board.family))
        self.crossing = FlashCrossing(word_bytes=self.word_bytes,
                                      offset=self.layout.weights_offset, domain="flash",
                                      addr_width=len(engine.flash_req.payload.addr))
        self.port = QSPIFlashPort(self.board.name, word_bytes=self.word_bytes,
                                  divider=self.clocks.divider,
                                  read_latency=self.clocks.read_latency)

    @property
    def in_format(self):
        return self.bridge.in_format

    @property
    def out_format(self):
        return self.bridge.out_format

    @property
    def board_clocks(self):
        """Domain name -> :class:`BoardClock`, the engine's first."""
        return {"sync": BoardClock(self.clocks.engine_hz, _NETS[self.board.family]["sync"]),
                "flash": BoardClock(self.clocks.flash_hz, _NETS[self.board.family]["flash"])}

    def build_overrides(self, name="top"):
        """Extra toolchain overrides for :meth:`amaranth.build.Platform.prepare`:
        the Vivado constraints of the flash clock and the flash path (XDC)."""
        if self.board.family != "xilinx":
            return {}
        return {"add_constraints": _arty_xdc(self.clocks)}

    def elaborate(self, platform):
        if platform is None:
            raise ValueError("EngineBoardTop needs a board platform (boards.registry); "
                             "simulate the engine with compiler.backends.layer.simtop")
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        m.submodules.crossing = crossing = self.crossing
        m.submodules.flash_port = DomainRenamer("flash")(self.port)

        locked = self._clocks(m, platform)
        m.domains.flash = ClockDomain("flash")
        m.submodules.flash_reset = ResetSynchronizer(bridge.reset | ~locked, domain="flash")

        wiring.connect(m, self.engine.flash_req, crossing.req)
        wiring.connect(m, crossing.data, self.engine.flash_data)
        m.d.comb += crossing.reset.eq(bridge.reset)
        wiring.connect(m, crossing.port_req, self.port.req)
        wiring.connect(m, self.port.o, crossing.port_data)

        connect_pins(m, platform, bridge, self.board)
        return m

    def _clocks(self, m, platform):
        """Define the ``flash`` clock (and on the ULX3S ``sync``); return the primitive's
        ``LOCKED``."""
        c = self.clocks
        if self.board.family == "xilinx":
            # ``sync`` stays amaranth-boards' (behind STARTUPE2's end of start-up); the
            # MMCM takes the oscillator from the same input buffer (boards/startup.py).
            raw = Signal(name="mmcm_flash_clk")
            m.submodules.mmcm, locked = mmcm(platform.board_clock(), self.board.clock_hz,
                                             [(raw, c.flash_hz)])
            m.submodules.flash_bufg = Instance("BUFG", i_I=raw, o_O=ClockSignal("flash"))
            return locked
        if self.board.family == "ecp5":
            m.submodules.clk_buffer = clkin = io.Buffer(
                "i", platform.request(platform.default_clk, dir="-"))
            # Kept by name: the LPF constrains these nets, and Yosys would otherwise name
            # each clock after any alias it likes (bridge.accelerator.bank.clk, once).
            engine_clk = Signal(name="pll_engine_clk", attrs={"keep": 1})
            flash_clk = Signal(name="pll_flash_clk", attrs={"keep": 1})
            m.submodules.pll, locked = ecp5_pll(clkin.i, self.board.clock_hz,
                                                engine_clk, c.engine_hz, flash_clk, c.flash_hz)
            m.domains.sync = ClockDomain("sync")
            m.d.comb += [ClockSignal("sync").eq(engine_clk), ClockSignal("flash").eq(flash_clk)]
            m.submodules.sync_reset = ResetSynchronizer(~locked, domain="sync")
            platform.add_clock_constraint(engine_clk, c.engine_hz)
            platform.add_clock_constraint(flash_clk, c.flash_hz)
            return locked
        raise BoardError(f"{self.board.name}: no engine clocks for the {self.board.family} "
                         "family")


# What the tools call each domain's clock: Vivado's clock names (the oscillator's
# port, the MMCM output renamed by the XDC below); for nextpnr the domains' clock
# nets, which Amaranth names ``clk`` (``sync``) and ``<domain>_clk``.
_NETS = {"xilinx": {"sync": "clk100_0__io", "flash": "flash"},
         "ecp5": {"sync": "clk", "flash": "flash_clk"}}


def _arty_xdc(clocks):
    """The flash domain's clock and the flash read path, for Vivado.

    * The MMCM output gets a name (a derived clock is renamed by a
      ``create_generated_clock`` on its pin with no other options, UG903), and it
      and the oscillator's clock are asynchronous: only
      :class:`~amaranth.lib.fifo.AsyncFIFO` s cross between them (Amaranth
      constrains their synchronizers).
    * CS# and DQ use their IOB flip-flops: the PHY's one-cycle latency and the
      read-path budget (:mod:`boards.qspi_timing`) count on them.
    * The SCLK forwarder flip-flop is placed so that it reaches
      ``STARTUPE2.USRCCLKO`` within 0.3-1.5 ns, the ``sclk_fabric`` bound of the
      budget (the template AMD gives for AXI Quad SPI in PG153 does the same).
    """
    period = 1e9 / clocks.flash_hz
    mmcm_out = ("[get_pins -of_objects [get_cells -hier -filter {REF_NAME == MMCME2_ADV}] "
                "-filter {REF_PIN_NAME == CLKOUT0}]")
    sclk_pin = ("[get_pins -of_objects [get_cells -hier -filter {REF_NAME == STARTUPE2}] "
                "-filter {REF_PIN_NAME == USRCCLKO}]")
    return "\n".join([
        "# Layer engine: the flash clock (MMCM) and the quad-SPI flash path.",
        f"# flash clock {period:g} ns; SCLK: / {clocks.divider}; latency {clocks.read_latency}",
        f"create_generated_clock -name flash {mmcm_out}",
        "set_clock_groups -asynchronous -group [get_clocks flash] -group [get_clocks clk100_0__io]",
        "set_property IOB TRUE [get_ports {qspi_flash_0__cs__io qspi_flash_0__dq__io[*]}]",
        f"set _sclk_pin {sclk_pin}",
        "set _sclk_ff [get_cells -of_objects [all_fanin -startpoints_only -flat $_sclk_pin]]",
        "set_max_delay -datapath_only -from $_sclk_ff -to $_sclk_pin 1.5",
        "set_min_delay -from $_sclk_ff -to $_sclk_pin 0.3",
        ""])


def build_engine(engine, board, out_dir, *, weights="weights.bin", baud=None,
                 run_toolchain=True, progress=print, name="top", seed=NEXTPNR_SEED,
                 seeds=1, engine_hz=None):
    """Build ``engine`` for ``board`` in ``out_dir``: :func:`boards.toolchain.build` of an
    :class:`EngineBoardTop`, with ``weights`` (a path relative to ``out_dir``, or None)
    recorded as the flash image at the board's weight offset, read in quad mode.
    Returns the :class:`~boards.toolchain.BoardBuildResult`."""
    top = EngineBoardTop(engine, board, baud=baud, engine_hz=engine_hz)
    images = [] if weights is None else [weights_image(top.board.name, weights)]
    return build(top.board, top, out_dir, run_toolchain=run_toolchain, progress=progress,
                 name=name, seed=seed, seeds=seeds, flash_images=images)

"""A board's flash read port: :class:`hw.qspi.QSPIReader` on the board's :class:`QSPIPHY`.

This is the seam the layer engine reads its weights through: requests of
(byte address, byte length) in, words out, with the reader's divider and read
latency set for the board (:data:`boards.qspi_phy.QSPI_BOARDS`), or given. Requests
wait until the PHY's start-up SCLK pulses are out.

On the Arty the flash clock leaves through the platform's one ``STARTUPE2``,
so build with the platforms of :mod:`boards.registry` (:mod:`boards.startup`).
"""

from amaranth.hdl import Module, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.qspi import PARTS, QSPIReader, read_request

from .qspi_phy import QSPIPHY, qspi_board

__all__ = ["QSPIFlashPort"]


class QSPIFlashPort(wiring.Component):
    """Read a board's configuration flash: requests in, words out (:mod:`hw.qspi`).

    Members
    -------
    req : In(stream.Signature(read_request()))
    o : Out(stream.Signature(ArrayLayout(unsigned(8), word_bytes)))
    """

    def __init__(self, board, *, word_bytes=4, fifo_depth=None, divider=None,
                 read_latency=None):
        self.pins = qspi_board(board)
        # The board's settings suit a reader clocked by the board oscillator; a
        # reader in a clock domain of its own (boards/engine_top.py) brings its own.
        self.divider = self.pins.divider if divider is None else divider
        self.read_latency = self.pins.read_latency if read_latency is None else read_latency
        self.reader = QSPIReader(word_bytes=word_bytes, divider=self.divider,
                                 read_latency=self.read_latency,
                                 part=PARTS[self.pins.part], fifo_depth=fifo_depth)
        super().__init__({"req": In(stream.Signature(read_request())),
                          "o": Out(stream.Signature(data.ArrayLayout(unsigned(8), word_bytes)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = self.reader
        m.submodules.phy = phy = QSPIPHY(self.pins, divider=self.divider)
        wiring.connect(m, reader.bus, phy.bus)
        m.d.comb += [reader.req.payload.eq(self.req.payload),
                     reader.req.valid.eq(self.req.valid & phy.ready),
                     self.req.ready.eq(reader.req.ready & phy.ready)]
        wiring.connect(m, reader.o, wiring.flipped(self.o))
        return m

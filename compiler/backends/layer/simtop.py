"""A layer engine with its flash, for simulation: the engine, the reader and a flash model.

The flash side runs in its own clock domain, as on the board: the reader and
the model are clocked by ``flash_clk`` (the testbench drives it at the board's
flash clock), and asynchronous FIFOs carry the request and the data across.
The model (``sim/flash_model.py``) has the real command, address, mode,
dummy-clock and nibble timing and loads ``weights.bin`` at simulation start
(``+qspi_flash_hex=``), so simulated cycles include the flash.
"""

from amaranth.hdl import ClockDomain, ClockSignal, DomainRenamer, Module, ResetSignal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.engine.engine import LayerEngine
from hw.qspi import PARTS, QSPIReader, read_request
from sim.flash_model import ROM_VERILOG, QSPIFlashModel

__all__ = ["EngineSimTop", "FlashSetup", "ROM_VERILOG"]


class FlashSetup:
    """How the flash is read: the part, the SCLK divider in the flash domain, latencies,
    and the periods of the flash and engine clocks on the board."""

    def __init__(self, *, part="S25FL128S", divider=2, read_latency=2, output_delay=2,
                 flash_period_ns=7.5, engine_period_ns=10.0):
        self.part, self.divider = part, divider
        self.read_latency, self.output_delay = read_latency, output_delay
        self.flash_period_ns, self.engine_period_ns = flash_period_ns, engine_period_ns


class EngineSimTop(wiring.Component):
    """``i`` and ``o`` of the engine; the flash inside, clocked by ``flash_clk``.

    Members
    -------
    i : In(stream.Signature(engine input))
    o : Out(stream.Signature(engine output))
    flash_clk : In(1)
    flash_errors : Out(8)     the model's protocol error flags (must stay 0)
    """

    def __init__(self, config, setup=None, hex_file="weights_flash.hex"):
        self.engine = LayerEngine(config)
        self.setup = setup or FlashSetup()
        self.hex_file = hex_file
        super().__init__({
            "i": In(stream.Signature(self.engine.i.payload.shape())),
            "o": Out(stream.Signature(self.engine.o.payload.shape())),
            "flash_clk": In(1), "flash_errors": Out(8),
        })

    def elaborate(self, platform):
        m = Module()
        s, c = self.setup, self.engine.config
        m.domains.flash = ClockDomain("flash")
        m.d.comb += [ClockSignal("flash").eq(self.flash_clk),
                     ResetSignal("flash").eq(ResetSignal("sync"))]
        m.submodules.engine = engine = self.engine
        wiring.connect(m, wiring.flipped(self.i), engine.i)
        wiring.connect(m, engine.o, wiring.flipped(self.o))

        reader = QSPIReader(word_bytes=c.word_bytes, divider=s.divider,
                            read_latency=s.read_latency, part=PARTS[s.part])
        model = QSPIFlashModel(part=s.part, output_delay=s.output_delay, hex_file=self.hex_file)
        m.submodules.reader = DomainRenamer("flash")(reader)
        m.submodules.flash = DomainRenamer("flash")(model)
        wiring.connect(m, reader.bus, model.bus)
        m.d.comb += self.flash_errors.eq(model.errors)

        req_width = read_request().size
        m.submodules.req_fifo = req = fifo.AsyncFIFO(width=req_width, depth=4, r_domain="flash",
                                                     w_domain="sync")
        m.d.comb += [req.w_data.eq(engine.flash_req.payload.as_value()),
                     req.w_en.eq(engine.flash_req.valid),
                     engine.flash_req.ready.eq(req.w_rdy),
                     reader.req.payload.as_value().eq(req.r_data),
                     reader.req.valid.eq(req.r_rdy), req.r_en.eq(reader.req.ready)]
        width = 8 * c.word_bytes
        m.submodules.data_fifo = dat = fifo.AsyncFIFO(width=width, depth=16, r_domain="sync",
                                                      w_domain="flash")
        m.d.comb += [dat.w_data.eq(reader.o.payload), dat.w_en.eq(reader.o.valid),
                     reader.o.ready.eq(dat.w_rdy),
                     engine.flash_data.payload.eq(dat.r_data),
                     engine.flash_data.valid.eq(dat.r_rdy), dat.r_en.eq(engine.flash_data.ready)]
        return m

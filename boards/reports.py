"""Reading the tools' reports into one utilization dict.

Every utilization has ``luts``, ``ffs``, ``brams`` (in the family's native
block RAM unit: RAMB18, DP16KD, EBR) and ``dsps``; extras vary by family.
"""

import re

__all__ = ["stat_cells", "nextpnr_utilization", "nextpnr_fmax", "nextpnr_clock_fmax",
           "yosys_xilinx_utilization", "vivado_utilization", "vivado_fmax"]

# Xilinx 7-series cells as Yosys' synth_xilinx emits them, and how many LUTs each
# occupies (LUT RAM and shift registers live in SLICEM LUTs; INV becomes a LUT1).
_XILINX_LUTS = {
    "LUT1": 1, "LUT2": 1, "LUT3": 1, "LUT4": 1, "LUT5": 1, "LUT6": 1, "INV": 1,
    "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1,
    "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4,
    "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM32M": 4, "RAM64M": 4,
    "RAM32M16": 8, "RAM64M8": 8,
}
_XILINX_LUT_RAM = {k for k in _XILINX_LUTS if k.startswith(("RAM", "SRL"))}
_XILINX_FFS = {"FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"}
_XILINX_RAMB18 = {"RAMB18E1": 1, "FIFO18E1": 1, "RAMB36E1": 2, "FIFO36E1": 2}


def stat_cells(stat, top=None):
    """Cell counts by type from Yosys' ``stat -json`` output (the whole design)."""
    if "design" in stat and "num_cells_by_type" in stat["design"]:
        return dict(stat["design"]["num_cells_by_type"])
    modules = stat.get("modules", {})
    key = f"\\{top}" if top and f"\\{top}" in modules else next(iter(modules))
    return dict(modules[key]["num_cells_by_type"])


def yosys_xilinx_utilization(stat, top=None):
    """Utilization from ``synth_xilinx`` + ``stat -json``; BRAMs counted as RAMB18."""
    cells = stat_cells(stat, top)

    def count(kinds):
        return sum(n for kind, n in cells.items() if kind in kinds)

    return {
        "luts": sum(n * _XILINX_LUTS[kind] for kind, n in cells.items() if kind in _XILINX_LUTS),
        "ffs": count(_XILINX_FFS),
        "brams": sum(n * _XILINX_RAMB18[kind] for kind, n in cells.items()
                     if kind in _XILINX_RAMB18),
        "dsps": count({"DSP48E1"}),
        "lut_ram": sum(n * _XILINX_LUTS[kind] for kind, n in cells.items()
                       if kind in _XILINX_LUT_RAM),
        "carry4": count({"CARRY4"}),
        "muxf7_f8": count({"MUXF7", "MUXF8"}),
    }


def _used(report, cell):
    return int(report.get("utilization", {}).get(cell, {}).get("used", 0))


def nextpnr_utilization(family, report, synth_cells):
    """Utilization from nextpnr's ``--report`` JSON and the synthesis cell counts.

    ECP5: LUTs are nextpnr's TRELLIS_COMB (LUT4 slots used for logic, carry or
    routing), FFs its TRELLIS_FF. iCE40: a logic cell (ICESTORM_LC) pairs a LUT4
    with a flip-flop, so LUTs and FFs are Yosys' SB_LUT4 and SB_DFF* counts and
    ``logic_cells`` is what placement used.
    """
    if family == "ecp5":
        return {
            "luts": _used(report, "TRELLIS_COMB"),
            "ffs": _used(report, "TRELLIS_FF"),
            "brams": _used(report, "DP16KD"),
            "dsps": _used(report, "MULT18X18D") + _used(report, "ALU54B"),
            "lut_ram": _used(report, "TRELLIS_RAMW"),
            "io": _used(report, "TRELLIS_IO"),
        }
    if family == "ice40":
        return {
            "luts": synth_cells.get("SB_LUT4", 0),
            "ffs": sum(n for kind, n in synth_cells.items() if kind.startswith("SB_DFF")),
            "logic_cells": _used(report, "ICESTORM_LC"),
            "brams": _used(report, "ICESTORM_RAM"),
            "dsps": _used(report, "ICESTORM_DSP"),
            "io": _used(report, "SB_IO"),
        }
    raise ValueError(f"nextpnr does not build {family}")


def nextpnr_fmax(report):
    """The slowest clock's achieved frequency in MHz, or None if nothing is clocked."""
    achieved = [clk["achieved"] for clk in report.get("fmax", {}).values() if "achieved" in clk]
    return round(min(achieved), 2) if achieved else None


def nextpnr_clock_fmax(report, mhz, net=None):
    """The achieved frequency (MHz) of the clock constrained to ``mhz``, or None.

    nextpnr names a clock after one of its net's aliases (``$glbnet$`` and a
    hierarchical name Yosys picked, like ``bridge.accelerator.bank.clk``), so the
    clock is found by its constraint; if several share it, by the name's last part
    being ``net``."""
    clocks = [(name.removeprefix("$glbnet$"), clk) for name, clk in report.get("fmax", {}).items()
              if "achieved" in clk and abs(clk.get("constraint", 0) - mhz) < 1e-3 * mhz]
    if len(clocks) > 1:
        clocks = [(name, clk) for name, clk in clocks if name.split(".")[-1] == net]
    return round(clocks[0][1]["achieved"], 2) if len(clocks) == 1 else None


def nextpnr_critical_path(report):
    """``(from, to, ns)`` of the slowest clock's critical path in a nextpnr ``--report``
    JSON, each end as the core's instance path and signal
    (``block_conv2_q_mvu.res7``), or None."""
    fmax = report.get("fmax", {})
    if not fmax:
        return None
    clock = min(fmax, key=lambda c: fmax[c].get("achieved", float("inf")))
    for path in report.get("critical_paths", []):
        if path.get("from", "").endswith(clock) and path.get("to", "").endswith(clock):
            steps = path["path"]
            if steps:
                return (_core(steps[0]["from"]["cell"]), _core(steps[-1]["to"]["cell"]),
                        round(sum(s["delay"] for s in steps), 2))
    return None


def _core(cell):
    """``bridge.accelerator.block_conv2_q_mvu.res7_TRELLIS_FF_Q_7`` -> the core and the
    signal, ``block_conv2_q_mvu.res7``."""
    name = cell.removeprefix("bridge.accelerator.").removeprefix("bridge.")
    for marker in ("_TRELLIS", "_SB_", "_DP16KD", "_CCU2C", "$"):
        cut = name.find(marker)
        if cut > 0:
            name = name[:cut]
    return name


_VIVADO_ROW = re.compile(r"^\|\s*(Slice LUTs|CLB LUTs|Slice Registers|CLB Registers|"
                         r"Block RAM Tile|RAMB36/FIFO|RAMB18|DSPs|LUT as Memory|Bonded IOB)"
                         r"\*?\s*\|\s*([\d.]+)\s*\|", re.M)


def vivado_utilization(text):
    """Utilization from a Vivado ``report_utilization`` file; BRAMs counted as RAMB18."""
    rows = {}
    for name, value in _VIVADO_ROW.findall(text):
        rows.setdefault(name, float(value))
    if "RAMB36/FIFO" in rows or "RAMB18" in rows:
        brams = 2 * rows.get("RAMB36/FIFO", 0) + rows.get("RAMB18", 0)
    else:
        brams = 2 * rows.get("Block RAM Tile", 0)

    def pick(*names):
        return int(next((rows[n] for n in names if n in rows), 0))

    return {
        "luts": pick("Slice LUTs", "CLB LUTs"),
        "ffs": pick("Slice Registers", "CLB Registers"),
        "brams": int(brams),
        "dsps": pick("DSPs"),
        "lut_ram": pick("LUT as Memory"),
        "io": pick("Bonded IOB"),
    }


def vivado_fmax(text, period_ns):
    """Fmax in MHz from the worst negative slack of a ``report_timing_summary``."""
    lines = text.splitlines()
    for k, line in enumerate(lines):
        if "WNS(ns)" in line:
            for row in lines[k + 1:k + 5]:
                numbers = re.findall(r"-?\d+\.\d+", row)
                if numbers:
                    return round(1e3 / (period_ns - float(numbers[0])), 2)
    return None

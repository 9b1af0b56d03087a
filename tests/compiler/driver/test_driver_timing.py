"""A placed design slower than its clock: the warning line and the report's section."""

from compiler.driver.build import timing_warning
from compiler.driver.report import synthesis_lines

PATH = {"from": "block_conv2_q_mvu.res7", "to": "block_conv2_q_mvu.o__payload[7]", "ns": 11.2}


def _synthesis(fmax, flash=None):
    clocks = {"sync": {"mhz": 100.0, "fmax_mhz": fmax}}
    if flash:
        clocks["flash"] = {"mhz": 62.5, "fmax_mhz": flash}
    met = all(c["fmax_mhz"] >= c["mhz"] for c in clocks.values())
    return {"summary": "ulx3s: ...", "tool": "nextpnr-ecp5", "utilization": {"luts": 10},
            "fmax_mhz": fmax, "clock_mhz": 100.0, "clocks": clocks, "timing_met": met,
            "critical_path": PATH}


def test_a_missed_clock_is_a_warning_naming_the_path():
    line = timing_warning(_synthesis(89.3))
    assert line.startswith("timing NOT met: sync Fmax 89.3 MHz below its 100 MHz")
    assert "block_conv2_q_mvu.res7 -> block_conv2_q_mvu.o__payload[7], 11.2 ns" in line
    assert "--clock" in line
    assert timing_warning(_synthesis(120.0)) is None
    assert timing_warning({"timing_met": None}) is None           # not placed
    two = timing_warning(_synthesis(120.0, flash=50.0))
    assert "flash Fmax 50.0 MHz below its 62.5 MHz" in two and "sync" not in two


def test_report_has_a_clock_table_and_says_when_timing_fails():
    text = "\n".join(synthesis_lines(_synthesis(89.3), {"luts": 9}, {"luts": 100}))
    assert ["sync", "100", "89.3", "NO"] in _rows(text)
    assert "Critical path: `block_conv2_q_mvu.res7` -> `block_conv2_q_mvu.o__payload[7]`" in text
    assert "Timing is NOT met" in text
    ok = "\n".join(synthesis_lines(_synthesis(120.0), {"luts": 9}, {"luts": 100}))
    assert ["sync", "100", "120.0", "yes"] in _rows(ok) and "NOT met" not in ok


def _rows(markdown):
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in markdown.splitlines() if line.startswith("|")]

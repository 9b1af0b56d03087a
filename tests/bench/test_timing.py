"""bench.timing's reading of a nextpnr report and its table (the builds are run by hand:
`python -m bench.timing`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))     # the repository root

from bench import timing  # noqa: E402

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
    assert timing.critical_path(REPORT) == ("block_conv2_q_mvu.res7",
                                            "block_conv2_q_mvu.o__payload[7]", 3.48)
    assert timing.critical_path({"fmax": {}}) is None


def test_table_has_a_row_per_build_and_refusals():
    rows = [{"design": "small_cnn", "board": "ulx3s", "luts": 100, "ffs": 50, "fmax": 101.5,
             "path_from": "a", "path_to": "b", "path_ns": 9.85, "cycles": 156},
            {"design": "digits_hw", "board": "icebreaker", "error": "does not fit"}]
    text = timing.table(rows)
    assert "101.5" in text and "a -> b" in text and "156" in text
    assert "does not fit" in text and text.count("\n") == 3

"""bench.figures: the goals table, and the one row cheap enough to build here (the
others are run by hand: `python -m bench.figures`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))     # the repository root

from bench import figures  # noqa: E402


def test_table_says_which_goals_are_met():
    rows = {
        "small_cnn": {"fmax": 101.2, "luts": 9000, "est_luts": 9900, "cycles": 160},
        "digits_ulx3s": {"fmax": 80.0, "luts": 21000, "est_luts": 20000, "cycles": 100},
        "digits_arty": {"error": "the model does not fit arty_a7_35"},
        "dot64": {"luts": 230, "ffs": 70, "nonzero": 42, "per_weight": 230 / 42, "note": ""},
        "engine_small": {"fmax": 78.9, "luts": 7700, "est_luts": 6800, "cycles": 283_266,
                         "clock_mhz": 100.0},
        "resnet18": {"fmax": 40.0, "luts": 60000, "est_luts": 80000, "cycles": 4_000_000,
                     "clock_mhz": 100.0, "fps": 25.0},
    }
    text = figures.render(rows)
    lines = text.splitlines()
    assert any("small CNN" in x and "101.2 MHz" in x and "| met" in x for x in lines)
    assert any("digits CNN ternary, ULX3S" in x and "**not met**" in x for x in lines)
    assert any("21,000 LUT4 at 100 cycles" in x and "**not met**" in x for x in lines)
    assert any("does not fit" in x for x in lines)
    assert any("230 LUTs / 42 non-zero = 5.48" in x and "| met" in x for x in lines)
    assert any("layer engine, width-8 ResNet" in x and "78.9 MHz" in x and "not met" in x
               for x in lines)
    assert any("25.00 at 100 MHz" in x and "about 10.00" in x for x in lines)
    # The cost model: within 15% met, beyond not.
    assert any("cost model: small_cnn" in x and "+10.0%" in x and "| met" in x for x in lines)
    assert any("cost model: resnet18" in x and "+33.3%" in x and "not met" in x
               for x in lines)


def test_dot_product_row_is_measured_by_yosys(tmp_path):
    row = figures.dot64(tmp_path)
    assert "error" not in row, row
    assert 0 < row["nonzero"] <= 64
    assert row["luts"] > 0 and row["per_weight"] == row["luts"] / row["nonzero"]


def test_ecp5_rows_count_nextpnr_lut4s(tmp_path):
    log = tmp_path / "top.tim"
    log.write_text("Info: Device utilisation:\nInfo:     Total LUT4s:     25577/83640    30%\n"
                   "Info:        TRELLIS_COMB:   32887/  83640    39%\n")
    assert figures.nextpnr_lut4s(log) == 25577
    assert figures.nextpnr_lut4s(tmp_path / "missing.tim") is None
    rows = {"digits_ulx3s": {"fmax": 101.0, "luts": 19000, "cells": 24000, "est_luts": 18000,
                             "cycles": 100}}
    assert any("19,000 LUT4 (24,000 logic cells) at 100 cycles" in x and "| met" in x
               for x in figures.render(rows).splitlines())

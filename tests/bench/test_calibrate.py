"""bench.calibrate: the fit and the scripts (the measurements are run by hand:
`python -m bench.calibrate --write`)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))     # the repository root

from bench import calibrate  # noqa: E402


def _row(design, hard, rom, other, factors):
    parts = {"hardwired": {"luts": hard, "ffs": hard}, "rom": {"luts": rom, "ffs": rom},
             "rom_shift": {"luts": 0, "ffs": 0}, "other": {"luts": other, "ffs": other}}
    measured = sum(factors[p] * v["luts"] for p, v in parts.items())
    return {"design": design, "family": "xilinx", "cycles": 100, "parts": parts,
            "measured": {"luts": round(measured), "ffs": round(measured)}}


def test_fit_recovers_the_factors_of_consistent_data():
    truth = {"hardwired": 0.7, "rom": 1.3, "rom_shift": 1.0, "other": 1.1}
    rows = [_row(f"d{i}", h, r, o, truth) for i, (h, r, o) in
            enumerate([(10000, 0, 2000), (0, 8000, 3000), (5000, 4000, 2500), (0, 3000, 900)])]
    factors = calibrate.fit(rows, "luts")
    for part, f in truth.items():
        assert factors[part] == pytest.approx(f, rel=1e-3)
    for r in rows:
        assert calibrate.predict(r, factors, "luts") == pytest.approx(r["measured"]["luts"],
                                                                      rel=1e-3)
    table = calibrate.table(rows, {"xilinx": {"luts": factors, "ffs": factors}})
    assert table.count("\n") == len(rows) + 1 and "+0.0%" in table


def test_a_part_no_design_has_keeps_factor_one():
    factors = {"hardwired": 1, "rom": 1.2, "rom_shift": 1, "other": 0.9}
    rows = [_row("d0", 0, 8000, 3000, factors), _row("d1", 0, 4000, 3000, factors)]
    assert calibrate.fit(rows, "luts")["hardwired"] == 1.0


@pytest.mark.parametrize("family", ["xilinx", "ecp5"])
@pytest.mark.parametrize("abc9", [True, False])
def test_yosys_scripts_synthesize_the_accelerator_and_write_stat(family, abc9):
    script = calibrate.yosys_script(family, abc9=abc9)
    assert "read_verilog accel.v" in script and "stat -json" in script
    assert "write_json" not in script
    assert ("abc9" not in script.split("synth_")[0])
    if not abc9:
        assert "abc -lut" in script

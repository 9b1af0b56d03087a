"""End to end: a torch CNN is quantized, compiled and proven bit-exact in Verilator.

Every build here runs the compiler's own verification step: 32 random inputs
through the generated Verilog in Verilator (cocotb), once without stalls and
once with random valid/ready stalls, each output compared with the golden
integer model. The tests then check the evidence the build recorded.
"""

import io
import json

import pytest

from compiler import qpk
from compiler.ir import interpret
from compiler.driver.build import BuildOptions, build


def _build(path, tmp_path, name, **kw):
    options = BuildOptions(out=tmp_path / name, **kw)
    log = io.StringIO()
    result = build(path, options, stream=log)
    return result, log.getvalue()


@pytest.mark.parametrize("kind", ["ternary", "pow2"])
@pytest.mark.parametrize("weights,target", [("hardwired", None), ("rom", 160), ("auto", None)])
def test_small_cnn_is_bit_exact_in_verilator(small_cnn_qpk, tmp_path, kind, weights, target):
    result, log = _build(small_cnn_qpk[kind], tmp_path, "b", board="ulx3s", weights=weights,
                         target_cycles=target, verify=32, synth=False)
    v = result.verification
    assert v["inputs"] >= 32 and v["mismatches"] == 0 and v["bit_exact"], log
    placements = {s.placement for s in result.plan.stages if s.is_mvu}
    # auto: hard-wired where a layer keeps the rate busy, folded where it would idle.
    assert placements == ({"hardwired", "rom"} if weights == "auto" else {weights})
    # The plan models the pipeline's handshakes (compiler/rate.py): it predicts the rate.
    assert v["cycles_per_inference"] == result.plan.cycles, log
    assert not result.warnings, result.warnings
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["verification"]["bit_exact"] is True
    for step in ("[1/6]", "[4/6]", "[6/6]"):
        assert step in log


def test_golden_model_classifies_digits(small_cnn_qpk, digits_data):
    """The integer model is the real network: it still reads digits."""
    from compiler.frontend.agreement import input_to_int
    _, test = digits_data
    for kind, path in small_cnn_qpk.items():
        graph = qpk.load(path)
        logits = interpret.run(graph, input_to_int(graph, test.x.numpy()))
        acc = float((logits.argmax(1) == test.y.numpy()).mean())
        assert acc > 0.85, f"{kind}: {acc:.3f}"


def test_builds_are_byte_identical(small_cnn_qpk, tmp_path):
    outs = []
    for name in ("one", "two"):
        _build(small_cnn_qpk["pow2"], tmp_path, name, board="ulx3s", weights="rom",
               target_cycles=160, verify=0, synth=False)
        root = tmp_path / name
        outs.append({p.relative_to(root).as_posix(): p.read_bytes()
                     for p in sorted(root.rglob("*")) if p.is_file() and p.name != "timings.json"})
    assert outs[0].keys() == outs[1].keys()
    assert {"accel.v", "weights.bin", "report.md", "report.json"} <= outs[0].keys()
    assert any(k.startswith("weights/") and k.endswith(".hex") for k in outs[0])
    for key in outs[0]:
        assert outs[0][key] == outs[1][key], f"{key} differs between two identical builds"


@pytest.mark.slow
def test_ulx3s_bitstream(small_cnn_qpk, tmp_path):
    """The real thing: Yosys and nextpnr-ecp5 (YoWASP) to a ULX3S bitstream."""
    result, log = _build(small_cnn_qpk["ternary"], tmp_path, "u", board="ulx3s", weights="rom",
                         target_cycles=160, verify=32, synth=True)
    s = result.synthesis
    assert result.verification["bit_exact"]
    bit = tmp_path / "u" / s["bitstream"]
    assert bit.is_file() and bit.stat().st_size > 100_000
    assert s["utilization"]["luts"] > 0 and s["fmax_mhz"] > 0
    # The board's default clock, 100 MHz from the PLL; the report says whether it is met.
    assert s["clock_mhz"] == 100 and s["timing_met"] == (s["fmax_mhz"] >= 100)
    assert s["critical_path"]["ns"] > 0
    assert any(w.startswith("timing NOT met") for w in result.warnings) == (not s["timing_met"])
    report = (tmp_path / "u" / "report.md").read_text()
    assert "## Synthesis" in report and "Fmax" in report


@pytest.mark.slow
def test_arty_plan_and_yosys_utilization(small_cnn_qpk, tmp_path, monkeypatch):
    """Without Vivado: the complete Vivado build plan plus Yosys synth_xilinx utilization."""
    import shutil
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k:
                        None if name == "vivado" else real_which(name, *a, **k))
    result, log = _build(small_cnn_qpk["pow2"], tmp_path, "a", board="arty_a7", weights="rom",
                         target_cycles=640, verify=0, synth=True)
    s = result.synthesis
    assert s["bitstream"] is None
    assert s["utilization"]["luts"] > 0 and s["utilization"].get("dsps", 0) == 0
    # The logic depth per stage, next to the LUTs, in the report's layer table.
    assert s["utilization"]["lut_levels"] == max(s["logic_depth"].values())
    report = (tmp_path / "a" / "report.md").read_text()
    assert "LUT levels |" in report and "an Artix-7 -1 holds about 8 at 100 MHz" in report
    board_files = {p.name for p in (tmp_path / "a" / "board").iterdir()}
    assert any(n.endswith(".tcl") for n in board_files), board_files
    assert any(n.endswith(".xdc") for n in board_files), board_files

"""Issue 10's figures in one table: clock, size and cost-model accuracy against their goals.

    python -m bench.figures                    # every row; the ResNet-18 row takes hours
    python -m bench.figures --skip resnet18    # the others (about 40 minutes on two cores)
    python -m bench.figures --pnr-seeds 3      # nextpnr tries up to 3 placements per ECP5 row

Rows (each built with the whole board flow, ``python -m compiler build``):

- ``small_cnn``: the small CNN of tests/e2e, folded to 160 cycles, on the ULX3S
  (Yosys, nextpnr-ecp5): Fmax >= 100 MHz;
- ``digits_ulx3s``: ``digits_cnn_ternary``, ``--weights auto``, on the ULX3S:
  Fmax >= 100 MHz, at most 20,000 LUT4 at 100 cycles per inference;
- ``digits_arty``: the same on the Arty A7-35T (Yosys ``synth_xilinx``), folded to
  the goal's 192 cycles (``--target-cycles 192``): at most 8,000 LUTs;
- ``dot64``: one hard-wired 64-input ternary dot product (``hw.mvu.ConstantMVU``,
  4-bit unsigned activations, a third of the weights zero, pipelined as the plan
  pipelines it at 100 MHz on xc7), Yosys ``synth_xilinx``: at most 8 LUTs per
  non-zero weight;
- ``engine_small``: the layer engine of ``resnet18``'s code at its smallest, a
  width-8 ResNet (ternary, 4-bit activations, the network of
  tests/e2e/test_engine.py) on a PE 2 x SIMD 8 bank, on the ULX3S at ``--clock
  100``: a minutes-long stand-in for the next row's Fmax (the same engine, less
  congested);
- ``resnet18``: ResNet-18 (``python -m compiler quantize resnet18``) through the
  layer engine on the ULX3S at ``--clock 100``: Fmax >= 100 MHz, inferences/s at
  the clock it meets;
- the cost model: the plan's LUT estimate within 15% of the measured LUTs, on
  every row that has one.

Prints the table (goal, measured, met?) and writes it with every number to
``--out``/figures.json and ``bench/results/figures.md``. Nothing is asserted.
"""

import argparse
import io
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "figures.md"
ROWS = ("small_cnn", "digits_ulx3s", "digits_arty", "dot64", "engine_small", "resnet18")
#: The cost model's goal: estimate within this share of the measured LUTs.
COST_TOLERANCE = 0.15


def _board_row(model, board, out, *, weights="auto", target_cycles=None, engine="dataflow",
               clock_mhz=None, pnr_seeds=1):
    """Build ``model`` for ``board`` through the toolchain; measured and estimated figures."""
    from compiler.driver.build import BuildOptions, build
    from compiler.errors import BuildError
    options = BuildOptions(board=board, out=out, weights=weights, target_cycles=target_cycles,
                           verify=0, synth=True, force=True, engine=engine,
                           clock_mhz=clock_mhz, pnr_seeds=pnr_seeds)
    t0 = time.monotonic()
    try:
        result = build(model, options, stream=io.StringIO())
    except BuildError as e:
        return {"error": str(e).splitlines()[0]}
    s = result.synthesis or {}
    u = s.get("utilization") or {}
    plan = result.plan
    row = {"luts": u.get("luts"), "ffs": u.get("ffs"), "fmax": s.get("fmax_mhz"),
           "tool": s.get("tool"), "cycles": plan.cycles, "est_luts": plan.resources.luts,
           "clock_mhz": (result.clock_hz or 0) / 1e6 or None,
           "seconds": round(time.monotonic() - t0)}
    lut4 = nextpnr_lut4s(out / "board" / "top.tim")
    if lut4 is not None:
        row["cells"], row["luts"] = row["luts"], lut4
    path = s.get("critical_path")
    if path:
        row["path"] = f"{path['from']} -> {path['to']} ({path['ns']} ns)"
    return row


def nextpnr_lut4s(log):
    """nextpnr-ecp5's count of LUT4s (its last ``Total LUT4s:`` line), or None.

    The build reports nextpnr's ``TRELLIS_COMB``: logic cells, which also counts the
    cells that only pass a signal on to a flip-flop or serve a LUT RAM's write port
    (32,887 cells for the digits CNN's 25,577 LUT4s). The goals count LUT4s, and the
    cost model, calibrated on Yosys' LUT4 count, estimates them."""
    try:
        text = Path(log).read_text(errors="replace")
    except OSError:
        return None
    found = re.findall(r"Total LUT4s:\s+(\d+)/", text)
    return int(found[-1]) if found else None


def small_cnn(out, seeds=1):
    from bench.timing import small_cnn_qpk
    qpk = out / "small_cnn_ternary.qpk"
    if not qpk.exists():
        small_cnn_qpk(qpk)
    return _board_row(qpk, "ulx3s", out / "small_cnn-ulx3s", weights="rom", target_cycles=160,
                      pnr_seeds=seeds)


def digits_ulx3s(out, seeds=1):
    return _board_row("digits_cnn_ternary", "ulx3s", out / "digits-ulx3s", pnr_seeds=seeds)


def digits_arty(out, seeds=1):
    # The goal's rate: auto would take the fastest design that fits (128 cycles).
    return _board_row("digits_cnn_ternary", "arty_a7", out / "digits-arty_a7",
                      target_cycles=192)


def dot64(out, n=64, seed=0, seeds=1):
    """LUTs of one hard-wired ``n``-input ternary dot product, per non-zero weight."""
    import numpy as np
    from amaranth import unsigned
    from amaranth.back import verilog

    from bench.calibrate import synthesize
    from compiler.backends.dataflow.cost import FABRICS, levels_per_stage
    from hw.lanes import shape_for_range
    from hw.mvu import ConstantMVU
    work = out / "dot64"
    work.mkdir(parents=True, exist_ok=True)
    weights = np.random.default_rng(seed).choice([-1, 0, 1], size=(1, n))
    nonzero = int(np.count_nonzero(weights))
    core = ConstantMVU(weights.tolist(), in_shape=unsigned(4),
                       acc_width=shape_for_range(-15 * n, 15 * n).width,
                       levels_per_stage=levels_per_stage(FABRICS["xilinx"], 100))
    (work / "dot.v").write_text(verilog.convert(core, name="dot", emit_src=False))
    try:
        u = synthesize("xilinx", work, top="dot")
    except RuntimeError as e:
        return {"error": str(e)}
    note = "" if u["abc"] == "abc9" else "classic ABC (ABC9 exits 1 on this netlist)"
    return {"luts": u["luts"], "ffs": u["ffs"], "nonzero": nonzero,
            "per_weight": u["luts"] / nonzero, "note": note}


def engine_small(out, seeds=1):
    # The ternary network of tests/e2e/test_engine.py's `resnet_qpks` (same seed and options).
    qpk = out / "resnet8.qpk"
    if not qpk.exists():
        import torch

        from compiler.frontend import quantize
        from compiler.frontend.train import deterministic
        from compiler.zoo.models import ResNet
        with deterministic(0):
            model = ResNet(width=8, num_classes=10).eval()
            x = torch.randn(64, 3, 32, 32)
            quantize(model, x, weights="ternary", act_bits=4,
                     name="resnet8_ternary").save(qpk)
    return _board_row(qpk, "ulx3s", out / "engine_small-ulx3s", engine="layer",
                      clock_mhz=100, pnr_seeds=seeds)


def resnet18(out, seeds=1):
    qpk = out / "resnet18.qpk"
    if not qpk.exists():
        import subprocess
        subprocess.run([sys.executable, "-m", "compiler", "quantize", "resnet18",
                        "-o", str(qpk.resolve())], check=True, cwd=ROOT)
    row = _board_row(qpk, "ulx3s", out / "resnet18-ulx3s", engine="layer", clock_mhz=100,
                     pnr_seeds=seeds)
    if "error" not in row:
        row["fps"] = row["clock_mhz"] * 1e6 / row["cycles"]
    return row


def _met(ok):
    return "met" if ok else "**not met**"


def table(rows):
    """``[[row, goal, measured, met]]`` from the measured rows."""
    out = []

    def fmax_line(name, r, what):
        if "error" in r:
            out.append([name, what, r["error"], "-"])
            return False
        fmax = r.get("fmax")
        out.append([name, "Fmax >= 100 MHz",
                    f"{fmax:.1f} MHz" if fmax else "no Fmax", _met(fmax and fmax >= 100)])
        return True

    if "small_cnn" in rows:
        fmax_line("small CNN, ULX3S (folded, 160 cycles)", rows["small_cnn"], "Fmax")
    if "digits_ulx3s" in rows:
        r = rows["digits_ulx3s"]
        if fmax_line("digits CNN ternary, ULX3S, auto", r, "Fmax"):
            cells = f" ({r['cells']:,} logic cells)" if r.get("cells") else ""
            out.append(["", "<= 20,000 LUT4 at 100 cycles/inference",
                        f"{r['luts']:,} LUT4{cells} at {r['cycles']:,} cycles",
                        _met(r["luts"] <= 20_000 and r["cycles"] <= 100)])
    if "digits_arty" in rows:
        r = rows["digits_arty"]
        if "error" in r:
            out.append(["digits CNN ternary, arty_a7, 192 cycles", "<= 8,000 LUTs", r["error"],
                        "-"])
        else:
            out.append(["digits CNN ternary, arty_a7, 192 cycles",
                        "<= 8,000 LUTs (Yosys) at <= 192 cycles/inference",
                        f"{r['luts']:,} LUTs at {r['cycles']:,} cycles",
                        _met(r["luts"] <= 8_000 and r["cycles"] <= 192)])
    if "dot64" in rows:
        r = rows["dot64"]
        name = "64-input ternary dot product, 4-bit activations, xc7"
        if "error" in r:
            out.append([name, "<= 8 LUTs per non-zero weight", r["error"], "-"])
        else:
            out.append([name, "<= 8 LUTs per non-zero weight",
                        f"{r['luts']} LUTs / {r['nonzero']} non-zero = {r['per_weight']:.2f}"
                        + (f" ({r['note']})" if r["note"] else ""),
                        _met(r["per_weight"] <= 8)])
    if "engine_small" in rows:
        fmax_line("layer engine, width-8 ResNet, PE 2 x SIMD 8, ULX3S (--clock 100)",
                  rows["engine_small"], "Fmax")
    if "resnet18" in rows:
        r = rows["resnet18"]
        if fmax_line("ResNet-18 layer engine, ULX3S (--clock 100)", r, "Fmax"):
            fmax = r.get("fmax") or 0
            clock = min(fmax, r["clock_mhz"])
            out.append(["", "inferences/s at that clock",
                        f"{r['fps']:.2f} at {r['clock_mhz']:g} MHz"
                        + (f" (at the placed {fmax:.1f} MHz: about "
                           f"{r['fps'] * clock / r['clock_mhz']:.2f})"
                           if fmax < r["clock_mhz"] else ""), "-"])
    for key, r in rows.items():
        if "est_luts" in r and r.get("luts"):
            err = (r["est_luts"] - r["luts"]) / r["luts"]
            out.append([f"cost model: {key}", "LUT estimate within 15%",
                        f"{r['est_luts']:,} estimated vs {r['luts']:,} ({100 * err:+.1f}%)",
                        _met(abs(err) <= COST_TOLERANCE)])
    return out


def render(rows):
    from compiler.table import markdown_table
    return markdown_table(["design", "goal", "measured", "met?"], table(rows), "llll")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.figures",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--skip", default="", help=f"rows to leave out, of {', '.join(ROWS)}")
    ap.add_argument("--out", type=Path, default=Path("build/bench/figures"))
    ap.add_argument("--pnr-seeds", type=int, default=1, metavar="N",
                    help="nextpnr placement seeds to try per ECP5 build (build --pnr-seeds)")
    args = ap.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(ROWS):
        sys.exit(f"bench.figures: unknown row {sorted(skip - set(ROWS))[0]!r}; rows: "
                 f"{', '.join(ROWS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    measure = {"small_cnn": small_cnn, "digits_ulx3s": digits_ulx3s,
               "digits_arty": digits_arty, "dot64": dot64, "engine_small": engine_small,
               "resnet18": resnet18}
    rows = {}
    t0 = time.monotonic()
    todo = [r for r in ROWS if r not in skip]
    for n, key in enumerate(todo, 1):
        print(f"[{n}/{len(todo)}] {key}: building...", file=sys.stderr, flush=True)
        t = time.monotonic()
        rows[key] = measure[key](args.out, seeds=args.pnr_seeds)
        print(f"      {rows[key]} ({time.monotonic() - t:.0f} s)", file=sys.stderr, flush=True)
    text = render(rows)
    command = "python -m bench.figures" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    print(text)
    print(f"\n`{command}`: {time.monotonic() - t0:.0f} s")
    (args.out / "figures.json").write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    RESULTS.write_text("# bench.figures: issue 10's goals\n\n" + text
                       + f"\n\nCommand: `{command}`, {time.monotonic() - t0:.0f} s.\n")


if __name__ == "__main__":
    main()

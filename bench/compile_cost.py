"""What elaboration costs the compiler: the rates behind ``compiler/compile_cost.py``.

    python -m bench.compile_cost

Builds hard-wired layers and wide requantizers of growing size, converts each
to Verilog and prints, per item (an adder term or a threshold comparison), the
seconds and the peak memory it cost. ``compiler.driver.compile_cost`` uses these
rates to refuse a build that would exhaust the machine before it starts.
"""

import argparse
import resource
import subprocess
import sys

from compiler.table import markdown_table

_CHILD = r'''
import sys, time, resource
import numpy as np
from compiler.ir import Graph, Node
from compiler.passes import prepare
from compiler.backends.dataflow.plan import make_plan
from compiler.backends.dataflow.cost import FABRICS
from compiler.driver.build import accelerator_verilog
kind, size = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
if kind == "terms":
    c, o = size, 16
    w = rng.choice([-1, 0, 1], size=(o, c, 1, 1))
    bits = 4
else:
    c, o, bits = 16, 16, size
    w = rng.integers(-8, 8, size=(o, c, 1, 1))
nodes = [Node("input", "input", [], {"shape": [c, 2, 2], "bits": 8, "signed": True}),
         Node("conv", "conv2d", ["input"], {"kernel": 1, "weight_kind": "int", "weight_bits": 4},
              {"weight": w}),
         Node("q", "requant", ["conv"], {"bits": bits, "signed": True},
              {"multiplier": np.full(o, 2.0 ** (bits - 12)), "offset": np.zeros(o)})]
t = time.monotonic()
plan = make_plan(prepare(Graph(nodes, ["q"])), FABRICS["ecp5"], placement="hardwired")
items = sum(s.digits + (s.thresholds.size if s.thresholds is not None else 0)
            for s in plan.stages if s.is_mvu)
accelerator_verilog(plan)
print(items, time.monotonic() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
'''


def measure(kind, size):
    out = subprocess.run([sys.executable, "-c", _CHILD, kind, str(size)], capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[0]), float(out[1]), int(out[2])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two sizes per kind")
    args = p.parse_args(argv)
    cases = [("terms", n) for n in ((64, 256) if args.quick else (64, 256, 1024))] + \
            [("thresholds", b) for b in ((6, 8) if args.quick else (6, 8, 10))]
    base = measure("terms", 1)
    rows = []
    for kind, size in cases:
        items, seconds, peak = measure(kind, size)
        extra = max(items - base[0], 1)
        rows.append([kind, size, items, f"{seconds:.2f}",
                     f"{(seconds - base[1]) / extra * 1e3:.3f}",
                     f"{(peak - base[2]) / extra / 1024:.1f}"])
    print(markdown_table(["what", "size", "items", "seconds", "ms per item", "KB per item"],
                         rows, "lrrrrr"))
    print(f"\npeak memory of this process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

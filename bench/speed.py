"""How long the compiler takes at ResNet scale: ``python -m bench.speed``.

For each model (``--models``, default ``digits_cnn resnet18_cifar resnet18``):

* **quantize**: ``python -m compiler quantize MODEL -o FILE --calib 32`` run in
  this process (torch already imported), no training (``--epochs 0
  --finetune-epochs 0`` for ``digits_cnn``; the ResNets never train here);
* **prepare**: ``qpk.load`` and :func:`compiler.passes.prepare` of that file;
* **plan**: the dataflow back end's :func:`make_plan` for ``--board`` (folding
  included) and :func:`check_budget`, up to a refusal if the model does not fit;
  the outcome column says which;
* **golden**: :func:`compiler.ir.interpret.run` on the prepared graph for one
  random input image (the median of ``--repeat`` runs);
* **engine lowering**: :func:`compiler.backends.layer.lower.lower_engine` of the
  prepared graph for a ``--bank`` of PE x SIMD MACs (schedule, weight stream,
  every byte of ``weights.bin``).

Times are wall-clock seconds on this machine; the targets of issue 8 are printed
beside them. Nothing here is asserted by the tests (``tests/bench/test_speed.py``
checks the table's shape on ``digits_cnn`` only).
"""

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from compiler.table import markdown_table

__all__ = ["MODELS", "TARGETS", "main", "measure", "render"]

MODELS = ("digits_cnn", "resnet18_cifar", "resnet18")
#: column -> the most seconds it may take (issue 8: "speed at ResNet scale")
TARGETS = {"plan": 5.0, "golden": 2.0, "quantize": 60.0}
CALIB = 32


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _quantize(model, out):
    from compiler.driver.cli import main as cli
    args = ["quantize", model, "-o", str(out), "--calib", str(CALIB)]
    if model == "digits_cnn":
        args += ["--epochs", "0", "--finetune-epochs", "0"]
    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        rc = cli(args)
    if rc != 0:
        raise RuntimeError(f"quantize {model} failed:\n{log.getvalue()}")


def _plan(pgraph, board_name):
    from boards import get_board
    from compiler.backends.dataflow.cost import FABRICS
    from compiler.backends.dataflow.plan import check_budget, make_plan
    from compiler.errors import BuildError
    board = get_board(board_name)
    try:
        plan = make_plan(pgraph, FABRICS[board.family], budget=board.budget)
        check_budget(plan, board.name)
    except BuildError as err:
        return f"refused: {err}"
    return f"fits: {plan.cycles:,} cycles per inference"


def _short(outcome):
    """The plan's outcome in a table cell: the refusal's first clause."""
    if outcome.startswith("refused: "):
        text = outcome.split("(", 1)[0].strip()
        return text.replace("the model does not fit ", "").replace(": its ", ": ")
    return outcome


def measure(model, *, board="arty_a7", bank=(16, 16), repeat=3, workdir=None, log=print):
    """One row: seconds per step for ``model`` and the plan's outcome (a dict)."""
    import numpy as np

    from compiler import passes, qpk
    from compiler.backends.layer.lower import lower_engine
    from compiler.driver.build import random_inputs
    from compiler.errors import UserError
    from compiler.ir import interpret
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory())
        path = Path(workdir) / f"{model}.qpk"
        log(f"{model}: quantize")
        _, quantize_s = _timed(lambda: _quantize(model, path))
        pgraph, prepare_s = _timed(lambda: passes.prepare(qpk.load(path)))
        log(f"{model}: plan for {board}")
        outcome, plan_s = _timed(lambda: _plan(pgraph, board))
        x = random_inputs(pgraph, 1, 0)
        golden = [_timed(lambda: interpret.run(pgraph, x))[1] for _ in range(repeat)]
        log(f"{model}: layer engine lowering")
        try:
            build, lower_s = _timed(lambda: lower_engine(pgraph, pe=bank[0], simd=bank[1]))
            stream_bytes = len(build.stream.data)
        except UserError as err:
            lower_s, stream_bytes = None, f"refused: {err}"
    return {"model": model, "input": "x".join(map(str, pgraph.input.attrs["shape"])),
            "weights": int(sum(np.prod(t.shape) for n in pgraph.nodes
                               for k, t in n.tensors.items() if k in ("weight", "indices"))),
            "quantize_s": quantize_s, "prepare_s": prepare_s, "plan_s": plan_s,
            "plan_outcome": outcome, "golden_s": statistics.median(golden),
            "lower_s": lower_s, "stream_bytes": stream_bytes}


def _cell(seconds, target=None):
    if seconds is None:
        return "-"
    mark = "" if target is None else (" ok" if seconds <= target else " **over**")
    return f"{seconds:.2f}{mark}" if seconds >= 0.1 else f"{seconds:.3f}{mark}"


def render(rows, *, board="arty_a7", bank=(16, 16)):
    """The Markdown table of :func:`measure`'s rows, with the targets and the plan outcomes."""
    head = ["model", "input", "weights", "quantize s", "prepare s", f"plan s ({board})",
            "golden s / image", f"engine lowering s ({bank[0]}x{bank[1]})"]
    body = [[r["model"], r["input"], f"{r['weights']:,}",
             _cell(r["quantize_s"], TARGETS["quantize"]), _cell(r["prepare_s"]),
             _cell(r["plan_s"], TARGETS["plan"]), _cell(r["golden_s"], TARGETS["golden"]),
             _cell(r["lower_s"])] for r in rows]
    lines = [markdown_table(head, body), "",
             (f"Targets: quantize <= {TARGETS['quantize']:g} s ({CALIB} calibration images, no "
              f"training), plan <= {TARGETS['plan']:g} s, golden <= {TARGETS['golden']:g} s per "
              "image."), "", "Plan outcomes:", ""]
    lines += [f"- {r['model']}: {_short(r['plan_outcome'])}" for r in rows]
    lines += ["", "Engine weight streams:", ""]
    lines += [f"- {r['model']}: " + (f"{r['stream_bytes']:,} bytes"
                                     if isinstance(r["stream_bytes"], int) else r["stream_bytes"])
              for r in rows]
    return "\n".join(lines)


def _bank(text):
    pe, x, simd = text.lower().partition("x")
    if not x or not pe.isdigit() or not simd.isdigit():
        raise argparse.ArgumentTypeError(f"expected PExSIMD (e.g. 16x16), got {text!r}")
    return int(pe), int(simd)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--board", default="arty_a7", help="board of the plan (default: %(default)s)")
    p.add_argument("--bank", type=_bank, default=(16, 16), metavar="PExSIMD",
                   help="the layer engine's MAC bank (default: 16x16)")
    p.add_argument("--repeat", type=int, default=3, help="golden runs per model (median)")
    p.add_argument("--keep", type=Path, default=None, metavar="DIR",
                   help="keep the quantized .qpk files in DIR")
    args = p.parse_args(argv)
    import torch  # noqa: F401  (imported before the clocks start: not the compiler's time)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    rows = [measure(m, board=args.board, bank=args.bank, repeat=args.repeat, workdir=args.keep,
                    log=lambda s: print(s, file=sys.stderr))
            for m in args.models]
    print(render(rows, board=args.board, bank=args.bank))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m compiler``: quantize or import, inspect, build, flash and run.

User errors (a bad file, an unknown board, a model that does not fit) print one
line, ``error: ...``, and exit with status 1; no traceback.
"""

import argparse
import sys
from pathlib import Path

from ..errors import UserError

__all__ = ["main"]


def _cmd_inspect(args):
    from .inspect import inspect_text
    from .model import resolve_model
    graph, path = resolve_model(args.model)
    print(inspect_text(graph, path))
    return 0


def _parse_fold(text):
    name, sep, value = text.partition("=")
    pe, x, simd = value.lower().partition("x")
    if not sep or not x or not pe.isdigit() or not simd.isdigit() or int(pe) < 1 or int(simd) < 1:
        raise argparse.ArgumentTypeError(f"expected LAYER=PExSIMD (e.g. conv2=4x8), got {text!r}")
    return name, (int(pe), int(simd))


def _parse_bank(text):
    pe, x, simd = text.lower().partition("x")
    if not x or not pe.isdigit() or not simd.isdigit() or int(pe) < 1 or int(simd) < 1:
        raise argparse.ArgumentTypeError(f"expected PExSIMD (e.g. 8x32), got {text!r}")
    return int(pe), int(simd)


def _parse_mhz(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a frequency in MHz, got {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected 1 to 1000 MHz, got {text}")
    return value


def _folds(pairs):
    folds = {}
    for name, value in pairs or []:
        if name in folds:
            raise UserError(f"--fold {name}: given twice; give one --fold per layer")
        folds[name] = value
    return folds


def _count(least):
    """An argparse type: an integer >= ``least``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}")
        return value
    parse.__name__ = f"integer >= {least}"
    return parse


def _out_dir(text):
    if not text.strip():
        raise argparse.ArgumentTypeError("the output directory must not be empty")
    return Path(text)


def _cmd_build(args):
    from .build import BuildOptions, build
    options = BuildOptions(
        board=args.board, out=args.out, weights=args.weights,
        target_cycles=args.target_cycles, fold=_folds(args.fold),
        verify=args.verify, seed=args.seed, synth=not args.no_synth, force=args.force,
        engine=args.engine, bank=args.bank, clock_mhz=args.clock, baud=args.baud,
        pnr_seeds=args.pnr_seeds)
    result = build(args.model, options)
    return 0 if result.ok else 1


def _cmd_flash(args):
    from .flash import flash
    return flash(args.build_dir, to_flash=args.write_flash, dry_run=args.dry_run,
                 cable=args.cable)


def _cmd_run(args):
    from .run import RunOptions, run
    return run(args.build_dir, RunOptions(port=args.port, input=args.input, baud=args.baud,
                                          top=args.top, compare=args.compare,
                                          timeout=args.timeout, limit=args.limit))


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected 0 to 3600 seconds, got {text}")
    return value


def _cmd_zoo(args):
    from ..table import markdown_table
    from ..zoo import MODELS, list_models, zoo_path
    rows = [[name, MODELS[name][1], str(zoo_path(name))] for name in list_models()]
    print(markdown_table(["model", "description", "file"], rows))
    return 0


def _cmd_import(args):
    from ..qonnx import import_onnx
    from ..qpk import save
    from .inspect import inspect_text
    graph = import_onnx(args.model)
    try:
        save(graph, args.out, producer={"name": "shiftadd import (QONNX)"})
    except OSError as err:
        raise UserError(f"{args.out}: cannot write: {err.strerror or err}") from None
    print(inspect_text(graph, args.out))
    print(f"wrote {args.out}")
    return 0


def _cmd_quantize(args):
    from ..frontend.cli import run
    return run(args)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and the usage is a --help away)."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def _parser():
    p = _Parser(
        prog="python -m compiler",
        description="Compile quantized neural networks into multiplier-free FPGA accelerators.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=_Parser)

    q = sub.add_parser("quantize", help="quantize a PyTorch model into a .qpk")
    try:
        from ..frontend.cli import add_arguments
    except ImportError:          # torch missing: the other commands still work
        add_arguments = None
    if add_arguments is not None:
        add_arguments(q)
    q.set_defaults(func=_cmd_quantize)

    m = sub.add_parser("import", help="read a QONNX model (Brevitas' export) into a .qpk")
    m.add_argument("model", type=Path, help="a QONNX .onnx file")
    m.add_argument("-o", "--out", type=_out_dir, required=True, help="the .qpk to write")
    m.set_defaults(func=_cmd_import)

    i = sub.add_parser("inspect", help="print a table of a .qpk's nodes")
    i.add_argument("model", help="a .qpk file or the name of a zoo model")
    i.set_defaults(func=_cmd_inspect)

    b = sub.add_parser("build", help="compile a .qpk into Verilog, weight images, a report "
                                     "and board build files")
    b.add_argument("model", help="a .qpk file or the name of a zoo model (see `zoo`)")
    b.add_argument("--board", default="arty_a7",
                   help="target board: arty_a7 (= arty_a7_35), arty_a7_100, ulx3s, icebreaker "
                        "(default: %(default)s)")
    b.add_argument("-o", "--out", type=_out_dir, default=None,
                   help="output directory (default: build/MODEL-BOARD); a directory holding "
                        "files this tool did not write is refused unless --force")
    b.add_argument("--force", action="store_true",
                   help="build into a directory that holds other files (they are left alone)")
    b.add_argument("--engine", choices=["auto", "dataflow", "layer"], default="auto",
                   help="back end: dataflow (a core per layer, weights on chip), layer (one "
                        "engine stepping through the layers, weights streamed from flash), or "
                        "auto: dataflow if it fits the board, else layer (default: auto)")
    b.add_argument("--bank", type=_parse_bank, default=None, metavar="PExSIMD",
                   help="layer engine: fix the MAC bank (output channels x input lanes per "
                        "cycle); default: the planner sizes it to the board")
    b.add_argument("--weights", choices=["auto", "hardwired", "rom"], default="auto",
                   help="weight placement: hard-wired constants, on-chip ROM with folded MAC "
                        "units, or auto: hard-wired if it fits the board (default: auto)")
    b.add_argument("--target-cycles", type=_count(1), default=None, metavar="N",
                   help="fold ROM layers to take at most N cycles per inference")
    b.add_argument("--fold", type=_parse_fold, action="append", metavar="LAYER=PExSIMD",
                   help="fix one layer's parallelism (output channels x input lanes per cycle)")
    b.add_argument("--verify", type=_count(0), default=None, metavar="N",
                   help="simulate N random inputs in Verilator against the golden model "
                        "(0: skip; default: 32 for dataflow, for the layer engine as many "
                        "as fit in about 2 million cycles, at least 1)")
    b.add_argument("--seed", type=_count(0), default=0, help="seed of the verification inputs")
    b.add_argument("--clock", type=_parse_mhz, default=None, metavar="MHZ",
                   help="the design's clock, made by the board's PLL (default: the board's, "
                        "100 MHz on the ULX3S and Arty, 50 on the iCEBreaker; the layer engine: "
                        "25 MHz on the ULX3S); the cores are pipelined for it and the report "
                        "says whether the placed design meets it")
    b.add_argument("--baud", type=_count(1), default=None,
                   help="the UART's rate (default: the fastest that the design's clock and the "
                        "board's USB-UART bridge both divide exactly: 2 Mbaud on the ULX3S at "
                        "100 MHz, 4 Mbaud on the Arty)")
    b.add_argument("--pnr-seeds", type=_count(1), default=1, metavar="N",
                   help="ECP5/iCE40: let nextpnr try up to N placement seeds until the design "
                        "meets its clock, else keep the fastest (placement alone moves Fmax by "
                        "10%% or more; default: %(default)s)")
    b.add_argument("--no-synth", action="store_true",
                   help="write the board's build files but do not run the FPGA toolchain")
    b.set_defaults(func=_cmd_build)

    f = sub.add_parser("flash", help="load a built bitstream onto the board (openFPGALoader)")
    f.add_argument("build_dir", type=Path, help="a directory written by `build`")
    f.add_argument("--write-flash", action="store_true",
                   help="write the SPI flash (persistent) instead of the FPGA's SRAM")
    f.add_argument("--cable", default=None, help="openFPGALoader cable, if not the board's own")
    f.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    f.set_defaults(func=_cmd_flash)

    r = sub.add_parser("run", help="run inputs through a built design on the board (or on a "
                                   "virtual one: --port sim) and print the outputs")
    r.add_argument("build_dir", type=Path, help="a directory written by `build`")
    r.add_argument("--port", required=True,
                   help="the board's serial port (/dev/ttyUSB1, COM3, ...) or 'sim': the "
                        "build's accelerator behind the board's UART bridge in Verilator")
    r.add_argument("--input", required=True, type=Path, metavar="FILE",
                   help="an .npz (x, optional labels y), an .npy, or an image (PNG, JPEG, "
                        "...): integers are the model's input integers, floats and images are "
                        "quantized with the model's input scale")
    r.add_argument("--compare", action="store_true",
                   help="check every output against the golden model; a mismatch is an error")
    r.add_argument("--baud", type=_count(1), default=None,
                   help="the UART's rate (default: the one the build was made for)")
    r.add_argument("--top", type=_count(1), default=3, metavar="K",
                   help="classes printed per input (default: %(default)s)")
    r.add_argument("--limit", type=_count(1), default=None, metavar="N",
                   help="send at most the first N inputs")
    r.add_argument("--timeout", type=_seconds, default=5.0, metavar="S",
                   help="seconds without a byte before the board counts as silent "
                        "(default: %(default)s; the virtual board waits at least 30)")
    r.set_defaults(func=_cmd_run)

    z = sub.add_parser("zoo", help="list the built-in models")
    z.set_defaults(func=_cmd_zoo)
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        # One line, whatever the message carries (a torch error can span several).
        text = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"error: {text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

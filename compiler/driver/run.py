"""``python -m compiler run BUILD --port PORT --input FILE``: inferences on the board.

Sends each input to the board over its USB UART (:mod:`boards.host`'s protocol,
one input at a time), prints the top classes of each output, and at the end the
rate and, if the inputs have labels, the accuracy. ``--port sim`` runs the same
against a virtual board: the build's ``accel.v`` behind the board's UART bridge
in Verilator (:mod:`sim.uart_board`). ``--compare`` checks every output against
the golden model of the build's ``model.qpk``.
"""

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..limits import NAME_PATTERN
from .inputs import read_inputs

__all__ = ["RunError", "RunOptions", "BuildInfo", "run"]


class RunError(UserError):
    """The build directory, the port or the board is not usable."""


@dataclass(frozen=True)
class RunOptions:
    port: str
    input: Path
    baud: int | None = None
    top: int = 3
    compare: bool = False
    timeout: float = 5.0          # seconds without a byte before the board counts as silent
    limit: int | None = None      # inputs sent at most


@dataclass
class BuildInfo:
    """What ``run`` needs of a build directory (``build.json``, ``board/board.json``,
    ``model.qpk``)."""
    root: Path
    engine: str
    board: str
    graph: object
    in_format: object
    out_format: object
    baud: int
    virtual: dict | None          # the virtual board: verilog, module, clocks, flash_image

    @classmethod
    def load(cls, root):
        from boards import BoardError
        from boards.host import LaneFormat
        from boards.manifest import MANIFEST, read_manifest

        from .. import qpk
        root = Path(root)
        if not root.is_dir():
            raise RunError(f"{root}: no such build directory")
        build = _json(root / "build.json", f"{root} is not a directory `build` wrote")
        if not isinstance(build, dict) or "model_file" not in build:
            raise RunError(f"{root}/build.json: no 'model_file'; rebuild with this version "
                           "(`python -m compiler build ...`)")
        try:
            board, board_dir = read_manifest(root)
        except BoardError as err:
            raise RunError(str(err)) from None
        uart = board.get("uart")
        try:
            fmts = [LaneFormat(int(uart[k]["width"]), bool(uart[k]["signed"]),
                               int(uart[k]["lanes"])) for k in ("input", "output")]
            baud = int(uart["baud"])
        except (KeyError, TypeError, ValueError):
            raise RunError(f"{board_dir / MANIFEST}: no valid 'uart' entry (input, output, "
                           "baud)") from None
        model = _inside(root, build["model_file"], "model_file")
        graph = qpk.load(model)
        info = cls(root, str(build.get("engine", "dataflow")), str(build.get("board")), graph,
                   fmts[0], fmts[1], baud, _virtual(root, build.get("virtual_board")))
        info.check()
        return info

    @property
    def in_shape(self):
        return tuple(self.graph.input.attrs["shape"])

    @property
    def out_shape(self):
        return tuple(self.graph[self.graph.outputs[0]].shape)

    @property
    def out_beats(self):
        return int(np.prod(self.out_shape)) // self.out_format.count

    def check(self):
        # Channels travel as lanes: a map's channels (the dataflow's output too), or one
        # value a beat (the layer engine's logits).
        ok_in = self.in_format.count == self.in_shape[0]
        ok_out = self.out_format.count in (self.out_shape[0], 1)
        if not (ok_in and ok_out):
            raise RunError(f"{self.root}: the board's UART carries {self.in_format.count} "
                           f"input and {self.out_format.count} output lanes, but model.qpk "
                           f"has input {list(self.in_shape)} and output {list(self.out_shape)}")

    def outputs(self, beats):
        """One input's output beats as an array of the model's output shape."""
        arr = np.array(beats, dtype=np.int64)
        if len(self.out_shape) == 3 and self.out_format.count == self.out_shape[0]:
            c, h, w = self.out_shape
            return arr.reshape(h, w, c).transpose(2, 0, 1)
        return arr.reshape(self.out_shape)


def _json(path, missing):
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RunError(f"{path}: no such file ({missing})") from None
    except OSError as err:
        raise RunError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        return json.loads(text)
    except ValueError as err:
        raise RunError(f"{path}: not valid JSON: {err}") from None


def _virtual(root, entry):
    """``build.json``'s ``virtual_board``, its files inside the build; None if absent."""
    if entry is None:
        return None
    where = f"{root}/build.json: 'virtual_board'"
    if not isinstance(entry, dict):
        raise RunError(f"{where} must be an object")
    module, clocks = entry.get("module"), entry.get("clocks", {})
    if not isinstance(module, str) or not re.fullmatch(NAME_PATTERN, module):
        raise RunError(f"{where}: 'module' must be a Verilog module name")
    if not isinstance(clocks, dict) or not all(
            isinstance(k, str) and re.fullmatch(NAME_PATTERN, k)
            and isinstance(v, (int, float)) and 1 <= v <= 1000 for k, v in clocks.items()):
        raise RunError(f"{where}: 'clocks' must map port names to periods of 1 to 1000 ns")
    image = entry.get("flash_image")
    return {"verilog": _inside(root, entry.get("verilog"), "virtual_board.verilog"),
            "module": module, "clocks": clocks,
            "flash_image": None if image is None
            else _inside(root, image, "virtual_board.flash_image")}


def _inside(root, rel, field):
    """``root / rel``, refusing a path that leaves the build directory."""
    if not isinstance(rel, str) or not rel:
        raise RunError(f"{root}/build.json: '{field}' must be a file name")
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise RunError(f"{root}/build.json: '{field}' points outside the build directory")
    return path


def open_port(info, options, say):
    """A pyserial port at the build's baud rate (or ``--baud``), or the virtual board."""
    if options.port == "sim":
        v = info.virtual
        if v is None:
            raise RunError(f"{info.root}/build.json: no 'virtual_board'; rebuild with this "
                           "version to run it on the virtual board")
        from sim.flash_model import hex_plusarg, write_hex
        from sim.uart_board import SimPort
        from sim.verilator import SimulationError
        say(f"starting the virtual board ({v['verilog'].name} behind the UART bridge, in "
            "Verilator)...")
        # Verilator's model is kept per design: in the build, or where the builds'
        # simulations are kept (SHIFTADD_SIM_CACHE).
        cache = os.environ.get("SHIFTADD_SIM_CACHE")
        work = Path(cache) if cache else info.root / "sim"
        plusargs = []
        if v["flash_image"] is not None:
            image = v["flash_image"].read_bytes()
            digest = hashlib.sha256(image).hexdigest()[:16]
            work.mkdir(parents=True, exist_ok=True)
            plusargs.append(hex_plusarg(write_hex(work / f"flash-{digest}.hex", image)))
        try:
            return SimPort(v["verilog"], v["module"], info.in_format, info.out_format,
                           work_dir=work, clocks=v["clocks"], plusargs=plusargs,
                           timeout=max(options.timeout, 30.0), progress=say)
        except SimulationError as err:
            raise RunError(str(err).splitlines()[0]) from None
    import serial
    baud = options.baud or info.baud
    try:
        return serial.Serial(options.port, baud, timeout=options.timeout, exclusive=True)
    except (serial.SerialException, ValueError, OSError) as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RunError(f"{options.port}: cannot open the serial port: {text}") from None


def top_classes(values, k, labels=None):
    """``[(class, value)]``, the ``k`` largest first; ties go to the lower class."""
    flat = np.asarray(values).reshape(-1)
    order = sorted(range(len(flat)), key=lambda c: (-int(flat[c]), c))[:k]
    return [(labels[c] if labels and c < len(labels) else c, int(flat[c])) for c in order]


def run(build_dir, options: RunOptions, say=print):
    """Run every input of ``options.input`` on the board; returns the exit status."""
    from boards.host import ProtocolError, infer, reset

    from ..ir import interpret
    from ..passes import prepare
    from .build import stream_beats
    info = BuildInfo.load(build_dir)
    x, y = read_inputs(options.input, info.graph)
    if options.limit is not None:
        x, y = x[:options.limit], (None if y is None else y[:options.limit])
    labels = info.graph.metadata.get("labels")
    if not (isinstance(labels, list) and all(isinstance(n, str) for n in labels)):
        labels = None                  # only a list of names names the classes
    pgraph = prepare(info.graph)
    expected = interpret.run(pgraph, x) if options.compare else None
    port = open_port(info, options, say)
    outputs, mismatched = [], []
    try:
        try:
            reset(port, settle_s=0.05 if options.port != "sim" else 0.0)
        except (ProtocolError, OSError) as err:       # pyserial's errors are OSErrors
            raise RunError(f"{options.port}: cannot reset the board (a UART break): "
                           f"{err}") from None
        t0 = time.monotonic()
        for k in range(len(x)):
            try:
                beats = infer(port, stream_beats(x[k:k + 1]), info.in_format, info.out_format,
                              info.out_beats)
            except ProtocolError as err:
                raise RunError(f"input {k}: the board did not answer: {err}") from None
            except OSError as err:
                raise RunError(f"input {k}: {options.port}: the port failed: {err}") from None
            out = info.outputs(beats)
            outputs.append(out)
            best = top_classes(out, options.top, labels)
            line = f"input {k}: " + ", ".join(f"{c} ({v})" for c, v in best)
            if y is not None:
                right = int(np.argmax(out.reshape(-1))) == y[k]
                line += f"   label {y[k]}" + ("" if right else "  (wrong)")
            if expected is not None and not np.array_equal(out, expected[k]):
                mismatched.append(k)
                line += "   MISMATCH with the golden model"
            say(line)
        seconds = time.monotonic() - t0
    finally:
        port.close()
    n = len(outputs)
    say(f"{n} inferences in {seconds:.2f} s: {n / seconds:.1f} inferences/s"
        + (" (virtual board)" if options.port == "sim" else ""))
    if y is not None:
        pred = np.array([int(np.argmax(o.reshape(-1))) for o in outputs])
        say(f"accuracy: {np.mean(pred == y):.1%} ({int(np.sum(pred == y))} of {n})")
    if expected is not None:
        if mismatched:
            raise RunError(f"{len(mismatched)} of {n} outputs differ from the golden model "
                           f"(inputs {', '.join(map(str, mismatched[:10]))}"
                           f"{', ...' if len(mismatched) > 10 else ''})")
        say(f"all {n} outputs equal the golden model's")
    return 0

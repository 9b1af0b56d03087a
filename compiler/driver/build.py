"""``python -m compiler build``: from a ``.qpk`` to Verilog, images, report and board files.

Steps, each announced on the terminal:

1. load and check the model, run the passes;
2. plan the hardware for the board (placement, folding, buffers) and refuse a
   model that cannot fit, before any synthesis;
3. write the accelerator's Verilog and the weight ROM images;
4. prove the Verilog bit-exact against the golden model in Verilator;
5. write the board's build files and run its toolchain (bitstream on ECP5 and
   iCE40; Vivado plan plus Yosys utilization on Artix-7 without Vivado);
6. write the report.

The same model and options give byte-identical Verilog, images and report.
"""

import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from .. import qpk
from ..backends.dataflow.cost import FABRICS
from ..backends.dataflow.images import collect_roms, flash_image, hex_text
from ..backends.dataflow.lower import Accelerator, deep_recursion
from ..backends.dataflow.plan import check_budget, make_plan
from ..errors import BuildError
from ..ir import interpret
from ..names import safe_file_name
from ..passes import prepare
from .compile_cost import check_cost, graph_cost, plan_cost
from .model import resolve_model
from .outdir import OutputDir
from .plots import FIGURES
from .report import write_report

__all__ = ["BuildOptions", "BuildResult", "build", "accelerator_verilog", "stream_beats",
           "ENGINES"]

#: Back ends: ``dataflow`` (a core per layer, weights on chip), ``layer`` (one engine
#: stepping through the layers, weights streamed from flash), ``auto`` (dataflow when
#: it fits the board, else the layer engine).
ENGINES = ("auto", "dataflow", "layer")
#: Default verification inputs: the dataflow back end simulates 32; the layer engine
#: as many as fit in about this many simulated cycles (at least 1, at most 32), as a
#: ResNet-18 inference is millions of cycles (about 40,000 cycles/s in Verilator).
DATAFLOW_VERIFY = 32
ENGINE_VERIFY_CYCLES = 2_000_000


@dataclass
class BuildOptions:
    board: str = "arty_a7"
    out: Path = None
    weights: str = "auto"
    target_cycles: int = None
    fold: dict = field(default_factory=dict)
    verify: int = None           # inputs to simulate; None: the back end's default
    seed: int = 0
    synth: bool = True
    force: bool = False          # build into a directory holding files this tool did not write
    sim_cache: Path = None       # where Verilator models are kept; default: inside the output
    engine: str = "auto"         # auto, dataflow or layer
    bank: tuple = None           # layer engine: (pe, simd), or None to let the planner choose
    clock_mhz: float = None      # the sync clock; None: the board's default_clock_hz
    baud: int = None             # the UART's rate; None: the fastest both ends make exactly
    pnr_seeds: int = 1           # placement seeds nextpnr may try to meet the clock

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise BuildError(f"--engine must be one of {', '.join(ENGINES)}, not "
                             f"{self.engine!r}")
        if self.verify is not None and (not isinstance(self.verify, int) or self.verify < 0):
            raise BuildError(f"--verify must be a number of inputs >= 0, not {self.verify!r}")
        if self.clock_mhz is not None and (isinstance(self.clock_mhz, bool)
                                           or not isinstance(self.clock_mhz, (int, float))
                                           or not 1 <= self.clock_mhz <= 1000):
            raise BuildError(f"--clock must be a frequency in MHz from 1 to 1000, not "
                             f"{self.clock_mhz!r}")
        if self.target_cycles is not None and (not isinstance(self.target_cycles, int)
                                               or self.target_cycles < 1):
            raise BuildError("--target-cycles must be a whole number of cycles >= 1, not "
                             f"{self.target_cycles!r}")

    def as_report(self):
        d = {"engine": self.engine, "weights": self.weights, "verify": self.verify,
             "seed": self.seed, "synth": self.synth}
        if self.bank:
            d["bank"] = f"{self.bank[0]}x{self.bank[1]}"
        if self.clock_mhz:
            d["clock_mhz"] = self.clock_mhz
        if self.baud:
            d["baud"] = self.baud
        if self.target_cycles:
            d["target_cycles"] = self.target_cycles
        if self.fold:
            d["fold"] = ",".join(f"{k}={pe}x{simd}" for k, (pe, simd) in sorted(self.fold.items()))
        return d


@dataclass
class BuildResult:
    out_dir: Path
    board: object
    plan: object
    options: dict
    roms: list = field(default_factory=list)
    files: list = field(default_factory=list)
    verification: dict = None
    synthesis: dict = None
    timings: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    engine: str = "dataflow"
    clock_hz: float = None           # the sync clock the board's PLL makes

    @property
    def ok(self):
        return self.verification is None or self.verification["bit_exact"]


class _Progress:
    def __init__(self, total, stream=sys.stdout):
        from boards.progress import Lines
        self.total, self.n, self.stream = total, 0, stream
        self.t0 = time.monotonic()
        # A Lines rather than a method: the long steps it is handed to find the
        # stream on it and draw their progress bars there (boards.progress).
        self.note = Lines(stream, prefix="      ")

    def step(self, text):
        self.n += 1
        print(f"[{self.n}/{self.total}] {text}", file=self.stream, flush=True)

    def warn(self, text):
        self.note(f"warning: {text}")


def accelerator_verilog(plan, name="accel"):
    """The Verilog of a plan's :class:`~compiler.backends.dataflow.lower.Accelerator`."""
    with deep_recursion():
        return verilog.convert(Accelerator(plan), name=name, emit_src=False)


def stream_beats(x):
    """Input beats for a batch ``x`` of ``(B, C, H, W)`` images or ``(B, K)`` vectors."""
    x = np.asarray(x)
    if x.ndim == 4:
        return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1]).tolist()
    return x.tolist()


def output_array(beats, graph):
    """Output beats back to ``(B, C, H, W)`` or ``(B, K)`` arrays."""
    shape = graph[graph.outputs[0]].shape
    arr = np.array(beats, dtype=np.int64)
    if len(shape) == 3:
        c, h, w = shape
        return arr.reshape(-1, h, w, c).transpose(0, 3, 1, 2)
    return arr


def random_inputs(graph, n, seed):
    inp = graph.input
    from sim.golden import int_range
    lo, hi = int_range(inp.attrs["bits"], inp.attrs["signed"])
    rng = np.random.default_rng(seed)
    return rng.integers(lo, hi + 1, size=(n, *inp.attrs["shape"]))


def verify(plan, verilog_path, n, seed, build_dir, progress):
    """Simulate ``n`` random inputs in Verilator; compare with the golden model bit for bit."""
    from sim.verilator import StreamPort, simulate
    graph = plan.graph
    x = random_inputs(graph, n, seed)
    expected = interpret.run(graph, x)
    first, last = plan.input_stage, plan.output_stage
    i_port = StreamPort("i", first.out_lane.width, first.out_lane.signed, first.out_channels)
    o_port = StreamPort("o", last.out_lane.width, last.out_lane.signed, last.out_channels)
    beats_in = stream_beats(x)
    beats_out = n * last.out_beats
    runs = {}
    for label, stall in (("no stalls", 0.0), ("random stalls", 0.3)):
        progress.note(f"simulating {n} inputs with {label}...")
        runs[label] = simulate(verilog_path, "accel", {i_port: beats_in}, {o_port: beats_out},
                               build_dir=build_dir, stall=stall, seed=seed,
                               progress=progress.note)
    mismatches = 0
    for res in runs.values():
        got = output_array(res.outputs["o"], graph)
        mismatches += int(np.sum(got != expected))
    clean = runs["no stalls"]
    per_image = last.out_beats
    ends = [clean.out_cycles[(k + 1) * per_image - 1] for k in range(n)]
    # Steady state: the spacing of the later half of the results (one input has none).
    steady = ends[n // 2:] if n > 2 else ends
    ii = (round((steady[-1] - steady[0]) / (len(steady) - 1)) if len(steady) > 1 else None)
    return {
        "inputs": n, "seed": seed, "bit_exact": mismatches == 0, "mismatches": mismatches,
        "cycles_per_inference": ii,
        "latency_cycles": clean.out_cycles[0] - clean.in_cycles[0],
        "cycles_total": clean.cycles,
    }


def build(model, options: BuildOptions, stream=None):
    """Run every step of a build; returns a :class:`BuildResult` (an engine build's
    :class:`~compiler.backends.layer.backend.EngineBuildResult`). Progress goes to
    ``stream`` (standard output by default)."""
    from boards import BoardError, get_board
    stream = sys.stdout if stream is None else stream
    progress = _Progress(6, stream)
    t0 = time.monotonic()
    timings = {}

    graph, path = resolve_model(model)
    progress.step(f"model {graph.name} ({path}): {len(graph.nodes)} nodes")
    try:
        board = get_board(options.board)
    except BoardError as err:
        raise BuildError(str(err)) from None
    default = Path("build") / f"{safe_file_name(Path(str(model)).stem)}-{board.name}"

    fabric = FABRICS[board.family]
    engine, plan = options.engine, None
    if engine != "layer":
        clock_hz = sync_clock(board, options)
        check_cost(graph_cost(graph, DATAFLOW_VERIFY if options.verify is None else options.verify))
        pgraph = prepare(graph)
        try:
            plan = make_plan(pgraph, fabric, budget=board.budget, placement=options.weights,
                             target_cycles=options.target_cycles, overrides=options.fold,
                             clock_mhz=clock_hz / 1e6)
            if engine == "auto":
                check_budget(plan, board.name)
        except BuildError as err:
            if engine == "dataflow" or not _has_engine(board):
                raise
            progress.note("the dataflow back end (a core per layer, weights on chip) does not "
                          f"fit: {str(err).splitlines()[0]}")
            progress.note("building the layer engine instead (--engine layer)")
            engine = "layer"
    if engine == "layer":
        return _build_layer(graph, board, options, default, progress, t0)
    options = replace(options, verify=DATAFLOW_VERIFY if options.verify is None
                      else options.verify)
    before = graph_cost(graph, options.verify)
    est = plan.resources
    placements = sorted({s.placement for s in plan.stages if s.is_mvu})
    progress.step(f"plan for {board.name}: weights {'/'.join(placements)}, "
                  f"{plan.cycles:,} cycles per inference at {clock_hz / 1e6:g} MHz, estimated "
                  f"{est.luts:,} LUTs, {est.ffs:,} FFs, {est.brams} BRAMs")
    for warning in plan.warnings:
        progress.warn(warning)
    check_budget(plan, board.name)
    total = plan_cost(plan, options.verify)
    total += before
    check_cost(total)

    out = OutputDir(default if options.out is None else options.out, force=options.force)
    t = time.monotonic()
    text = accelerator_verilog(plan)
    out.write_text("accel.v", text)
    roms = collect_roms(plan)
    image = flash_image(roms)
    for rom in roms:
        out.write_text(rom.hex_file, hex_text(rom))
    out.write_bytes("weights.bin", image)
    timings["emit_s"] = time.monotonic() - t
    progress.step(f"wrote accel.v ({text.count(chr(10)):,} lines), {len(roms)} ROM images, "
                  f"weights.bin ({len(image):,} bytes) in {out.root}")

    result = BuildResult(out.root, board, plan, options.as_report(), roms, [],
                         timings=timings, warnings=list(plan.warnings), clock_hz=clock_hz)
    if options.verify > 0:
        t = time.monotonic()
        progress.step("verifying accel.v in Verilator against the golden model")
        cache = (Path(options.sim_cache) if options.sim_cache
                 else Path(os.environ["SHIFTADD_SIM_CACHE"])
                 if os.environ.get("SHIFTADD_SIM_CACHE") else out.tool_dir("verilator"))
        result.verification = verify(plan, out.path("accel.v"), options.verify, options.seed,
                                     cache / _digest(text), progress)
        timings["verify_s"] = time.monotonic() - t
        v = result.verification
        rate = (f"{v['cycles_per_inference']} cycles per inference, "
                if v["cycles_per_inference"] is not None else "")
        progress.note(("bit-exact" if v["bit_exact"] else f"MISMATCH: {v['mismatches']} "
                       "output values differ") + f" on {v['inputs']} inputs; "
                      f"{rate}latency {v['latency_cycles']} cycles")
        slow = rate_warning(plan, v)
        if slow:
            result.warnings.append(slow)
            progress.warn(slow)
    else:
        progress.step("verification skipped (--verify 0)")

    t = time.monotonic()
    progress.step(f"board {board.name}: " + ("build files and toolchain" if options.synth
                                              else "build files only (--no-synth)"))
    try:
        result.synthesis = _board_build(board, plan, out, options, progress, clock_hz)
    except BoardError as err:        # a tool failed: its log is named in the message
        raise BuildError(str(err)) from None
    timings["board_s"] = time.monotonic() - t
    late = timing_warning(result.synthesis)
    if late:
        result.warnings.append(late)
        progress.warn(late)

    # The model travels with the build: `run` reads its input format and output shape,
    # and its golden model checks what the board answers (--compare).
    out.write_bytes("model.qpk", qpk.to_bytes(graph))
    out.write_text("build.json", json.dumps({
        "board": board.name, "model": graph.name, "engine": "dataflow",
        "model_file": "model.qpk", "virtual_board": {"verilog": "accel.v", "module": "accel"},
        "bitstream": result.synthesis.get("bitstream"),
        "weights": "weights.bin"}, indent=1, sort_keys=True) + "\n")
    result.files = sorted(out.written | set(result.synthesis.pop("files", []))
                          | {"report.md", "report.json", "manifest.json", *FIGURES["dataflow"]})
    write_report(result, out)
    timings["total_s"] = time.monotonic() - t0
    out.write_text("timings.json", json.dumps(timings, indent=1, sort_keys=True) + "\n")
    out.finish()
    progress.step(f"report: {out.root / 'report.md'} (build took {timings['total_s']:.0f} s)")
    return result


def _build_layer(graph, board, options, default, progress, t0):
    """The layer engine's build (``compiler.backends.layer.backend``) in this directory."""
    from ..backends.layer.backend import build_engine
    out = OutputDir(default if options.out is None else options.out, force=options.force)
    result = build_engine(graph, board, options, out, progress, sim_cache=_sim_cache(options),
                          verify_default=ENGINE_VERIFY_CYCLES)
    result.timings["total_s"] = time.monotonic() - t0
    out.write_text("timings.json", json.dumps(result.timings, indent=1, sort_keys=True) + "\n")
    out.finish()
    progress.step(f"report: {out.root / 'report.md'} (build took "
                  f"{result.timings['total_s']:.0f} s)")
    return result


def _has_engine(board):
    from boards.engine_clocks import ENGINE_CLOCKS
    return board.name in ENGINE_CLOCKS


def _sim_cache(options):
    if options.sim_cache:
        return Path(options.sim_cache)
    if os.environ.get("SHIFTADD_SIM_CACHE"):
        return Path(os.environ["SHIFTADD_SIM_CACHE"])
    return None


def rate_warning(plan, verification):
    """A line saying that the hardware ran slower than planned, or None."""
    measured = verification.get("cycles_per_inference")
    if measured is None or measured <= plan.cycles:
        return None
    return (f"measured {measured:,} cycles per inference in simulation, slower than the "
            f"planned {plan.cycles:,} (bottleneck {plan.bottleneck.name}); the plan's rate "
            "model misses a stall here")


def _digest(text):
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def timing_warning(synthesis):
    """A line saying that the placed design does not meet its clock, or None."""
    if synthesis.get("timing_met") is not False:
        return None
    from boards.toolchain import missed_clocks
    clocks = synthesis["clocks"]
    missed = ", ".join(f"{domain} Fmax {clocks[domain]['fmax_mhz']:.1f} MHz below its "
                       f"{clocks[domain]['mhz']:g} MHz" for domain in missed_clocks(clocks))
    path = synthesis.get("critical_path")
    where = (f"; critical path {path['from']} -> {path['to']}, {path['ns']:g} ns"
             if path else "")
    return (f"timing NOT met: {missed}{where}. The bitstream is not safe to use at this "
            "clock: build with a slower --clock")


def sync_clock(board, options):
    """The ``sync`` clock (Hz) the board's PLL makes for ``--clock`` (or the board's
    default); BuildError if it cannot."""
    from boards import BoardError
    from boards.clocking import pll_frequency
    from boards.top import clocks_per_bit
    hz = round(options.clock_mhz * 1e6) if options.clock_mhz else board.sync_hz
    try:
        hz = pll_frequency(board, hz)
    except BoardError as err:
        raise BuildError(str(err)) from None
    if options.baud is not None:       # checked before the long steps, not at the board top
        try:
            clocks_per_bit(hz, options.baud, board_name=board.name, max_baud=board.uart_max_baud)
        except BoardError as err:
            raise BuildError(f"--baud: {err}") from None
    return hz


def _board_build(board, plan, out, options, progress, clock_hz):
    """Board top, build files and (unless ``--no-synth``) the toolchain run."""
    from boards import BoardTop, build_board
    top = BoardTop(Accelerator(plan), board, clock_hz=clock_hz, baud=options.baud)
    with deep_recursion():           # the board top is converted by Amaranth too
        res = build_board(board, top, out.tool_dir("board"), run_toolchain=options.synth,
                          progress=progress.note, seeds=options.pnr_seeds)
    return board_result(res, out)


def board_result(res, out):
    """What the report and ``build.json`` keep of a board build (a ``BoardBuildResult``),
    its paths relative to the output directory ``out``, which they must stay inside."""
    out.check_inside()
    return {
        "tool": res.tool,
        "summary": res.summary,
        "utilization": res.utilization,
        "fmax_mhz": res.fmax_mhz,
        "clock_mhz": res.clock_mhz,
        "clocks": res.clocks,
        "timing_met": res.timing_met,
        "critical_path": (dict(zip(("from", "to", "ns"), res.critical_path))
                          if res.critical_path else None),
        "logic_depth": res.logic_depth,
        "bitstream": (str(Path(res.bitstream).relative_to(out.root))
                      if res.bitstream else None),
        "files": [str(Path(f).relative_to(out.root)) if Path(f).is_absolute() else
                  f"board/{f}" for f in res.files],
    }

"""The layer engine as a back end: plan, emit, verify, board, report, for ``build``.

The driver (``compiler.driver.build``) resolves the model, the board and the
output directory, and hands them here when ``--engine`` is ``layer`` (or
``auto`` chose it). Steps, each announced on the terminal:

1. plan: the bank's PE x SIMD for the board's LUTs, block RAM and weight
   bandwidth (``plan.py``), lowered to the engine's configuration and stream;
2. emit ``engine.v`` (the engine; its board top is written with the board
   files) and ``weights.bin`` (a header page, then the weight stream);
3. verify in Verilator with the flash model (``verify.py``);
4. the board top and the board's build files / toolchain;
5. the report, per step compute- or stream-bound.
"""

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from ... import qpk
from ...driver.plots import FIGURES
from ...errors import BuildError
from ...passes import prepare
from ..dataflow.cost import FABRICS
from ..dataflow.lower import deep_recursion
from .lower import HEADER_BYTES
from .plan import plan_engine
from .report import write_engine_report
from .simtop import FlashSetup
from .stream import flash_image
from .timing import FlashRate
from .verify import TOP as SIM_TOP
from .verify import sim_clocks, sim_verilog, verify_engine

__all__ = ["EngineBuildResult", "build_engine", "engine_clocks_for"]


@dataclass
class EngineBuildResult:
    out_dir: Path
    model: str
    board: object
    plan: object                    # plan.EnginePlan
    options: dict
    clocks: object = None
    files: list = field(default_factory=list)
    verification: dict = None
    synthesis: dict = None
    timings: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    engine: str = "layer"

    @property
    def ok(self):
        return self.verification is None or self.verification["bit_exact"]

    @property
    def clock_hz(self):
        """The engine's clock (``sync``), as the dataflow back end's result gives its own."""
        return self.clocks.engine_hz if self.clocks else None


def engine_clocks_for(board, clock_mhz=None):
    """The board's engine and flash clocks (``boards.engine_clocks``), the engine's at
    ``clock_mhz`` if given; a BuildError if the board has no engine top or cannot."""
    from boards import BoardError
    from boards.engine_clocks import engine_clocks
    try:
        return engine_clocks(board, round(clock_mhz * 1e6) if clock_mhz else None)
    except BoardError as err:
        raise BuildError(str(err)) from None


def engine_verilog(build, name="engine"):
    from hw.engine.engine import LayerEngine
    with deep_recursion():
        return verilog.convert(LayerEngine(build.config), name=name, emit_src=False)


def _inputs(graph, n, seed):
    from sim.golden import int_range
    inp = graph.input
    lo, hi = int_range(inp.attrs["bits"], inp.attrs["signed"])
    return np.random.default_rng(seed).integers(lo, hi + 1, size=(n, *inp.attrs["shape"]))


def build_engine(graph, board, options, out, progress, *, sim_cache=None,
                 verify_default=2_000_000):
    """Build the layer engine of ``graph`` (loaded, not prepared) for ``board`` into ``out``
    (an ``OutputDir``). Returns an :class:`EngineBuildResult`.

    Without ``options.verify``, verification simulates as many inputs as fit in
    ``verify_default`` estimated cycles (1 to 32)."""
    timings = {}
    t = time.monotonic()
    pgraph = prepare(graph, forms=False)
    clocks = engine_clocks_for(board, options.clock_mhz)
    rate = FlashRate(clocks.engine_hz, clocks.flash_hz, clocks.divider)
    pe, simd = options.bank if options.bank else (None, None)
    plan = plan_engine(pgraph, FABRICS[board.family], board.budget, rate, pe=pe, simd=simd)
    build = plan.build
    timings["plan_s"] = time.monotonic() - t
    if options.verify is None:
        options = replace(options, verify=min(32, max(1, verify_default // plan.cycles)))
    bound = {}
    for s in plan.timings:
        bound[s.bound] = bound.get(s.bound, 0) + 1
    progress.step(f"plan for {board.name}: layer engine, PE {plan.pe} x SIMD {plan.simd}, "
                  f"{len(build.steps)} steps ({bound.get('compute', 0)} compute-bound, "
                  f"{bound.get('stream', 0)} stream-bound), {plan.cycles:,} cycles per "
                  f"inference = {plan.fps:,.1f} inferences/s at {clocks.engine_hz / 1e6:g} MHz; "
                  f"estimated {plan.resources.luts:,} LUTs, {plan.resources.brams} "
                  f"{board.bram_kind}s")

    t = time.monotonic()
    text = engine_verilog(build)
    out.write_text("engine.v", text)
    image = flash_image(build.stream, HEADER_BYTES)
    out.write_bytes("weights.bin", image)
    timings["emit_s"] = time.monotonic() - t
    progress.step(f"wrote engine.v ({text.count(chr(10)):,} lines) and weights.bin "
                  f"({len(image):,} bytes: a {HEADER_BYTES}-byte header, then the weight "
                  f"stream) in {out.root}")

    result = EngineBuildResult(out.root, graph.name, board, plan, options.as_report(), clocks,
                               timings=timings)
    # The engine with its flash reader and a flash model: what `run --port sim` runs.
    setup = FlashSetup(**clocks.sim_flash_setup())
    sim_text = sim_verilog(build, setup)
    out.write_text("engine_sim.v", sim_text)
    if options.verify > 0:
        t = time.monotonic()
        progress.step("verifying the engine in Verilator (flash model included) against the "
                      "golden model")
        digest = hashlib.sha256(sim_text.encode()).hexdigest()[:16]
        cache = Path(sim_cache) if sim_cache else out.tool_dir("verilator")
        sim_dir = cache / f"engine-{digest}"
        x = _inputs(pgraph, options.verify, options.seed)
        result.verification = verify_engine(
            build, pgraph, x, verilog_path=out.path("engine_sim.v"), build_dir=sim_dir,
            weights_bin=out.path("weights.bin"), setup=setup, seed=options.seed,
            progress=progress.note)
        timings["verify_s"] = time.monotonic() - t
        v = result.verification
        progress.note(("bit-exact" if v["bit_exact"] else
                       f"MISMATCH: {v['mismatches']} output values differ")
                      + f" on {v['inputs']} inputs; {v['cycles_per_inference']:,} cycles per "
                      f"inference measured against {plan.cycles:,} estimated")
        slow = engine_rate_warning(plan, v)
        if slow:
            result.warnings.append(slow)
            progress.warn(slow)
    else:
        progress.step("verification skipped (--verify 0)")

    t = time.monotonic()
    progress.step(f"board {board.name}: " + ("engine board top, build files and toolchain"
                                              if options.synth else
                                              "engine board top and build files (--no-synth)"))
    result.synthesis = _board(board, build, out, options, progress, clocks.engine_hz)
    from ...driver.build import timing_warning
    late = timing_warning(result.synthesis)
    if late:
        result.warnings.append(late)
        progress.warn(late)
    timings["board_s"] = time.monotonic() - t

    out.write_bytes("model.qpk", qpk.to_bytes(graph))
    out.write_text("build.json", json.dumps({
        "board": board.name, "model": graph.name, "engine": "layer", "model_file": "model.qpk",
        "virtual_board": {"verilog": "engine_sim.v", "module": SIM_TOP,
                          "clocks": sim_clocks(setup), "flash_image": "weights.bin"},
        "bitstream": result.synthesis.get("bitstream"), "weights": "weights.bin",
        "weights_flash_offset": result.synthesis.get("weights_flash_offset")},
        indent=1, sort_keys=True) + "\n")
    result.files = sorted(out.written | set(result.synthesis.pop("files", []))
                          | {"report.md", "report.json", "manifest.json", *FIGURES["layer"]})
    write_engine_report(result, out)
    return result


#: How far the measured cycles may exceed the timing model before the build says so
#: (tests/e2e/test_engine.py holds the model within this of the measurement).
MODEL_TOLERANCE = 0.05


def engine_rate_warning(plan, verification):
    """A line saying that the engine ran slower than its timing model, or None."""
    measured = verification.get("cycles_per_inference")
    if not measured or measured <= plan.cycles * (1 + MODEL_TOLERANCE):
        return None
    return (f"measured {measured:,} cycles per inference in simulation, "
            f"{measured / plan.cycles - 1:.0%} more than the timing model's {plan.cycles:,}: "
            "the model misses a stall here")


def _board(board, build, out, options, progress, engine_hz):
    """The engine's board top through the board's flow (``boards.engine_top``); the
    board's manifest names ``weights.bin`` for the flash, at the board's weight offset."""
    from boards import BoardError
    from boards.engine_top import build_engine as build_board_engine
    from boards.flash_layout import flash_layout
    from hw.engine.engine import LayerEngine
    try:
        with deep_recursion():
            res = build_board_engine(LayerEngine(build.config), board, out.tool_dir("board"),
                                     weights="../weights.bin", run_toolchain=options.synth,
                                     seeds=options.pnr_seeds,
                                     progress=progress.note, engine_hz=engine_hz,
                                     baud=options.baud)
    except BoardError as err:
        raise BuildError(str(err)) from None
    from ...driver.build import board_result
    return {**board_result(res, out),
            "weights_flash_offset": flash_layout(board.name).weights_offset}

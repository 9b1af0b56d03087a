"""A layer engine proven bit-exact in Verilator, its flash included.

The engine, a quad-SPI reader and the flash model (``simtop.EngineSimTop``)
run in one Verilator model; the model loads ``weights.bin`` at start, so every
cycle of the flash (command, address, mode, dummy cycles, nibbles) is in the
count. Random inputs go through once without stalls and once with random
valid/ready stalls, and every output value is compared with the golden model.
"""

from pathlib import Path

import numpy as np
from amaranth.back import verilog

from sim.flash_model import hex_plusarg, write_hex

from ...ir import interpret
from ..dataflow.lower import deep_recursion
from .simtop import ROM_VERILOG, EngineSimTop, FlashSetup

__all__ = ["sim_verilog", "verify_engine", "engine_input_beats"]

TOP = "engine_sim"


def sim_verilog(build, setup=None):
    """Verilog of the engine with its reader and flash model (top ``engine_sim``); the
    model's byte array is a Verilog module of its own (``ROM_VERILOG``), appended."""
    with deep_recursion():
        text = verilog.convert(EngineSimTop(build.config, setup or FlashSetup()), name=TOP,
                               emit_src=False)
    return text + ROM_VERILOG


def engine_input_beats(x):
    """One beat per input pixel, channels as lanes, images in raster order."""
    x = np.asarray(x)
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1]).tolist()


def sim_clocks(setup):
    """The simulation's further clocks: the bench's ``clk`` is the engine's, and the
    flash clock keeps its ratio to it as on the board, so simulated cycles are engine
    cycles at the board's clocks."""
    from sim.verilator import CLK_PERIOD_NS
    return {"flash_clk": setup.flash_period_ns * CLK_PERIOD_NS / setup.engine_period_ns}


def verify_engine(build, graph, x, *, verilog_path, build_dir, weights_bin, setup=None,
                  seed=0, stalls=(0.0, 0.3), progress=None):
    """Run the inputs ``x`` through the simulated engine; compare with the golden model.

    Returns a dict: inputs, bit_exact, mismatches, cycles_per_inference (the
    steady spacing of results without stalls), cycles_total.
    """
    from sim.verilator import StreamPort, simulate
    setup = setup or FlashSetup()
    say = progress or (lambda text: None)
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    hex_path = write_hex(build_dir / "weights_flash.hex", Path(weights_bin).read_bytes())
    c = build.config
    expected = interpret.run(graph, x)
    n = len(x)
    classes = int(np.prod(expected.shape[1:]))
    i_port = StreamPort("i", c.input_shape.width, c.input_shape.signed, c.input_channels)
    o_port = StreamPort("o", c.out_shape.width, c.out_shape.signed, 1)
    runs = {}
    for stall in stalls:
        say(f"simulating {n} inputs {'with random stalls' if stall else 'without stalls'}...")
        runs[stall] = simulate(verilog_path, TOP, {i_port: engine_input_beats(x)},
                               {o_port: n * classes}, build_dir=build_dir, stall=stall,
                               seed=seed, progress=say, plusargs=[hex_plusarg(hex_path)],
                               clocks=sim_clocks(setup), skip_idle=True,
                               timeout_cycles=None)
    mismatches = 0
    for res in runs.values():
        got = np.array([b[0] for b in res.outputs["o"]], np.int64).reshape(expected.shape)
        mismatches += int(np.sum(got != expected))
    clean = runs[stalls[0]]
    ends = [clean.out_cycles[(k + 1) * classes - 1] for k in range(n)]
    ii = round((ends[-1] - ends[0]) / (n - 1)) if n > 1 else ends[0] - clean.in_cycles[0]
    return {"inputs": n, "seed": seed, "bit_exact": mismatches == 0, "mismatches": mismatches,
            "cycles_per_inference": ii, "cycles_total": clean.cycles,
            "latency_cycles": ends[0] - clean.in_cycles[0]}

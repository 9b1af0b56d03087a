"""Board builds: Amaranth's build plan, then the toolchain, step by step.

ECP5 and iCE40 go to a bitstream with Yosys + nextpnr (YoWASP). The Arty's
Artix-7 needs Vivado: with ``vivado`` on PATH its plan is run and Vivado's
reports are read; without it the complete Vivado plan is still written and
Yosys' ``synth_xilinx`` estimates the resources.

Everything written into the build directory before the tools run (the plan,
the Yosys estimate script, the manifest) depends only on the design: no
timestamps, absolute paths or random seeds (nextpnr gets a fixed ``--seed``).
"""

import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import reports
from .logic_depth import logic_depth
from .manifest import write_manifest
from .progress import Bar
from .registry import Board, BoardError, get_board
from .tools import env_script, find_tool, require, tool_environment

__all__ = ["BoardBuildResult", "BoardClock", "build", "NEXTPNR_SEED"]

NEXTPNR_SEED = 1

# What each step of Amaranth's command list does, for the progress line.
_STEP_LABELS = {
    "yosys": "synthesizing",
    "nextpnr-ecp5": "placing and routing",
    "nextpnr-ice40": "placing and routing",
    "ecppack": "packing the bitstream",
    "icepack": "packing the bitstream",
    "vivado": "synthesis, place and route, bitstream",
}

_BITSTREAM = {"ecp5": "{name}.bit", "ice40": "{name}.bin", "xilinx": "{name}.bit"}


@dataclass(frozen=True)
class BoardClock:
    """A clock domain of a board build: its frequency and what the tools call it
    (nextpnr: the net carrying it; Vivado: the clock's name)."""
    hz: int
    net: str = None


@dataclass
class BoardBuildResult:
    """What a board build produced.

    ``files`` and the paths in ``logs`` are relative to ``out_dir``;
    ``bitstream`` is ``out_dir / name`` (or None). ``utilization`` has
    ``luts``, ``ffs``, ``brams`` (in the board's native unit, ``bram_kind``)
    and ``dsps``, plus family-specific extras; ``tool`` says what measured it.
    ``clocks`` has, per clock domain, its target ``mhz`` and the ``fmax_mhz``
    the tools measured (None where they did not); ``fmax_mhz`` and
    ``clock_mhz`` are those of the first domain (``sync``).
    """
    board: str
    out_dir: Path
    files: list = field(default_factory=list)
    bitstream: Path = None
    utilization: dict = field(default_factory=dict)
    tool: str = None
    fmax_mhz: float = None
    clock_mhz: float = None
    logs: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)        # (tool, seconds)
    elapsed_s: float = 0.0
    notes: list = field(default_factory=list)
    clocks: dict = field(default_factory=dict)
    critical_path: tuple = None      # (from, to, ns) of the slowest clock (nextpnr)
    logic_depth: dict = None         # core -> LUT levels into it (Yosys synth_xilinx)

    @property
    def timing_met(self):
        """True if every clock the tools timed meets its frequency, False if one does
        not, None if nothing was timed."""
        timed = any(c["fmax_mhz"] is not None for c in self.clocks.values())
        return not missed_clocks(self.clocks) if timed else None

    @property
    def summary(self):
        """One line for a report."""
        u = self.utilization
        parts = [f"{self.board}: "]
        if u:
            parts.append(f"{u.get('luts', '?')} LUTs, {u.get('ffs', '?')} FFs, "
                         f"{u.get('brams', '?')} {u.get('bram_kind', 'BRAM')}, "
                         f"{u.get('dsps', '?')} DSPs ({self.tool})")
        else:
            parts.append("build plan written, toolchain not run")
        if len(self.clocks) > 1:
            measured = any(c["fmax_mhz"] for c in self.clocks.values())
            parts.append(("; Fmax " if measured else "; clocks ") + ", ".join(
                f"{domain} {c['fmax_mhz']:.1f} MHz at {c['mhz']:g}" if c["fmax_mhz"]
                else f"{domain} {c['mhz']:g} MHz" for domain, c in self.clocks.items()))
        elif self.fmax_mhz:
            parts.append(f"; Fmax {self.fmax_mhz:.1f} MHz at a {self.clock_mhz:g} MHz clock")
        if u.get("lut_levels") is not None:
            parts.append(f"; longest path {u['lut_levels']} LUT levels")
        parts.append("; bitstream " + (self.bitstream.name if self.bitstream else "not built"))
        text = "".join(parts)
        return text + (". " + " ".join(self.notes) if self.notes else "")


def build(board, top, out_dir, *, run_toolchain=True, progress=print, name="top",
          seed=NEXTPNR_SEED, seeds=1, flash_images=()):
    """Write ``top``'s build plan for ``board`` into ``out_dir`` and run its toolchain.

    ``board`` is a :class:`~boards.registry.Board` or a name; ``top`` is an
    Elaboratable that requests its pins from the platform (normally a
    :class:`~boards.top.BoardTop`). A top with clocks of its own (the layer
    engine's, :class:`~boards.engine_top.EngineBoardTop`) says so with
    ``board_clocks`` (domain -> :class:`BoardClock`, ``sync`` first), which
    the timing report is read by, and may add constraints with
    ``build_overrides(name)`` (overrides of :meth:`amaranth.build.Platform.prepare`;
    text is appended to the build's own). ``progress`` gets one line per step; on a
    terminal, each tool's elapsed time shows while it runs (:mod:`boards.progress`).
    ``flash_images`` are ``(path, offset)`` pairs, ``path`` relative to
    ``out_dir``, or dicts with ``path``, ``offset`` and ``quad`` (read in quad
    mode: :func:`boards.flash_layout.weights_image` makes one at the board's
    documented offset), that ``flash()`` writes to the SPI flash before the
    bitstream. ``seeds`` > 1 lets nextpnr try placement seeds ``seed``,
    ``seed + 1``, ... until one meets every clock, or keeps the fastest (placement
    alone moves Fmax by +-13% on the small CNN); the result stays a function of the
    inputs. Returns a :class:`BoardBuildResult`; a missing tool or a
    failing step is a BoardError naming the log to read.
    """
    t0 = time.monotonic()
    board = board if isinstance(board, Board) else get_board(board)
    out_dir = Path(out_dir)
    platform = board.platform()
    overrides = {}
    if board.open_toolchain:
        # A fixed seed makes placement, and so the bitstream, repeatable; timing is
        # reported rather than fatal, so a design a little too slow still gives a
        # bitstream and an Fmax to act on.
        overrides["nextpnr_opts"] = (f"--seed {seed} --timing-allow-fail "
                                     f"--report {name}_report.json")
        if board.family == "ecp5":
            # router2 routed a 60k-LUT CNN on the 85F in about 2 minutes, where the
            # default router1 was still congested after 8.
            overrides["nextpnr_opts"] += " --router router2"
        # Cell counts as JSON, rather than scraped from the synthesis log.
        overrides["script_after_synth"] = f"tee -q -o {name}_synth_stat.json stat -json"
    for key, value in (top.build_overrides(name) if hasattr(top, "build_overrides")
                       else {}).items():
        sep = " " if key.endswith("_opts") else "\n"
        overrides[key] = overrides[key] + sep + value if key in overrides else value
    clocks = getattr(top, "board_clocks", None) or {"sync": BoardClock(board.clock_hz)}
    progress(f"{board.name}: writing the {board.toolchain} build plan to {out_dir}")
    # emit_src=False: source locations are absolute paths, which would make the
    # plan depend on where the checkout lives.
    plan = platform.prepare(top, name, emit_src=False, **overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan.extract(out_dir)
    files = list(plan.files)

    result = BoardBuildResult(board.name, out_dir, clock_mhz=clocks["sync"].hz / 1e6,
                              clocks={domain: {"mhz": c.hz / 1e6, "fmax_mhz": None}
                                      for domain, c in clocks.items()})
    bitstream = out_dir / _BITSTREAM[board.family].format(name=name)
    if bitstream.exists():
        bitstream.unlink()               # never hand a stale bitstream to flash()
    tools = platform.required_tools if board.open_toolchain else ["yosys"]
    (out_dir / "toolchain_env.sh").write_text(env_script(tools))
    files.append("toolchain_env.sh")
    if board.family == "xilinx":
        for suffix, abc9 in (("", True), ("_abc", False)):
            script = f"{name}_yosys_xilinx{suffix}.ys"
            (out_dir / script).write_text(_yosys_xilinx_script(name, abc9=abc9))
            files.append(script)
    elif board.family == "ecp5":
        # The same synthesis with the classic ABC, should ABC9 fail (_run_open).
        (out_dir / f"{name}_abc.ys").write_text(_ecp5_abc_script(
            (out_dir / f"{name}.ys").read_text(), name))
        files.append(f"{name}_abc.ys")

    # Until the tools succeed the manifest says there is no bitstream, so flash()
    # never loads the product of an earlier build from this directory.
    write_manifest(out_dir, _manifest(board, top, None, bitstream.name, flash_images))
    if run_toolchain:
        if board.open_toolchain:
            _run_open(board, out_dir, name, result, progress, clocks, seeds)
        elif find_tool("vivado"):
            _run_vivado(board, out_dir, name, result, progress)
        else:
            result.notes.append("Vivado was not found: these are Yosys synth_xilinx estimates "
                                "and there is no bitstream; run build_top.sh where Vivado is "
                                "installed to get one.")
            progress(f"{board.name}: vivado not found on PATH; estimating resources with "
                     "Yosys synth_xilinx instead")
            _run_yosys_xilinx(board, out_dir, name, result, progress)
        if bitstream.exists():
            result.bitstream = bitstream

    write_manifest(out_dir, _manifest(board, top, result.bitstream and bitstream.name,
                                      bitstream.name, flash_images))
    files.append("board.json")
    if result.utilization:
        (out_dir / "utilization.json").write_text(json.dumps({
            "board": board.name, "tool": result.tool, "utilization": result.utilization,
            "fmax_mhz": result.fmax_mhz, "clock_mhz": result.clock_mhz,
            "clocks": result.clocks, "notes": result.notes,
            "critical_path": result.critical_path, "logic_depth": result.logic_depth},
            indent=1, sort_keys=True) + "\n")
        files.append("utilization.json")
    result.files = sorted(files + list(result.logs.values()))
    result.elapsed_s = time.monotonic() - t0
    progress(f"{result.summary} ({result.elapsed_s:.0f} s)")
    return result


def _manifest(board, top, bitstream, bitstream_file, flash_images):
    manifest = {
        "board": board.name, "toolchain": board.toolchain, "loader_board": board.loader_board,
        "sram_load": board.sram_load, "bitstream": bitstream, "bitstream_file": bitstream_file,
        "flash_images": [_image_entry(image) for image in flash_images],
    }
    if hasattr(top, "in_format") and hasattr(top, "baud"):
        def fmt(f):
            return {"width": f.width, "signed": f.signed, "lanes": f.count}

        manifest["uart"] = {"baud": top.baud, "input": fmt(top.in_format),
                            "output": fmt(top.out_format)}
    return manifest


def _image_entry(image):
    if isinstance(image, dict):
        path, offset, quad = image["path"], image["offset"], image.get("quad", False)
    else:
        (path, offset), quad = image, False
    return {"path": Path(path).as_posix(), "offset": int(offset), "quad": bool(quad)}


def _run_step(argv, tool, out_dir, env, result, progress, label=None, tool_log=None):
    """Run one tool, its output saved to ``<tool>.log``; a failure is a BoardError.
    ``tool_log`` is a log the tool writes itself (``yosys -l``), searched for the error."""
    log = f"{tool}.log"
    progress(f"{tool}: {label or _STEP_LABELS.get(tool, 'running')}...")
    t = time.monotonic()
    with open(out_dir / log, "wb") as f, Bar(progress, desc=tool, every=60):
        rc = subprocess.run(argv, cwd=out_dir, env=env, stdout=f, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL).returncode
    seconds = time.monotonic() - t
    result.logs[tool] = log
    result.steps.append((tool, seconds))
    if rc != 0:
        tail = _last_error(out_dir / log) or (tool_log and _last_error(out_dir / tool_log))
        where = out_dir / (tool_log if tool_log and (out_dir / tool_log).exists() else log)
        raise BoardError(f"{tool} failed (exit status {rc}) after {seconds:.0f} s"
                         f"{': ' + tail if tail else ''}; see {where}")
    progress(f"{tool}: done in {seconds:.1f} s")


def _last_error(path):
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [l.strip() for l in lines if "ERROR" in l or "Error" in l]
    return (errors[-1] if errors else "")[:200]


def _abc9_failed(path):
    """Did Yosys stop in ABC9's LUT mapping (the log at ``path`` says)? Its last step
    header is one of ABC9's (an assertion in its reintegration, whichever file Yosys
    names, or an exit with no message at all, as seen with Yosys 0.70)."""
    return _abc9_error(path) is not None


def _abc9_error(path):
    """The line Yosys stopped with inside ABC9 ("" if it said nothing), or None."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    steps = _YOSYS_STEP.findall(text)
    if not steps or not any(tag in steps[-1] for tag in _ABC9_STEPS):
        return None
    errors = [line.strip() for line in text[text.rfind(steps[-1]):].splitlines()
              if line.startswith("ERROR")]
    return errors[-1] if errors else ""


def _abc9_note(log, error):
    why = f" ({error[:160]})" if error else " (Yosys exited with no message)"
    return (f"Yosys' ABC9 LUT mapping failed{why}; its log is {log}; "
            "synthesized with the classic ABC mapping instead.")


def _fmax(report, clocks):
    """Fmax per clock domain of a nextpnr timing report (one clock: the slowest net's;
    several: each found by its constraint)."""
    if len(clocks) == 1:
        return {"sync": reports.nextpnr_fmax(report)}
    return {domain: reports.nextpnr_clock_fmax(report, clock.hz / 1e6, clock.net)
            for domain, clock in clocks.items()}


def _worst_clock_ratio(report, clocks):
    """The worst clock's Fmax over its target: >= 1 meets timing."""
    fmax = _fmax(report, clocks)
    return min((fmax[d] or 0.0) / (c.hz / 1e6) for d, c in clocks.items())


def _place_and_route(tool, argv, out_dir, name, env, result, progress, clocks, seeds):
    """nextpnr with seeds ``--seed``, ``--seed + 1``, ... until timing is met, else the
    fastest seed, run again last so that the files left are its own."""
    at = argv.index("--seed") + 1
    first = int(argv[at])
    tried, best = {}, None
    for seed in range(first, first + seeds):
        argv[at] = str(seed)
        _run_step(argv, tool, out_dir, env, result, progress,
                  label=f"placing and routing, seed {seed}")
        report = json.loads((out_dir / f"{name}_report.json").read_text())
        tried[seed] = _worst_clock_ratio(report, clocks)
        best = max(tried, key=lambda s: (tried[s], -s))
        if tried[seed] >= 1:
            break
    if best != seed:
        argv[at] = str(best)
        _run_step(argv, tool, out_dir, env, result, progress,
                  label=f"placing and routing again with seed {best}, the fastest")
    result.notes.append(f"Placement seed {best} of {len(tried)} tried "
                        f"({', '.join(f'{s}: {r:.0%}' for s, r in tried.items())} of the "
                        "clock).")


def _run_open(board, out_dir, name, result, progress, clocks, seeds=1):
    """Amaranth's command list (build_top.json), one command at a time."""
    commands = json.loads((out_dir / f"build_{name}.json").read_text())["commands"]
    tools = [argv[0] for argv in commands]
    paths = {tool: require(tool) for tool in tools}
    env = tool_environment(tools)
    for argv in commands:
        if argv[0].startswith("nextpnr") and seeds > 1 and "--seed" in argv:
            _place_and_route(argv[0], [paths[argv[0]], *argv[1:]], out_dir, name, env,
                             result, progress, clocks, seeds)
            continue
        tool_log = argv[argv.index("-l") + 1] if argv[0] == "yosys" and "-l" in argv else None
        try:
            _run_step([paths[argv[0]], *argv[1:]], argv[0], out_dir, env, result, progress,
                      tool_log=tool_log)
        except BoardError:
            script = out_dir / f"{name}_abc.ys"
            error = _abc9_error(out_dir / tool_log) if tool_log else None
            if not script.exists() or error is None:
                raise
            kept = f"{name}_abc9.rpt"
            (out_dir / tool_log).replace(out_dir / kept)
            result.logs["yosys (ABC9)"] = kept
            progress("yosys: ABC9 failed; synthesizing again with ABC")
            _run_step([paths["yosys"], *argv[1:-1], script.name], "yosys", out_dir, env, result,
                      progress, label="synthesizing with ABC", tool_log=tool_log)
            result.notes.append(_abc9_note(kept, error))
    for product in (f"{name}.rpt", f"{name}.tim"):       # Yosys and nextpnr logs
        if (out_dir / product).exists():
            result.logs[product] = product
    report = json.loads((out_dir / f"{name}_report.json").read_text())
    stat = json.loads((out_dir / f"{name}_synth_stat.json").read_text())
    result.utilization = reports.nextpnr_utilization(board.family, report,
                                                     reports.stat_cells(stat, name))
    result.utilization["bram_kind"] = board.bram_kind
    result.tool = (f"nextpnr-{board.family}" if board.family == "ecp5"
                   else f"yosys + nextpnr-{board.family}")
    for domain, fmax in _fmax(report, clocks).items():
        result.clocks[domain]["fmax_mhz"] = fmax
    result.fmax_mhz = result.clocks["sync"]["fmax_mhz"]
    result.critical_path = reports.nextpnr_critical_path(report)
    _check_timing(result)


def missed_clocks(clocks):
    """The domains of a build's ``clocks`` whose measured Fmax is below their clock."""
    return [domain for domain, c in clocks.items()
            if c["fmax_mhz"] is not None and c["fmax_mhz"] < c["mhz"]]


def _check_timing(result):
    for domain in missed_clocks(result.clocks):
        c = result.clocks[domain]
        if len(result.clocks) > 1:
            result.notes.append(f"Timing NOT met in {domain}: Fmax {c['fmax_mhz']:.1f} MHz "
                                f"is below its {c['mhz']:g} MHz clock.")
        else:
            result.notes.append(f"Timing NOT met: Fmax {c['fmax_mhz']:.1f} MHz is below the "
                                f"{c['mhz']:g} MHz clock.")


# Yosys' ABC9, the LUT mapper synth_ecp5 and synth_xilinx run, stops on some designs
# (Yosys 0.70: "Assert `wire' failed in passes/techmap/abc_ops_reintegrate.cc:596" on
# the layer engine, "Assert `GetSize(conn.first) == GetSize(conn.second)' failed in
# kernel/rtlil.cc" on pipelined dataflow designs, and exit 1 with no message on a
# hard-wired 64-input ternary dot product); neither command has an option to skip it.
# The fallback runs the synthesis script up to that step, maps with the classic ABC,
# as these commands did before ABC9, and runs the rest.
_YOSYS_STEP = re.compile(r"^[\d.]+ Executing (.*)$", re.MULTILINE)
_ABC9_STEPS = ("ABC9", "XAIGER", "AIGER frontend", "ABC_OPS_REINTEGRATE")


def _ecp5_abc_script(script, name):
    """Amaranth's Trellis script with ``synth_ecp5``'s ABC9 step replaced by ABC."""
    synth = next(line for line in script.splitlines() if line.strip().startswith("synth_ecp5"))
    options = synth.strip()[len("synth_ecp5"):]
    replacement = "\n".join([
        f"synth_ecp5 -run :map_luts{options}",
        "techmap -map +/lattice/latches_map.v",
        "abc -lut 4 -dress",
        "clean",
        f"synth_ecp5 -run map_cells:{options}"])
    return script.replace(synth, replacement)


def _yosys_xilinx_script(name, *, abc9=True):
    synth = f"synth_xilinx -family xc7 -top {name} -flatten"
    if abc9:
        steps = [synth]
    else:
        steps = [f"{synth} -run :map_luts",
                 "opt_expr -mux_undef -noclkinv",
                 "abc -luts 2:2,3,6:5,10,20",
                 "clean",
                 "xilinx_srl -fixed -minlen 3",
                 "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6",
                 "xilinx_dffopt",
                 "opt_lut_ins -tech xilinx",
                 f"{synth} -run finalize:"]
    return "\n".join([
        "# Resource estimate for the Vivado plan, with Yosys' Xilinx 7-series synthesis"
        + ("." if abc9 else ", LUTs mapped by ABC rather than ABC9."),
        f"read_verilog {name}.v",
        # Amaranth sets SIM_DEVICE on the BUFGCTRL for Vivado; Yosys' model lacks it.
        "setparam -unset SIM_DEVICE t:BUFGCTRL",
        *steps,
        f"tee -q -o {name}_yosys_xilinx_stat.json stat -json",
        # The mapped netlist, for its logic depth (boards.logic_depth); removed after.
        f"write_json -compat-int {name}_yosys_xilinx_netlist.json",
        ""])


def _run_yosys_xilinx(board, out_dir, name, result, progress):
    yosys = require("yosys")
    env = tool_environment(["yosys"])
    rpt = f"{name}_yosys_xilinx.rpt"
    try:
        _run_step([yosys, "-q", "-l", rpt, f"{name}_yosys_xilinx.ys"], "yosys", out_dir, env,
                  result, progress, tool_log=rpt,
                  label="estimating Xilinx resources (synth_xilinx -family xc7)")
    except BoardError:
        error = _abc9_error(out_dir / rpt)
        if error is None:
            raise
        kept = f"{name}_yosys_xilinx_abc9.rpt"
        (out_dir / rpt).replace(out_dir / kept)
        result.logs["yosys (ABC9)"] = kept
        progress("yosys: ABC9 failed; estimating again with ABC")
        _run_step([yosys, "-q", "-l", rpt, f"{name}_yosys_xilinx_abc.ys"], "yosys", out_dir,
                  env, result, progress, tool_log=rpt,
                  label="estimating Xilinx resources (synth_xilinx, LUTs by ABC)")
        result.notes.append(_abc9_note(kept, error))
    result.logs[rpt] = rpt
    stat = json.loads((out_dir / f"{name}_yosys_xilinx_stat.json").read_text())
    result.utilization = reports.yosys_xilinx_utilization(stat, top=name)
    result.utilization["bram_kind"] = board.bram_kind
    netlist = out_dir / f"{name}_yosys_xilinx_netlist.json"
    depth = logic_depth(json.loads(netlist.read_text()), top=name)
    netlist.unlink()
    result.utilization["lut_levels"] = depth["max"]
    result.logic_depth = depth["cores"]
    result.tool = "yosys synth_xilinx estimate"


def _run_vivado(board, out_dir, name, result, progress):
    vivado = require("vivado")
    commands = json.loads((out_dir / f"build_{name}.json").read_text())["commands"]
    for argv in commands:
        _run_step([vivado if argv[0] == "vivado" else argv[0], *argv[1:]], argv[0], out_dir,
                  tool_environment(["vivado"]), result, progress)
    util = out_dir / f"{name}_utilization_place.rpt"
    timing = out_dir / f"{name}_timing.rpt"
    result.utilization = reports.vivado_utilization(util.read_text(errors="replace"))
    result.utilization["bram_kind"] = board.bram_kind
    result.tool = "vivado"
    if timing.exists():
        result.fmax_mhz = reports.vivado_fmax(timing.read_text(errors="replace"),
                                              1e3 / result.clock_mhz)
        result.clocks["sync"]["fmax_mhz"] = result.fmax_mhz
    for product in (f"{name}.log", util.name, timing.name):
        if (out_dir / product).exists():
            result.logs[product] = product
    _check_timing(result)

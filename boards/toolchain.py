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
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import reports
from .manifest import write_manifest
from .registry import Board, BoardError, get_board
from .tools import env_script, find_tool, require, tool_environment

__all__ = ["BoardBuildResult", "build", "NEXTPNR_SEED"]

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


@dataclass
class BoardBuildResult:
    """What a board build produced.

    ``files`` and the paths in ``logs`` are relative to ``out_dir``;
    ``bitstream`` is ``out_dir / name`` (or None). ``utilization`` has
    ``luts``, ``ffs``, ``brams`` (in the board's native unit, ``bram_kind``)
    and ``dsps``, plus family-specific extras; ``tool`` says what measured it.
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
        if self.fmax_mhz:
            parts.append(f"; Fmax {self.fmax_mhz:.1f} MHz at a {self.clock_mhz:g} MHz clock")
        parts.append("; bitstream " + (self.bitstream.name if self.bitstream else "not built"))
        text = "".join(parts)
        return text + (". " + " ".join(self.notes) if self.notes else "")


def build(board, top, out_dir, *, run_toolchain=True, progress=print, name="top",
          seed=NEXTPNR_SEED, flash_images=()):
    """Write ``top``'s build plan for ``board`` into ``out_dir`` and run its toolchain.

    ``board`` is a :class:`~boards.registry.Board` or a name; ``top`` is an
    Elaboratable that requests its pins from the platform (normally a
    :class:`~boards.top.BoardTop`). ``progress`` gets one line per step.
    ``flash_images`` are ``(path, offset)`` pairs, ``path`` relative to
    ``out_dir``, or dicts with ``path``, ``offset`` and ``quad`` (read in quad
    mode: :func:`boards.flash_layout.weights_image` makes one at the board's
    documented offset), that ``flash()`` writes to the SPI flash before the
    bitstream. Returns a :class:`BoardBuildResult`; a missing tool or a
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
    progress(f"{board.name}: writing the {board.toolchain} build plan to {out_dir}")
    # emit_src=False: source locations are absolute paths, which would make the
    # plan depend on where the checkout lives.
    plan = platform.prepare(top, name, emit_src=False, **overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan.extract(out_dir)
    files = list(plan.files)

    result = BoardBuildResult(board.name, out_dir, clock_mhz=board.clock_hz / 1e6)
    bitstream = out_dir / _BITSTREAM[board.family].format(name=name)
    if bitstream.exists():
        bitstream.unlink()               # never hand a stale bitstream to flash()
    tools = platform.required_tools if board.open_toolchain else ["yosys"]
    (out_dir / "toolchain_env.sh").write_text(env_script(tools))
    files.append("toolchain_env.sh")
    if board.family == "xilinx":
        (out_dir / f"{name}_yosys_xilinx.ys").write_text(_yosys_xilinx_script(name))
        files.append(f"{name}_yosys_xilinx.ys")

    # Until the tools succeed the manifest says there is no bitstream, so flash()
    # never loads the product of an earlier build from this directory.
    write_manifest(out_dir, _manifest(board, top, None, bitstream.name, flash_images))
    if run_toolchain:
        if board.open_toolchain:
            _run_open(board, out_dir, name, result, progress)
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
            "notes": result.notes}, indent=1, sort_keys=True) + "\n")
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


def _run_step(argv, tool, out_dir, env, result, progress, label=None):
    """Run one tool, its output saved to ``<tool>.log``; a failure is a BoardError."""
    log = f"{tool}.log"
    progress(f"{tool}: {label or _STEP_LABELS.get(tool, 'running')}...")
    t = time.monotonic()
    with open(out_dir / log, "wb") as f:
        rc = subprocess.run(argv, cwd=out_dir, env=env, stdout=f, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL).returncode
    seconds = time.monotonic() - t
    result.logs[tool] = log
    result.steps.append((tool, seconds))
    if rc != 0:
        tail = _last_error(out_dir / log)
        raise BoardError(f"{tool} failed (exit status {rc}) after {seconds:.0f} s"
                         f"{': ' + tail if tail else ''}; see {out_dir / log}")
    progress(f"{tool}: done in {seconds:.1f} s")


def _last_error(path):
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [l.strip() for l in lines if "ERROR" in l or "Error" in l]
    return (errors[-1] if errors else "")[:200]


def _run_open(board, out_dir, name, result, progress):
    """Amaranth's command list (build_top.json), one command at a time."""
    commands = json.loads((out_dir / f"build_{name}.json").read_text())["commands"]
    tools = [argv[0] for argv in commands]
    paths = {tool: require(tool) for tool in tools}
    env = tool_environment(tools)
    for argv in commands:
        _run_step([paths[argv[0]], *argv[1:]], argv[0], out_dir, env, result, progress)
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
    result.fmax_mhz = reports.nextpnr_fmax(report)
    _check_timing(result)


def _check_timing(result):
    if result.fmax_mhz is not None and result.fmax_mhz < result.clock_mhz:
        result.notes.append(f"Timing NOT met: Fmax {result.fmax_mhz:.1f} MHz is below the "
                            f"{result.clock_mhz:g} MHz board clock; fold the design further.")


def _yosys_xilinx_script(name):
    return "\n".join([
        "# Resource estimate for the Vivado plan, with Yosys' Xilinx 7-series synthesis.",
        f"read_verilog {name}.v",
        # Amaranth sets SIM_DEVICE on the BUFGCTRL for Vivado; Yosys' model lacks it.
        "setparam -unset SIM_DEVICE t:BUFGCTRL",
        f"synth_xilinx -family xc7 -top {name} -flatten",
        f"tee -q -o {name}_yosys_xilinx_stat.json stat -json",
        ""])


def _run_yosys_xilinx(board, out_dir, name, result, progress):
    yosys = require("yosys")
    _run_step([yosys, "-q", f"{name}_yosys_xilinx.ys"], "yosys", out_dir,
              tool_environment(["yosys"]), result, progress,
              label="estimating Xilinx resources (synth_xilinx -family xc7)")
    stat = json.loads((out_dir / f"{name}_yosys_xilinx_stat.json").read_text())
    result.utilization = reports.yosys_xilinx_utilization(stat, top=name)
    result.utilization["bram_kind"] = board.bram_kind
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
    for product in (f"{name}.log", util.name, timing.name):
        if (out_dir / product).exists():
            result.logs[product] = product
    _check_timing(result)

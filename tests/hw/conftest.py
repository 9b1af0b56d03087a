"""Shared set-up of the core regressions: Verilog of a core, Verilator runs, stimuli.

Every core test elaborates cores to Verilog, builds them once with Verilator
(:func:`sim.verilator.simulate`, through cocotb's Python runner) and runs the
generic stream bench on them many times, with different data and stall seeds.
A Verilator build costs far more than a run, so the random shapes of one core
go side by side into one :class:`Bundle` and share one build; each shape has its
own ports, which the bench drives and stalls independently.
"""

import os

import fcntl
import hashlib
from contextlib import contextmanager

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Shape
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.lanes import shape_range
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


class Chain(wiring.Component):
    """Cores in a row, ``o`` of each to ``i`` of the next, as the compiler lowers a stage."""

    def __init__(self, *cores):
        self.cores = cores
        super().__init__({"i": In(stream.Signature(cores[0].i.payload.shape())),
                          "o": Out(stream.Signature(cores[-1].o.payload.shape()))})

    def elaborate(self, platform):
        m = Module()
        for n, core in enumerate(self.cores):
            m.submodules[f"c{n}"] = core
        wiring.connect(m, wiring.flipped(self.i), self.cores[0].i)
        for a, b in zip(self.cores, self.cores[1:]):
            wiring.connect(m, a.o, b.i)
        wiring.connect(m, self.cores[-1].o, wiring.flipped(self.o))
        return m


def lane_values(rng, shape, size):
    """Random integers over the whole range of ``shape``, extremes included often."""
    lo, hi = shape_range(shape)
    x = rng.integers(lo, hi, size=size, endpoint=True)
    pick = rng.random(size)
    x = np.where(pick < 0.1, lo, x)
    x = np.where(pick > 0.9, hi, x)
    return x.astype(np.int64)


def image_beats(x):
    """``(B, C, H, W)`` -> ``B*H*W`` beats of ``C`` lanes, raster order."""
    x = np.asarray(x)
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1]).tolist()


def pack_value(shape, value):
    """The bits of ``value`` for a payload of ``shape``: ints, lists (arrays), dicts (structs)."""
    if isinstance(shape, data.StructLayout):
        word = 0
        for name, field in shape:
            if name in value:
                word |= pack_value(field.shape, value[name]) << field.offset
        return word
    if isinstance(shape, data.ArrayLayout):
        stride = Shape.cast(shape.elem_shape).width
        word = 0
        for n, v in enumerate(value):
            word |= pack_value(shape.elem_shape, v) << (n * stride)
        return word
    width = Shape.cast(shape).width
    return int(value) & ((1 << width) - 1)


def unpack_value(shape, word):
    """Inverse of :func:`pack_value`: signed ints sign-extended, structs as dicts."""
    if isinstance(shape, data.StructLayout):
        return {name: unpack_value(field.shape, word >> field.offset) for name, field in shape}
    if isinstance(shape, data.ArrayLayout):
        stride = Shape.cast(shape.elem_shape).width
        return [unpack_value(shape.elem_shape, word >> (n * stride)) for n in range(shape.length)]
    shape = Shape.cast(shape)
    v = word & ((1 << shape.width) - 1)
    if shape.signed and v >> (shape.width - 1):
        v -= 1 << shape.width
    return v

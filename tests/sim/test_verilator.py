"""The Verilator runner itself, on a tiny stream design: caching, stalls, errors."""

import random

import pytest
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned

from hw.fifo import StreamFIFO
from hw.join import Fork
from hw.lanes import lanes
from sim.lanes import pack, unpack
from sim.verilator import SimulationError, StreamPort, simulate

LAYOUT = lanes(signed(5), 3)
I, O = StreamPort("i", 5, True, 3), StreamPort("o", 5, True, 3)


@pytest.fixture(scope="module")
def fifo_v(tmp_path_factory):
    d = tmp_path_factory.mktemp("runner")
    path = d / "fifo.v"
    path.write_text(verilog.convert(StreamFIFO(LAYOUT, 4), name="fifo", emit_src=False))
    return path


def beats(n, seed=0):
    rng = random.Random(seed)
    return [[rng.randint(-16, 15) for _ in range(3)] for _ in range(n)]


def test_pack_unpack_round_trip():
    rng = random.Random(1)
    for width, is_signed, n in [(1, False, 7), (5, True, 3), (8, False, 4), (17, True, 2)]:
        lo, hi = (-(1 << width - 1), (1 << width - 1) - 1) if is_signed else (0, (1 << width) - 1)
        for _ in range(50):
            v = [rng.randint(lo, hi) for _ in range(n)]
            word = pack(v, width)
            assert 0 <= word < 1 << (width * n)
            assert unpack(word, width, n, is_signed) == v
    assert pack([1, -1], 4) == 0xF1                       # lane 0 in the low bits


def test_stream_port_names():
    fork = Fork(LAYOUT, 3)
    fork._MustUse__silence = True                          # only its ports are looked at
    assert StreamPort.of(fork, "i") == StreamPort("i", 5, True, 3)
    port = StreamPort.of(fork, "o[2]")
    assert port == StreamPort("o[2]", 5, True, 3) and port.prefix == "o__2"
    fifo = StreamFIFO(lanes(unsigned(1), 8), 2)
    fifo._MustUse__silence = True
    assert StreamPort.of(fifo, "o") == StreamPort("o", 1, False, 8)


def test_build_is_cached(fifo_v, tmp_path):
    build = tmp_path / "b"
    said = []
    data = beats(20)
    first = simulate(fifo_v, "fifo", {I: data}, {O: 20}, build_dir=build, progress=said.append)
    assert any("building fifo" in s for s in said) and first.outputs["o"] == data
    stamp = (build / "design.sha256").read_text()
    exe = build / "fifo"
    mtime = exe.stat().st_mtime_ns
    said.clear()
    second = simulate(fifo_v, "fifo", {I: data}, {O: 20}, build_dir=build, progress=said.append)
    assert not any("building" in s for s in said), said
    assert exe.stat().st_mtime_ns == mtime and (build / "design.sha256").read_text() == stamp
    assert second.outputs == first.outputs and second.cycles == first.cycles
    # Different Verilog in the same directory: built again.
    other = tmp_path / "other.v"
    other.write_text(verilog.convert(StreamFIFO(LAYOUT, 3), name="fifo", emit_src=False))
    said.clear()
    third = simulate(other, "fifo", {I: data}, {O: 20}, build_dir=build, progress=said.append)
    assert any("building fifo" in s for s in said)
    assert (build / "design.sha256").read_text() != stamp and third.outputs["o"] == data


def test_stalls_change_timing_not_data(fifo_v, tmp_path_factory):
    build = tmp_path_factory.getbasetemp() / "runner-stalls"
    data = beats(300, seed=3)
    clean = simulate(fifo_v, "fifo", {I: data}, {O: 300}, build_dir=build, stall=0.0, seed=1,
                     progress=lambda s: None)
    assert clean.outputs["o"] == data
    assert clean.cycles <= 300 + 4                        # a beat per cycle
    assert len(clean.in_cycles["i"]) == 300 and len(clean.out_cycles["o"]) == 300
    assert clean.in_cycles["i"] == list(range(300))        # never a gap on the input
    previous = clean.cycles
    for stall in (0.3, 0.6):
        runs = [simulate(fifo_v, "fifo", {I: data}, {O: 300}, build_dir=build, stall=stall,
                         seed=seed, progress=lambda s: None) for seed in (1, 2)]
        for res in runs:
            assert res.outputs["o"] == data
            assert res.cycles > previous
            assert res.out_cycles["o"] == sorted(res.out_cycles["o"])
            # Each beat leaves after it arrived.
            assert all(o > i for i, o in zip(res.in_cycles["i"], res.out_cycles["o"]))
        assert runs[0].out_cycles != runs[1].out_cycles   # the seed picks the stalls
        previous = min(r.cycles for r in runs)
    # Same seed, same stalls: the runner is deterministic.
    again = simulate(fifo_v, "fifo", {I: data}, {O: 300}, build_dir=build, stall=0.6, seed=2,
                     progress=lambda s: None)
    assert again.out_cycles == runs[1].out_cycles


def test_timeout_when_no_output_comes(fifo_v, tmp_path_factory):
    build = tmp_path_factory.getbasetemp() / "runner-stalls"     # reuses the build above
    # No input at all: the FIFO never has anything to give.
    with pytest.raises(SimulationError, match=r"timed out after 500 cycles \(o: got 0 of 3"):
        simulate(fifo_v, "fifo", {I: []}, {O: 3}, build_dir=build, timeout_cycles=500,
                 progress=lambda s: None)
    # Fewer beats in than asked for out: the report says how many came.
    with pytest.raises(SimulationError, match=r"o: got 2 of 5 beats"):
        simulate(fifo_v, "fifo", {I: beats(2)}, {O: 5}, build_dir=build, stall=0.3,
                 timeout_cycles=300, progress=lambda s: None)


def test_bad_verilog_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input clk, input rst; endmodule\n")
    with pytest.raises(SimulationError, match="verilator could not build bad"):
        simulate(bad, "bad", {}, {O: 1}, build_dir=tmp_path / "b", progress=lambda s: None)


def test_runtime_objects_are_compiled_once(fifo_v, tmp_path, monkeypatch):
    """Verilator's runtime library is compiled by the first build and copied into the next."""
    monkeypatch.setenv("SHIFTADD_VERILATOR_CACHE", str(tmp_path / "cache"))
    data = beats(30, seed=5)

    def build(name, design=fifo_v):
        res = simulate(design, "fifo", {I: data}, {O: 30}, build_dir=tmp_path / name, stall=0.3,
                       progress=lambda s: None)
        assert res.outputs["o"] == data
        return (tmp_path / name / "build.log").read_text()

    assert "-o verilated.o" in build("first")
    cache = next((tmp_path / "cache").iterdir())
    assert {p.name for p in cache.iterdir()} >= {"verilated.o", "verilated_vpi.o",
                                                 "commands.txt"}
    # Another design: the runtime objects come from the cache, the design is compiled.
    other = tmp_path / "other.v"
    other.write_text(verilog.convert(StreamFIFO(LAYOUT, 7), name="fifo", emit_src=False))
    log = build("second", other)
    assert "-o verilated.o" not in log and "-o verilator.o" in log
    # Objects cached with other flags are not used: this build compiles its own.
    commands = (cache / "commands.txt").read_text()
    (cache / "commands.txt").write_text(commands.replace("-Os", "-O1"))
    assert "-o verilated.o" in build("third")
    assert (cache / "commands.txt").read_text() == commands.replace("-Os", "-O1")

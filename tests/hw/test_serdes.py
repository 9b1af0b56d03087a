"""Bytes <-> lanes, in the Amaranth simulator, against the host's encoding."""

import random

import pytest
from amaranth.hdl import Module, Shape, signed, unsigned
from amaranth.lib import wiring
from amaranth.sim import Simulator

from boards.host import LaneFormat, decode_beats, encode_beats
from hw.serdes import BytesToLanes, LanesToBytes, lane_bytes
from sim.lanes import pack, unpack

SHAPES = [(unsigned(1), 5), (signed(3), 4), (unsigned(8), 3), (signed(8), 1),
          (signed(9), 2), (unsigned(12), 3), (signed(16), 2), (signed(20), 3)]


def fmt(shape, n):
    shape = Shape.cast(shape)
    return LaneFormat(shape.width, shape.signed, n)


def random_beats(rng, shape, n, count):
    lo, hi = fmt(shape, n).range
    return [[rng.randint(lo, hi) for _ in range(n)] for _ in range(count)]


def simulate(dut, send, recv, count, rng, stall):
    """Push ``send`` items into ``dut.i``, take ``count`` items from ``dut.o``.

    Items are raw payload integers; ``stall`` is the chance a cycle idles.
    """
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def driver(ctx):
        for item in send:
            while rng.random() < stall:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.payload.as_value() if hasattr(dut.i.payload, "as_value")
                    else dut.i.payload, item)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def monitor(ctx):
        payload = dut.o.payload.as_value() if hasattr(dut.o.payload, "as_value") else dut.o.payload
        while len(got) < count:
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            _, _, valid, value = await ctx.tick().sample(dut.o.valid, payload)
            if valid and ready:
                got.append(value)

    sim.add_testbench(driver)
    sim.add_testbench(monitor)
    sim.run()
    return got


@pytest.mark.parametrize("stall", [0.0, 0.4])
@pytest.mark.parametrize("shape,n", SHAPES)
def test_bytes_to_lanes(shape, n, stall):
    rng = random.Random(f"{shape} {n} {stall}")
    beats = random_beats(rng, shape, n, 12)
    data = encode_beats(beats, fmt(shape, n))
    assert len(data) == 12 * n * lane_bytes(shape)
    dut = BytesToLanes(shape, n)
    words = simulate(dut, list(data), None, len(beats), rng, stall)
    width = Shape.cast(shape).width
    assert [unpack(w, width, n, Shape.cast(shape).signed) for w in words] == beats


@pytest.mark.parametrize("stall", [0.0, 0.4])
@pytest.mark.parametrize("shape,n", SHAPES)
def test_lanes_to_bytes(shape, n, stall):
    rng = random.Random(f"{shape} {n} {stall} out")
    beats = random_beats(rng, shape, n, 12)
    dut = LanesToBytes(shape, n)
    width = Shape.cast(shape).width
    data = simulate(dut, [pack(b, width) for b in beats], None,
                    12 * n * lane_bytes(shape), rng, stall)
    assert bytes(data) == encode_beats(beats, fmt(shape, n))
    assert decode_beats(bytes(data), fmt(shape, n)) == beats


def test_bytes_to_lanes_ignores_extension_bits():
    # A 3-bit lane in one byte: whatever the top 5 bits say, the lane is the low 3.
    rng = random.Random(3)
    data = [rng.randrange(256) for _ in range(40)]
    dut = BytesToLanes(signed(3), 4)
    words = simulate(dut, data, None, 10, rng, 0.2)
    got = [unpack(w, 3, 4, True) for w in words]
    want = [[((b & 7) ^ 4) - 4 for b in data[k:k + 4]] for k in range(0, 40, 4)]
    assert got == want


def test_round_trip_lanes_bytes_lanes_back_to_back():
    # Without stalls the pair moves one byte per cycle: n bytes of a beat in n cycles.
    shape, n = signed(12), 3
    m = Module()
    m.submodules.ser = ser = LanesToBytes(shape, n)
    m.submodules.des = des = BytesToLanes(shape, n)
    wiring.connect(m, ser.o, des.i)
    rng = random.Random(5)
    beats = random_beats(rng, shape, n, 30)

    got = []
    cycles = []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def driver(ctx):
        for b in beats:
            ctx.set(ser.i.payload.as_value(), pack(b, 12))
            ctx.set(ser.i.valid, 1)
            await ctx.tick().until(ser.i.ready)
        ctx.set(ser.i.valid, 0)

    async def monitor(ctx):
        ctx.set(des.o.ready, 1)
        t = 0
        while len(got) < len(beats):
            _, _, valid, value = await ctx.tick().sample(des.o.valid, des.o.payload.as_value())
            t += 1
            if valid:
                got.append(unpack(value, 12, n, True))
                cycles.append(t)

    sim.add_testbench(driver)
    sim.add_testbench(monitor)
    sim.run()
    assert got == beats
    bytes_per_beat = n * 2
    assert {b - a for a, b in zip(cycles, cycles[1:])} == {bytes_per_beat}

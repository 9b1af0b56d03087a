"""UART receiver and transmitter in the Amaranth simulator."""

import gc
import random
import warnings

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hw.uart import UARTRx, UARTTx


def line_bits(byte, stop=1):
    return [0] + [(byte >> k) & 1 for k in range(8)] + [stop]


def run(dut, *benches, processes=()):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    for proc in processes:
        sim.add_process(proc)
    sim.run()


def drive_line(rx, frames, period, *, idle=3, rng=None):
    """A testbench that bit-bangs ``frames`` (lists of bits) onto ``rx``.

    ``period`` is cycles per bit, or a callable giving it per bit (for drift).
    """
    async def bench(ctx):
        ctx.set(rx, 1)
        await ctx.tick().repeat(3)
        for bits in frames:
            for b in bits:
                ctx.set(rx, b)
                await ctx.tick().repeat(period() if callable(period) else period)
            ctx.set(rx, 1)
            gap = rng.randrange(0, 3 * idle) if rng else idle
            if gap:
                await ctx.tick().repeat(gap)
    return bench


def collect(stream, count, got, *, rng=None):
    async def bench(ctx):
        while len(got) < count:
            ready = rng.random() < 0.7 if rng else True
            ctx.set(stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
            if valid and ready:
                got.append(payload)
        ctx.set(stream.ready, 0)
    return bench


@pytest.mark.parametrize("cpb", [4, 5, 16])
def test_loopback_random_bytes(cpb):
    rng = random.Random(cpb)
    data = [rng.randrange(256) for _ in range(60)]
    m = Module()
    m.submodules.tx = tx = UARTTx(cpb)
    m.submodules.rx = rx = UARTRx(cpb)
    m.d.comb += rx.rx.eq(tx.tx)
    got = []

    async def send(ctx):
        for byte in data:
            # random gaps between bytes, and often none (back to back)
            for _ in range(rng.choice([0, 0, 0, 1, 7])):
                ctx.set(tx.i.valid, 0)
                await ctx.tick()
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    errors = []

    async def watch(ctx):
        async for _, _, err, ovr in ctx.tick().sample(rx.error, rx.overrun):
            if err or ovr:
                errors.append((err, ovr))

    run(m, send, collect(rx.o, len(data), got), processes=[watch])
    assert got == data
    assert errors == []


def test_tx_waveform_is_8n1():
    cpb = 6
    dut = UARTTx(cpb)
    samples = []

    async def bench(ctx):
        assert ctx.get(dut.tx) == 1                 # idle high out of reset
        ctx.set(dut.i.payload, 0xA5)
        ctx.set(dut.i.valid, 1)
        await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        for _ in range(11 * cpb):
            samples.append(ctx.get(dut.tx))
            await ctx.tick()

    run(dut, bench)
    bits = [samples[k * cpb + cpb // 2] for k in range(10)]
    assert bits == line_bits(0xA5)
    # each bit holds for exactly cpb cycles
    assert samples[:cpb] == [0] * cpb and samples[cpb] == 1
    assert samples[10 * cpb:] == [1] * cpb


@pytest.mark.parametrize("drift", [-1, 1])
def test_rx_tolerates_clock_mismatch(drift):
    # A transmitter 1/16 bit fast or slow every other bit (~3 %): still sampled right.
    cpb = 16
    rng = random.Random(7)
    data = [rng.randrange(256) for _ in range(20)]
    toggle = iter(range(10 ** 9))

    def period():
        return cpb + (drift if next(toggle) % 2 else 0)

    dut = UARTRx(cpb)
    got = []
    run(dut, drive_line(dut.rx, [line_bits(b) for b in data], period, idle=0),
        collect(dut.o, len(data), got))
    assert got == data


def test_rx_ignores_glitch_and_reports_framing_error_and_break():
    cpb = 8
    dut = UARTRx(cpb)
    got, events = [], []

    async def line(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(4)
        ctx.set(dut.rx, 0)                     # a 2-cycle glitch: not a start bit
        await ctx.tick().repeat(2)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(20)
        for frame in (line_bits(0x3C, stop=0),      # framing error
                      [0] * 10,                     # break
                      line_bits(0x81)):             # then a good byte
            for b in frame:
                ctx.set(dut.rx, b)
                await ctx.tick().repeat(cpb)
            ctx.set(dut.rx, 1)
            await ctx.tick().repeat(2 * cpb)

    async def watch(ctx):
        async for _, _, err, brk in ctx.tick().sample(dut.error, dut.brk):
            if err or brk:
                events.append((err, brk))

    run(dut, line, collect(dut.o, 1, got), processes=[watch])
    assert got == [0x81]
    assert events == [(1, 0), (1, 1)]


def test_rx_overrun_when_output_not_taken():
    cpb = 4
    dut = UARTRx(cpb)
    overruns = []

    async def watch(ctx):
        async for _, _, ovr in ctx.tick().sample(dut.overrun):
            overruns.append(ovr)

    async def done(ctx):
        await ctx.tick().repeat(3 * 10 * cpb + 40)
        # the first byte still waits; the two behind it were lost
        assert ctx.get(dut.o.valid) == 1 and ctx.get(dut.o.payload) == 1

    run(dut, drive_line(dut.rx, [line_bits(1), line_bits(2), line_bits(3)], cpb), done,
        processes=[watch])
    assert sum(overruns) == 2


def test_clocks_per_bit_checked():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the half-built objects are never elaborated
        with pytest.raises(ValueError, match="clocks_per_bit"):
            UARTRx(3)
        with pytest.raises(ValueError, match="clocks_per_bit"):
            UARTTx(2.5)
        gc.collect()


def test_break_drops_a_waiting_byte():
    cpb = 4
    dut = UARTRx(cpb)
    seen = {}

    async def line(ctx):
        await drive_line(dut.rx, [line_bits(0x42)], cpb)(ctx)
        await ctx.tick().repeat(2)
        seen["before"] = ctx.get(dut.o.valid), ctx.get(dut.o.payload)
        await drive_line(dut.rx, [[0] * 10], cpb)(ctx)
        await ctx.tick().repeat(2)
        seen["after"] = ctx.get(dut.o.valid)

    run(dut, line)
    assert seen == {"before": (1, 0x42), "after": 0}

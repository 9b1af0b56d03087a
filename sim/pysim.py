"""Drive a streaming core in Amaranth's simulator with random valid/ready stalls."""

import random

from amaranth.hdl import Shape
from amaranth.lib import data
from amaranth.sim import Simulator

from .lanes import pack, unpack

__all__ = ["run_streams", "lane_format"]


def lane_format(port):
    """``(width, signed, count)`` of a stream port whose payload is an array of lanes.

    Any other payload (a struct, a plain integer) is one unsigned lane as wide as itself.
    """
    layout = port.payload.shape()
    if not isinstance(layout, data.ArrayLayout):
        return Shape.cast(layout).width, False, 1
    elem = Shape.cast(layout.elem_shape)
    return elem.width, elem.signed, layout.length


def _port(dut, name):
    """``"o"`` or ``"o[1]"`` (a member of an array of ports)."""
    base, _, index = name.partition("[")
    port = getattr(dut, base)
    return port[int(index.rstrip("]"))] if index else port


def run_streams(dut, inputs, outputs, *, stall=0.0, seed=0, max_cycles=200_000,
                extra_processes=()):
    """Feed ``inputs`` (port name -> beats) and collect ``outputs`` (port name -> count).

    Each input holds ``valid`` low and each output holds ``ready`` low on a random
    fraction ``stall`` of cycles. Returns ``(beats by output port, cycles run)``.
    A beat is a list of lane integers.
    """
    rng = random.Random(seed)
    got = {name: [] for name in outputs}
    state = {"cycles": 0}
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    def driver(name, beats):
        port = _port(dut, name)
        width, _, _ = lane_format(port)

        async def process(ctx):
            for beat in beats:
                while rng.random() < stall:
                    ctx.set(port.valid, 0)
                    await ctx.tick()
                ctx.set(port.payload.as_value(), pack(beat, width))
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
            ctx.set(port.valid, 0)
        return process

    def monitor(name, count):
        port = _port(dut, name)
        width, signed, n = lane_format(port)

        async def process(ctx):
            while len(got[name]) < count:
                ready = rng.random() >= stall
                ctx.set(port.ready, ready)
                _, _, valid, word = await ctx.tick().sample(port.valid, port.payload.as_value())
                if valid and ready:
                    got[name].append(unpack(word, width, n, signed))
            ctx.set(port.ready, 0)
        return process

    async def clock(ctx):
        while True:
            await ctx.tick()
            state["cycles"] += 1
            if state["cycles"] > max_cycles:
                counts = ", ".join(f"{k}: {len(v)}/{outputs[k]}" for k, v in got.items())
                raise TimeoutError(f"no result after {max_cycles} cycles; got {counts}")

    for name, beats in inputs.items():
        sim.add_testbench(driver(name, beats))
    for name, count in outputs.items():
        sim.add_testbench(monitor(name, count))
    sim.add_process(clock)
    for proc in extra_processes:
        sim.add_testbench(proc)
    sim.run()
    return got, state["cycles"]

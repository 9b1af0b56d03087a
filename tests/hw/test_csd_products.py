"""Products without multipliers: constant products as shifted adds, small products as a
multiplexer over them (command decoding in the layer engine)."""

import itertools

from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hw.csd import const_product, small_product


def test_const_and_small_products_are_exact():
    x, y = Signal(4), Signal(5)
    by_const = [Signal(16, name=f"c{k}") for k in (0, 1, 3, 7, 37, 100)]
    small = Signal(16)
    m = Module()
    m.d.comb += small.eq(small_product(x, y))
    m.d.comb += [s.eq(const_product(x, k)) for s, k in zip(by_const, (0, 1, 3, 7, 37, 100))]

    async def bench(ctx):
        for a, b in itertools.product(range(16), range(32)):
            ctx.set(x, a)
            ctx.set(y, b)
            assert ctx.get(small) == a * b
            for s, k in zip(by_const, (0, 1, 3, 7, 37, 100)):
                assert ctx.get(s) == a * k

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()

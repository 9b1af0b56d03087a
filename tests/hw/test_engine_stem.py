"""The layer engine's stem cores in Verilator: feeder, collector and map writer, under stalls."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.engine.stem import Collector, MapWriter, StemFeeder

from stimuli import lane_values, pack_value, unpack_value


class Writes(wiring.Component):
    """A map writer whose memory writes come out as a stream (and which starts at once)."""

    def __init__(self, **kw):
        self.writer = MapWriter(**kw)
        super().__init__({"i": In(stream.Signature(self.writer.i.payload.shape())),
                          "o": Out(stream.Signature(self.writer.wr_layout))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.w = w = self.writer
        started = Signal()
        m.d.sync += started.eq(1)
        m.d.comb += w.start.eq(~started)
        # The writer never stalls a write; hold its input while the output waits.
        m.d.comb += [w.i.payload.eq(self.i.payload),
                     w.i.valid.eq(self.i.valid & (~self.o.valid | self.o.ready)),
                     self.i.ready.eq(w.i.ready & (~self.o.valid | self.o.ready))]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(w.wr.en & (~self.o.valid | self.o.ready)):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(w.wr)]
        return m


FEEDERS = [dict(shape=signed(8), k=27, simd=8, groups=3, weight_bits=6),
           dict(shape=signed(5), k=8, simd=8, groups=1, weight_bits=4),
           dict(shape=unsigned(3), k=5, simd=4, groups=2, weight_bits=5)]
COLLECTORS = [dict(pe=2, groups=3, value=signed(12), out=unsigned(4)),
              dict(pe=4, groups=1, value=signed(9), out=signed(6))]
WRITERS = [dict(shape=unsigned(4), simd=4, words=2, pixels=9, base=17, addr_bits=8),
           dict(shape=signed(3), simd=2, words=1, pixels=5, base=0, addr_bits=4)]


def collector(kw):
    layout = data.StructLayout({"value": data.ArrayLayout(kw["value"], kw["pe"]),
                                "gg": unsigned(max(kw["groups"] - 1, 1).bit_length())})
    return Collector(in_layout=layout, out_shape=kw["out"], pe=kw["pe"], groups=kw["groups"])


@pytest.fixture(scope="module")
def dut(design):
    cores = [StemFeeder(**kw) for kw in FEEDERS] + [collector(kw) for kw in COLLECTORS] + \
            [Writes(**kw) for kw in WRITERS]
    return cores, design(cores, "engine_stem")


def feeder_case(kw, rng, windows=7):
    chunks = -(-kw["k"] // kw["simd"])
    x = lane_values(rng, kw["shape"], (windows, kw["k"]))
    expected = []
    for win in x:
        padded = list(win) + [0] * (chunks * kw["simd"] - kw["k"])
        for g in range(kw["groups"]):
            for c in range(chunks):
                expected.append({"x": padded[c * kw["simd"]:(c + 1) * kw["simd"]],
                                 "widx": g * chunks + c, "start": int(c == 0),
                                 "last": int(c == chunks - 1), "gg": g})
    return x.tolist(), expected


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_stem_cores(dut, stall):
    cores, design = dut
    rng = np.random.default_rng(5)
    inputs, expected = {}, {}
    n = 0
    for kw in FEEDERS:
        beats, exp = feeder_case(kw, rng)
        inputs[f"i_{n}"] = beats
        expected[n] = exp
        n += 1
    for kw in COLLECTORS:
        core = cores[n]
        results, exp = [], []
        for pixel in range(6):
            vals = lane_values(rng, kw["out"], (kw["groups"], kw["pe"]))
            for g in range(kw["groups"]):
                results.append({"value": vals[g].tolist(), "gg": g})
            exp.append(vals.reshape(-1).tolist())
        inputs[f"i_{n}"] = [[pack_value(core.i.payload.shape(), r)] for r in results]
        expected[n] = exp
        n += 1
    for kw in WRITERS:
        beats = lane_values(rng, kw["shape"], (kw["pixels"], kw["words"] * kw["simd"]))
        inputs[f"i_{n}"] = beats.tolist()
        expected[n] = [{"addr": kw["base"] + p * kw["words"] + w,
                        "data": beats[p, w * kw["simd"]:(w + 1) * kw["simd"]].tolist(), "en": 1}
                       for p in range(kw["pixels"]) for w in range(kw["words"])]
        n += 1
    res = design.run(inputs, {f"o_{k}": len(v) for k, v in expected.items()}, stall=stall, seed=2)
    for k, exp in expected.items():
        core = cores[k]
        shape = core.o.payload.shape()
        got = [unpack_value(shape, w[0]) if not isinstance(shape, data.ArrayLayout) else w
               for w in res.outputs[f"o_{k}"]]
        assert got == exp, f"core {k} ({type(core).__name__})"

"""The layer engine's epilogue in Verilator: run-time thresholds, every mode, under stalls."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.engine.epilogue import Epilogue, Mode

from stimuli import pack_value, unpack_value

TAG = data.StructLayout({"buf": 1, "n": unsigned(6)})


class Fixed(wiring.Component):
    """An epilogue with one step's configuration, and results held back until the
    tables are written (the engine's sequencer orders them the same way)."""

    def __init__(self, cfg, writes, **kw):
        self.epi = Epilogue(tag_shape=TAG, **kw)
        self.cfg_value, self.writes = cfg, writes
        super().__init__({"i": In(stream.Signature(self.epi.in_layout)),
                          "tw": In(stream.Signature(self.epi.tw_layout)),
                          "o": Out(stream.Signature(self.epi.out_layout))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.epi = epi = self.epi
        written = Signal(range(self.writes + 1))
        wiring.connect(m, wiring.flipped(self.tw), epi.tw)
        with m.If(self.tw.valid & self.tw.ready):
            m.d.sync += written.eq(written + 1)
        ready = written == self.writes
        m.d.comb += [epi.i.payload.eq(self.i.payload), epi.i.valid.eq(self.i.valid & ready),
                     self.i.ready.eq(epi.i.ready & ready)]
        wiring.connect(m, epi.o, wiring.flipped(self.o))
        m.d.comb += epi.cfg.eq(epi.cfg.shape().const(self.cfg_value))
        return m


class Case:
    def __init__(self, seed, mode, pe=3, acc_width=12, depth=40, bits=(4, 3, 3)):
        rng = np.random.default_rng(seed)
        self.mode = mode
        acc_lo, acc_hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
        levels = [2 ** b - 1 for b in bits]
        lows = [-(2 ** (bits[0] - 1)), -(2 ** (bits[1] - 1)), 0]
        bases = [0, levels[0], levels[0] + levels[1]]
        assert bases[2] + levels[2] <= depth
        self.kw = dict(pe=pe, acc_width=acc_width, skip_shape=unsigned(3),
                       accumulators=2, depth=depth, levels_max=max(levels))
        # Thresholds per buffer, lane, set; T3 acts on small sums, T1/T2 on accumulators.
        self.tables = np.zeros((2, pe, depth), np.int64)
        self.sets = {}
        for b in range(2):
            for p in range(pe):
                for k, (base, n) in enumerate(zip(bases, levels)):
                    span = (acc_lo, acc_hi + 1) if k < 2 else (-20, 30)
                    t = np.sort(rng.integers(span[0], span[1] + 1, size=n))
                    self.tables[b, p, base:base + n] = t
                    self.sets[b, p, k] = t
        self.cfg = {"mode": int(mode),
                    "sets": [{"base": base, "levels": n, "steps": n.bit_length(), "lo": lo}
                             for base, n, lo in zip(bases, levels, lows)]}
        self.lows = lows
        self.writes = [{"lane": p, "buf": b, "addr": a, "value": int(self.tables[b, p, a])}
                       for b in range(2) for p in range(pe) for a in range(depth)]
        order = rng.permutation(len(self.writes))
        self.writes = [self.writes[i] for i in order]
        self.results = []
        for n in range(30):
            acc = rng.integers(acc_lo, acc_hi + 1, size=(2, pe))
            acc[:, rng.random(pe) < 0.2] = acc_hi
            skip = rng.integers(0, 8, size=pe)
            self.results.append({"acc": acc.tolist(), "skip": skip.tolist(),
                                 "tag": {"buf": int(rng.integers(0, 2)), "n": n % 64}})

    def expected(self):
        out = []
        for r in self.results:
            b = r["tag"]["buf"]
            values = []
            for p in range(len(r["skip"])):
                def q(k, v):
                    return self.lows[k] + int(np.sum(v >= self.sets[b, p, k]))
                a0, a1 = r["acc"][0][p], r["acc"][1][p]
                v = {Mode.RAW: lambda: a0,
                     Mode.Q: lambda: q(0, a0),
                     Mode.QS: lambda: q(2, q(0, a0) + r["skip"][p]),
                     Mode.QQ: lambda: q(2, q(0, a0) + q(1, a1))}[self.mode]()
                values.append(v)
            out.append({"value": values, "tag": r["tag"]})
        return out


CASES = [Case(s, m) for s, m in [(0, Mode.RAW), (1, Mode.Q), (2, Mode.QS), (3, Mode.QQ)]] + \
        [Case(4, Mode.QQ, pe=2, acc_width=9, depth=100, bits=(6, 5, 2))]


@pytest.fixture(scope="module")
def dut(design):
    return design([Fixed(c.cfg, len(c.writes), **c.kw) for c in CASES], "engine_epilogue")


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_epilogue_requantizes_like_numpy(dut, stall):
    cores = dut.core.cores
    inputs, outputs = {}, {}
    for n, (c, core) in enumerate(zip(CASES, cores)):
        inputs[f"i_{n}"] = [[pack_value(core.epi.in_layout, r)] for r in c.results]
        inputs[f"tw_{n}"] = [[pack_value(core.epi.tw_layout, w)] for w in c.writes]
        outputs[f"o_{n}"] = len(c.results)
    res = dut.run(inputs, outputs, stall=stall, seed=7)
    for n, (c, core) in enumerate(zip(CASES, cores)):
        got = [unpack_value(core.epi.out_layout, w[0]) for w in res.outputs[f"o_{n}"]]
        for k, (g, e) in enumerate(zip(got, c.expected())):
            assert g == e, f"case {n} ({c.mode.name}) result {k}: {g} != {e}"


def test_a_search_takes_two_cycles_per_bit(dut):
    """Q over 15 thresholds: 1 + (1 + 2 * 4 + 1) + 1 cycles per result when nothing stalls."""
    cores = dut.core.cores
    c, core = CASES[1], cores[1]
    res = dut.run({"i_1": [[pack_value(core.epi.in_layout, r)] for r in c.results],
                   "tw_1": [[pack_value(core.epi.tw_layout, w)] for w in c.writes]},
                  {"o_1": len(c.results)}, stall=0.0)
    out = res.out_cycles["o_1"]
    assert set(np.diff(out)) == {Epilogue.cycles([4])} == {12}

"""The layer engine's window walker in Verilator: every beat of random layer steps."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.engine.window import WindowWalker, segment_config, step_layout

from stimuli import unpack_value

PE, SIMD = 2, 4
GROUP_BITS = 8
TAG = data.StructLayout({"buf": 1, "addr": unsigned(17), "at": unsigned(1), "last": 1,
                         "stream": 1, "lanes": unsigned(4)})
CFG = step_layout(addr_bits=16, dim_bits=7, kernel_bits=4, weight_bits=10, group_bits=6,
                  lanes_bits=4)


class Walk(wiring.Component):
    """A walker running one step; ``load`` beats say that one more group is loaded."""

    def __init__(self, cfg):
        self.walker = WindowWalker(pe=PE, simd=SIMD, cfg_layout=CFG, weight_bits=10,
                                   group_bits=GROUP_BITS, tag_shape=TAG)
        self.cfg_value = cfg
        super().__init__({"load": In(stream.Signature(1)),
                          "o": Out(stream.Signature(self.walker.beat_layout))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.walker = w = self.walker
        loaded = Signal(GROUP_BITS)
        started = Signal()
        m.d.comb += [w.cfg.eq(CFG.const(self.cfg_value)), w.loaded.eq(loaded),
                     self.load.ready.eq(1), w.start.eq(~started)]
        m.d.sync += started.eq(1)
        with m.If(self.load.valid):
            m.d.sync += loaded.eq(loaded + 1)
        wiring.connect(m, w.o, wiring.flipped(self.o))
        return m


def reference(cfg):
    """The beats of a step, by the nested loops the walker unrolls into additions."""
    beats = []
    gpw = SIMD // PE
    for g in range(cfg["groups"]):
        gw, at = g // gpw, g % gpw
        for oy in range(cfg["out_h"]):
            for ox in range(cfg["out_w"]):
                dst = (oy * cfg["out_w"] + ox) * cfg["dst_cw"]
                tag = {"buf": g % 2, "addr": cfg["dst_base"] + dst + gw, "at": at,
                       "last": int(oy == cfg["out_h"] - 1 and ox == cfg["out_w"] - 1),
                       "stream": cfg["to_stream"],
                       "lanes": cfg["lanes"] if g == cfg["groups"] - 1 else PE}
                segs = [s for s in cfg["seg"] if s["on"]]
                pixel = []
                for s in segs:
                    k, cw = s["kernel"], s["cw"]
                    for ky in range(k):
                        for kx in range(k):
                            for cc in range(cw):
                                iy = oy * s["stride"] + ky - s["pad"]
                                ix = ox * s["stride"] + kx - s["pad"]
                                addr = (s["origin"] + oy * s["step_y"] + ox * s["step_x"]
                                        + ky * s["width"] * cw + kx * cw + cc)
                                widx = s["wofs"] + (cc if s["reuse"] else (ky * k + kx) * cw + cc)
                                pixel.append({"addr": addr, "pad": int(not (
                                    0 <= iy < s["height"] and 0 <= ix < s["width"])),
                                    "widx": widx, "start": int(ky == kx == cc == 0),
                                    "acc": s["acc"], "skip": 0})
                if cfg["skip"]:
                    pixel.append({"addr": cfg["skip_base"] + dst + gw, "pad": 0, "widx": None,
                                  "start": 0, "acc": None, "skip": 1})
                for n, b in enumerate(pixel):
                    b.update(buf=g % 2, last=int(n == len(pixel) - 1), skip_at=at, tag=tag)
                beats += pixel
    return beats


def random_step(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.choice([1, 2, 3, 5]))
    s = int(rng.integers(1, 3))
    p = int(rng.integers(0, k))
    h = int(rng.integers(k, 9))
    w = int(rng.integers(k, 9))
    cw = int(rng.integers(1, 4))
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    base = int(rng.integers(0, 200))
    seg0 = segment_config(base=base, height=h, width=w, cw=cw, kernel=k, stride=s, pad=p,
                          reuse=bool(rng.random() < 0.2))
    seg1 = {**segment_config(base=0, height=1, width=1, cw=1, kernel=1, stride=1, pad=0),
            "on": 0}
    if rng.random() < 0.4:
        # A strided 1x1 projection of a larger map into the same outputs.
        seg1 = segment_config(base=base + 400, height=oh * 2, width=ow * 2, cw=1, kernel=1,
                              stride=2, pad=0, acc=1, wofs=k * k * cw)
    out_cw = int(rng.integers(1, 3))
    return {"groups": int(rng.integers(1, 5)), "out_h": oh, "out_w": ow, "seg": [seg0, seg1],
            "skip": int(rng.random() < 0.5), "skip_base": int(rng.integers(0, 300)),
            "dst_base": int(rng.integers(0, 300)), "dst_cw": out_cw,
            "to_stream": int(rng.random() < 0.2), "lanes": int(rng.integers(1, PE + 1))}


STEPS = [random_step(seed) for seed in range(6)]


@pytest.fixture(scope="module")
def dut(design):
    return design([Walk(cfg) for cfg in STEPS], "engine_window")


def compare(got, expected, n):
    assert len(got) == len(expected)
    for k, (g, e) in enumerate(zip(got, expected)):
        for key, value in e.items():
            if value is None:
                continue
            assert g[key] == value, f"step {n} beat {k} field {key}: {g[key]} != {value}\n{g}\n{e}"


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_walker_visits_every_beat_in_order(dut, stall):
    cores = dut.core.cores
    expected = [reference(cfg) for cfg in STEPS]
    res = dut.run({f"load_{n}": [[1]] * cfg["groups"] for n, cfg in enumerate(STEPS)},
                  {f"o_{n}": len(e) for n, e in enumerate(expected)}, stall=stall, seed=3)
    for n, (core, exp) in enumerate(zip(cores, expected)):
        got = [unpack_value(core.walker.beat_layout, w[0]) for w in res.outputs[f"o_{n}"]]
        compare(got, exp, n)


def test_walker_waits_for_each_group(dut):
    """No beat of group g leaves before the g-th load; without stalls one beat per cycle."""
    cores = dut.core.cores
    n = max(range(len(STEPS)), key=lambda i: STEPS[i]["groups"])
    cfg = STEPS[n]
    res = dut.run({f"load_{n}": [[1]] * cfg["groups"]}, {f"o_{n}": len(reference(cfg))},
                  stall=0.0, seed=1)
    beats = [unpack_value(cores[n].walker.beat_layout, w[0]) for w in res.outputs[f"o_{n}"]]
    cycles = res.out_cycles[f"o_{n}"]
    loads = res.in_cycles[f"load_{n}"]
    for b, c in zip(beats, cycles):
        assert c > loads[0]
    assert cycles == list(range(cycles[0], cycles[0] + len(cycles)))


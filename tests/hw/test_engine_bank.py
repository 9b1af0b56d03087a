"""The layer engine's MAC bank in Verilator: random weights, programs and stalls."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hw.csd import csd_digits
from hw.engine.bank import MacBank
from hw.engine.layouts import DigitFormat

from stimuli import lane_values, pack_value, unpack_value


def weights_for(rng, fmt, size):
    """Random integers that ``fmt`` can hold (zeros included)."""
    if fmt.digits == 1 and fmt.max_shift == 0:
        return rng.integers(-1, 2, size=size)
    if fmt.digits == 1:
        w = rng.choice([-1, 1], size=size) * 2 ** rng.integers(0, fmt.max_shift + 1, size=size)
        w[rng.random(size) < 0.2] = 0
        return w
    hi = 2 ** (fmt.max_shift + 1) - 1
    pool = [v for v in range(-hi, hi + 1) if len(csd_digits(v)) <= fmt.digits
            and all(s <= fmt.max_shift for _, s in csd_digits(v))]
    return rng.choice(pool, size=size)


def digits_of(fmt, w):
    found = csd_digits(int(w))
    out = [{"nz": 1, "neg": int(neg), "shift": shift} for neg, shift in found]
    return out + [{"nz": 0, "neg": 0, "shift": 0}] * (fmt.digits - len(out))


class Program:
    """Random outputs of a bank: segments of MAC beats, maybe a skip beat, and the results."""

    def __init__(self, bank, seed, outputs=24):
        rng = np.random.default_rng(seed)
        pe, simd, accs = bank.pe, bank.simd, bank.accumulators
        self.beats, self.expected = [], []
        # Accumulators and skip values persist from one output to the next until renewed.
        sums = [[0] * pe for _ in range(accs)]
        skip = [0] * pe
        for _ in range(outputs):
            plan = [(a, int(rng.integers(1, 4))) for a in range(accs)]
            if accs > 1 and rng.random() < 0.3:
                plan = plan[:1]
            with_skip = rng.random() < 0.5
            steps = [(a, k == 0) for a, chunks in plan for k in range(chunks)]
            if with_skip:
                steps.insert(int(rng.integers(0, len(steps) + 1)), ("skip", False))
            for n, (a, start) in enumerate(steps):
                x = lane_values(rng, bank.in_shape, simd)
                beat = {"x": x.tolist(), "last": int(n == len(steps) - 1),
                        "w": [[{"nz": 0, "neg": 0, "shift": 0}] * bank.fmt.digits] * (pe * simd),
                        "bias": [0] * pe}
                if a == "skip":
                    at = int(rng.integers(0, max(simd // pe, 1)))
                    beat.update(skip=1, skip_at=at)
                    skip = [int(x[at * pe + p]) for p in range(pe)]
                else:
                    w = weights_for(rng, bank.fmt, (pe, simd))
                    bias = rng.integers(-50, 50, size=pe)
                    beat.update(acc=a, start=int(start), bias=bias.tolist(),
                                w=[digits_of(bank.fmt, w[p, s]) for p in range(pe)
                                   for s in range(simd)])
                    for p in range(pe):
                        base = (int(bias[p]) if a == 0 else 0) if start else sums[a][p]
                        sums[a][p] = base + int(np.dot(w[p], x))
                beat["tag"] = len(self.expected) % 8
                self.beats.append(beat)
            self.expected.append({"acc": [list(s) for s in sums], "skip": list(skip),
                                  "tag": len(self.expected) % 8})

    def words(self, bank):
        return [[pack_value(bank.in_layout, b)] for b in self.beats]

    def results(self, bank, out):
        got = [unpack_value(bank.out_layout, beat[0]) for beat in out]
        return got


BANKS = [
    dict(pe=2, simd=4, in_shape=unsigned(4), fmt=DigitFormat(1, 0), acc_width=12, accumulators=2,
         tag_shape=unsigned(3)),
    dict(pe=3, simd=6, in_shape=signed(8), fmt=DigitFormat(1, 5), acc_width=20, accumulators=1,
         tag_shape=unsigned(3)),
    dict(pe=2, simd=4, in_shape=signed(5), fmt=DigitFormat(2, 3), acc_width=16, accumulators=2,
         levels_per_stage=1, tag_shape=unsigned(3)),
    dict(pe=4, simd=4, in_shape=unsigned(1), fmt=DigitFormat(1, 0), acc_width=8, accumulators=1,
         levels_per_stage=None, tag_shape=unsigned(3)),
]


@pytest.fixture(scope="module")
def banks(design):
    cores = [MacBank(**kw) for kw in BANKS]
    return cores, design(cores, "engine_bank")


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_bank_matches_the_sums(banks, seed, stall):
    cores, dut = banks
    programs = [Program(core, seed * 10 + n) for n, core in enumerate(cores)]
    inputs = {f"i_{n}": p.words(core) for n, (p, core) in enumerate(zip(programs, cores))}
    res = dut.run(inputs, {f"o_{n}": len(p.expected) for n, p in enumerate(programs)},
                  stall=stall, seed=seed)
    for n, (p, core) in enumerate(zip(programs, cores)):
        got = p.results(core, res.outputs[f"o_{n}"])
        assert len(got) == len(p.expected)
        for k, (g, e) in enumerate(zip(got, p.expected)):
            assert g == e, f"bank {n} output {k} (stall {stall}): {g} != {e}"


def test_bank_takes_a_beat_every_cycle(banks):
    """Without stalls the bank never holds up its feeder."""
    cores, dut = banks
    programs = [Program(core, 99, outputs=40) for core in cores]
    res = dut.run({f"i_{n}": p.words(core) for n, (p, core) in enumerate(zip(programs, cores))},
                  {f"o_{n}": len(p.expected) for n, p in enumerate(programs)}, stall=0.0)
    for n, p in enumerate(programs):
        cycles = res.in_cycles[f"i_{n}"]
        assert cycles == list(range(cycles[0], cycles[0] + len(p.beats)))

"""QSPIReader against QSPIFlashModel: Verilator under random stalls, exact cycle counts.

Every configuration (divider, read latency, flash output delay, word size,
part, CS# rest) is one reader wired to one flash model; they share one
Verilator build, and each run loads new random flash contents through the
``+qspi_flash_hex`` plusarg. A bench reports each flash transaction on a
``log`` stream (address, nibbles, errors), so a test sees that every request
made exactly one 0xEB command, at its address, with no protocol error: an
error, or any transaction too many, is a beat the test did not expect.
"""

import os

import numpy as np
import pytest
from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.lanes import lanes
from hw.qspi import PARTS as READER_PARTS
from hw.qspi import QSPIReader, qspi_bus
from sim.flash_model import ERRORS, ROM_VERILOG, QSPIFlashModel, hex_plusarg, write_hex
from sim.flash_model import PARTS as MODEL_PARTS

SIZE = 1 << 16          # flash model memory in the Verilator bench

# (divider, read latency, model output delay, word bytes, part, cs_high). The
# delay equals the latency, except where it is earlier within the window the
# divider leaves: a nibble stays on the lines for ``divider`` cycles.
CONFIGS = [
    (1, 0, 0, 1, "S25FL128S", 1), (1, 1, 1, 2, "W25Q128JV", 2), (1, 2, 2, 4, "IS25LP128F", 3),
    (1, 3, 3, 8, "S25FL128S", 2), (2, 0, 0, 2, "W25Q128JV", 1), (2, 1, 1, 4, "IS25LP128F", 2),
    (2, 2, 1, 1, "S25FL128S", 2), (2, 3, 3, 8, "W25Q128JV", 4), (3, 0, 0, 4, "IS25LP128F", 2),
    (3, 1, 1, 1, "S25FL128S", 1), (3, 3, 1, 2, "W25Q128JV", 2), (3, 2, 2, 8, "S25FL128S", 2),
    (5, 3, 3, 2, "IS25LP128F", 5),
]


def _timing_only(**kwargs):
    """A reader asked only for its :meth:`~hw.qspi.QSPIReader.timing`."""
    reader = QSPIReader(**kwargs)
    reader._MustUse__silence = True
    return reader


def cfg_id(n):
    d, lat, delay, w, part, cs = CONFIGS[n]
    return f"div{d}-lat{lat}-delay{delay}-w{w}-{part}-cs{cs}"


class FlashBench(wiring.Component):
    """A reader and a flash model, with ports of integer lanes for the stream bench.

    ``req`` beats are ``[address, length]``; ``o`` is the reader's words; ``log``
    has a beat ``[address, data nibbles, errors]`` per flash transaction, where
    errors holds the transaction's error bits, the model's sticky errors
    shifted by 8 and a lost-log flag at bit 16. A new sticky error outside a
    transaction also makes a beat, so it cannot go unnoticed.
    """

    def __init__(self, divider, latency, delay, word_bytes, part, cs_high, hex_file):
        self.reader = QSPIReader(word_bytes=word_bytes, divider=divider, read_latency=latency,
                                 part=READER_PARTS[part], cs_high=cs_high)
        self.flash = QSPIFlashModel(part=part, output_delay=delay, hex_file=hex_file, size=SIZE)
        super().__init__({"req": In(stream.Signature(lanes(unsigned(32), 2))),
                          "o": Out(stream.Signature(lanes(unsigned(8), word_bytes))),
                          "log": Out(stream.Signature(lanes(unsigned(32), 3)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = r = self.reader
        m.submodules.flash = f = self.flash
        wiring.connect(m, r.bus, f.bus)
        m.d.comb += [r.req.payload.addr.eq(self.req.payload[0]),
                     r.req.payload.length.eq(self.req.payload[1]),
                     r.req.valid.eq(self.req.valid), self.req.ready.eq(r.req.ready)]
        wiring.connect(m, r.o, wiring.flipped(self.o))
        m.submodules.log = q = fifo.SyncFIFOBuffered(width=96, depth=64)
        seen, lost = Signal(8), Signal()
        m.d.sync += seen.eq(f.errors)
        event = f.txn | (f.errors != seen)
        with m.If(event & ~q.w_rdy):
            m.d.sync += lost.eq(1)
        nibbles = Mux(f.txn, f.txn_nibbles, 0xFFFFFFFF)     # all ones: an error, no transaction
        m.d.comb += [q.w_en.eq(event),
                     q.w_data.eq(Cat(f.txn_addr, Const(0, 32 - len(f.txn_addr)), nibbles,
                                     f.txn_errors, f.errors, lost, Const(0, 15))),
                     self.log.payload.as_value().eq(q.r_data), self.log.valid.eq(q.r_rdy),
                     q.r_en.eq(self.log.ready)]
        return m


@pytest.fixture(scope="module")
def bench(design):
    return design([FlashBench(*c, hex_file="") for c in CONFIGS], "qspi",
                  extra_verilog=ROM_VERILOG)


def _image(rng):
    return rng.integers(0, 256, size=SIZE, dtype=np.uint8).tobytes()


def _expect(image, reqs, word_bytes):
    """Words and log beats a list of ``(address, length)`` requests must give."""
    words, log = [], []
    for addr, length in reqs:
        nbytes = -(-length // word_bytes) * word_bytes
        data = [image[(addr + i) % SIZE] for i in range(nbytes)]
        words += [data[i:i + word_bytes] for i in range(0, nbytes, word_bytes)]
        if nbytes:
            log.append([addr, 2 * nbytes, 0])
    return words, log


def _flash_file(bench, image, tag):
    path = bench.build_dir / f"flash_{os.getpid()}_{tag}.hex"
    write_hex(path, image)
    return [hex_plusarg(path)]


def _requests(rng, count, max_len):
    reqs = []
    for _ in range(count):
        pick = rng.random()
        if pick < 0.15:       # across the end of the model's memory: it wraps
            addr = SIZE - int(rng.integers(1, 40))
        elif pick < 0.3:      # anywhere in the 24-bit space: every address bit is checked
            addr = int(rng.integers(0, 1 << 24))
        else:
            addr = int(rng.integers(0, SIZE))
        reqs.append((addr, int(rng.integers(1, max_len + 1))))
    return reqs


@pytest.mark.parametrize("case", range(len(CONFIGS)), ids=cfg_id)
def test_reads_under_random_stalls(bench, case):
    word_bytes = CONFIGS[case][3]
    rng = np.random.default_rng(100 + case)
    for seed, stall in enumerate([0.3, 0.7]):
        image = _image(rng)
        reqs = _requests(rng, 6, 120)
        reqs.insert(int(rng.integers(0, 6)), (int(rng.integers(0, SIZE)), 0))  # a no-op
        words, log = _expect(image, reqs, word_bytes)
        bench.check({f"req_{case}": [list(r) for r in reqs]},
                    {f"o_{case}": words, f"log_{case}": log}, stall=stall, seed=seed,
                    extra=seed == 0, plusargs=_flash_file(bench, image, f"{case}_{seed}"))


@pytest.mark.parametrize("case", range(len(CONFIGS)), ids=cfg_id)
def test_exact_cycles_without_stalls(bench, case):
    """Back-to-back requests: every request and every word in the cycle the contract says."""
    divider, latency, _, word_bytes, part, cs_high = CONFIGS[case]
    reader = _timing_only(word_bytes=word_bytes, divider=divider, read_latency=latency,
                          part=READER_PARTS[part], cs_high=cs_high)
    rng = np.random.default_rng(200 + case)
    image = _image(rng)
    reqs = _requests(rng, 3, 40) + [(int(rng.integers(0, SIZE)), 0), (0x1234, 600)]
    words, log = _expect(image, reqs, word_bytes)
    res = bench.check({f"req_{case}": [list(r) for r in reqs]},
                      {f"o_{case}": words, f"log_{case}": log}, stall=0.0, extra=False,
                      plusargs=_flash_file(bench, image, f"t{case}"))
    accepted, out = res.in_cycles[f"req_{case}"], res.out_cycles[f"o_{case}"]
    expect_in, expect_out = [accepted[0]], []
    for addr, length in reqs:
        t = reader.timing(length)
        a = expect_in[-1]
        expect_out += [a + t.first_word + k * 2 * word_bytes * divider
                       for k in range(-(-length // word_bytes))]
        if length:
            assert t.last_word == t.first_word + (-(-length // word_bytes) - 1) \
                * 2 * word_bytes * divider
        expect_in.append(a + t.next_request)
    assert accepted == expect_in[:-1]
    assert out == expect_out


def test_divider_one_reads_a_nibble_per_cycle(bench):
    """The headline number: N bytes at divider 1 take 2N cycles plus a fixed overhead."""
    case = 0                                   # divider 1, latency 0, bytes
    reader = _timing_only(word_bytes=1, divider=1, read_latency=0,
                          part=READER_PARTS["S25FL128S"], cs_high=1)
    n = 2000
    # 8 instruction + 6 address + 2 mode + 4 dummy clocks, 2N - 1 data clocks, one cycle
    # of CS# set-up, the read latency and 2 cycles of output FIFO.
    assert reader.timing(n).last_word == 2 * n + 23
    image = _image(np.random.default_rng(7))
    words, log = _expect(image, [(0x42, n)], 1)
    res = bench.check({f"req_{case}": [[0x42, n]]}, {f"o_{case}": words, f"log_{case}": log},
                      stall=0.0, extra=False, plusargs=_flash_file(bench, image, "rate"))
    assert res.out_cycles[f"o_{case}"][-1] - res.in_cycles[f"req_{case}"][0] == 2 * n + 23
    gaps = np.diff(res.out_cycles[f"o_{case}"])
    assert set(gaps.tolist()) == {2}           # a byte every 2 cycles: 400 Mbit/s at 100 MHz


# --- Amaranth simulator: the model refuses what a real part would not do ----------------

def _drive(model, cycles):
    """Drive the model's bus with ``(cs_n, sck, dq_o, dq_oe)`` per cycle; return its errors."""
    sim = Simulator(model)
    sim.add_clock(1e-8)
    out = {}

    async def bench(ctx):
        for cs_n, sck, dq_o, dq_oe in cycles:
            ctx.set(model.bus.cs_n, cs_n)
            ctx.set(model.bus.sck, sck)
            ctx.set(model.bus.dq_o, dq_o)
            ctx.set(model.bus.dq_oe, dq_oe)
            await ctx.tick()
        ctx.set(model.bus.cs_n, 1)
        ctx.set(model.bus.sck, 0)
        await ctx.tick().repeat(3)
        out["errors"] = ctx.get(model.errors)
        out["commands"] = ctx.get(model.commands)
    sim.add_testbench(bench)
    sim.run()
    return out


def _command(instr=0xEB, addr=0x123456, mode=0xFF, dummy=4, data=4, oe=0b1111, clock=0b10):
    """Bus cycles of one transaction at divider 1: CS# set-up, then one SPI clock a cycle."""
    cyc = [(0, 0, 0b1100 | instr >> 7, 0b1101)]
    cyc += [(0, clock, 0b1100 | (instr >> (7 - i)) & 1, 0b1101) for i in range(8)]
    cyc += [(0, clock, (addr >> (20 - 4 * i)) & 0xF, oe) for i in range(6)]
    cyc += [(0, clock, (mode >> (4 - 4 * i)) & 0xF, oe) for i in range(2)]
    cyc += [(0, clock, 0, 0)] * (dummy + data)
    return cyc + [(0, 0, 0, 0), (1, 0, 0, 0)]


def _errors(part, cycles):
    res = _drive(QSPIFlashModel(part=part, image=bytes(range(256))), cycles)
    return {k for k, bit in ERRORS.items() if res["errors"] >> bit & 1}, res["commands"]


def test_model_accepts_a_clean_command():
    assert _errors("S25FL128S", _command()) == (set(), 1)


@pytest.mark.parametrize("part,mode,flagged", [
    ("S25FL128S", 0xA5, True), ("S25FL128S", 0x20, False), ("IS25LP128F", 0xA0, True),
    ("W25Q128JV", 0x20, True), ("W25Q128JV", 0xEF, True), ("W25Q128JV", 0xCF, False)])
def test_model_flags_continuous_read_mode_bits(part, mode, flagged):
    assert _errors(part, _command(mode=mode))[0] == ({"MODE"} if flagged else set())


def test_model_flags_protocol_errors():
    assert _errors("S25FL128S", _command(instr=0x6B)) == ({"CMD"}, 0)
    # Address nibbles with a line not driven.
    assert _errors("S25FL128S", _command(oe=0b0111))[0] == {"FLOAT"}
    # The reader still drives while the flash answers.
    clash = _command()
    clash[-4] = (0, 0b10, 0, 0b0001)
    assert _errors("S25FL128S", clash)[0] == {"CLASH"}
    # CS# rises before the data: the command never completes.
    assert _errors("S25FL128S", _command(dummy=2, data=0))[0] == {"SHORT"}
    # SCLK toggling while CS# is high; CS# falling while SCLK is high.
    assert _errors("S25FL128S", [(1, 0b10, 0, 0), (1, 0, 0, 0)] + _command())[0] == {"IDLE"}
    assert _errors("S25FL128S", [(1, 0b11, 0, 0), (0, 0b11, 0, 0)])[0] >= {"CS"}
    # Divider 2 (rising edge at a cycle boundary) with the data changing on that boundary.
    edge = [(0, 0b00, 0b1101, 0b1101), (0, 0b11, 0b1100, 0b1101), (0, 0b00, 0, 0), (1, 0, 0, 0)]
    assert "SETUP" in _errors("S25FL128S", edge)[0]


def test_parts_agree_between_reader_and_model():
    for name, part in READER_PARTS.items():
        model = MODEL_PARTS[name]
        assert (part.mode_clocks, part.dummy_clocks) == (model.mode_clocks, model.dummy_clocks)


def test_bus_signatures_match():
    from sim.flash_model import _bus
    assert qspi_bus() == _bus()


def test_reader_refuses_bad_parameters():
    for kwargs in [{"word_bytes": 0}, {"divider": 0}, {"read_latency": -1},
                   {"addr_width": 22}, {"cs_high": 0}]:
        with pytest.raises(ValueError):
            QSPIReader(**kwargs)


def test_reader_and_model_in_the_amaranth_simulator():
    """The small-image path of the model, and a reader at divider 2 under stalls."""
    import random
    rng = random.Random(5)
    image = bytes(rng.randrange(256) for _ in range(512))
    reader = QSPIReader(word_bytes=2, divider=2, read_latency=1)
    flash = QSPIFlashModel(image=image, output_delay=1)
    m = Module()
    m.submodules.reader, m.submodules.flash = reader, flash
    wiring.connect(m, reader.bus, flash.bus)
    reqs = [(0x1F0, 20), (0x7, 3)]
    expect = [image[(a + i) % 512] for a, n in reqs for i in range(-(-n // 2) * 2)]
    got, state = [], {}
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def bench(ctx):
        for addr, length in reqs:
            ctx.set(reader.req.payload.addr, addr)
            ctx.set(reader.req.payload.length, length)
            ctx.set(reader.req.valid, 1)
            await ctx.tick().until(reader.req.ready)
        ctx.set(reader.req.valid, 0)

    async def consumer(ctx):
        while len(got) < len(expect):
            ready = rng.random() < 0.4
            ctx.set(reader.o.ready, ready)
            _, _, valid, word = await ctx.tick().sample(reader.o.valid, reader.o.payload)
            if valid and ready:
                got.extend(int(b) for b in word)
        ctx.set(reader.o.ready, 0)
        await ctx.tick().repeat(20)
        state["errors"], state["commands"] = ctx.get(flash.errors), ctx.get(flash.commands)
    sim.add_testbench(bench)
    sim.add_testbench(consumer)
    sim.run()
    assert got == expect
    assert state == {"errors": 0, "commands": 2}

"""The layer engine's stream decoder in Verilator: random command sequences, data and stalls."""

import numpy as np
import pytest
from stimuli import pack_value

from hw.csd import csd_digits
from hw.engine import packing as P
from hw.engine.decode import StreamDecoder
from hw.engine.layouts import DigitFormat
from hw.engine.packing import Command, Kind

DECODERS = [
    dict(fmt=DigitFormat(1, 0), lanes=8, word_bytes=1, table_depth=16, t_width=16, b_width=16,
         count_width=12, levels_max=15),
    dict(fmt=DigitFormat(2, 3), lanes=4, word_bytes=4, table_depth=64, positions_max=8,
         replay_beats=8, t_width=20, b_width=24, count_width=12, levels_max=31),
    dict(fmt=DigitFormat(1, 7), lanes=8, word_bytes=4, table_depth=256, positions_max=16,
         replay_beats=16, t_width=24, b_width=20, count_width=14, levels_max=15),
    dict(fmt=DigitFormat(3, 5), lanes=5, word_bytes=1, table_depth=32, positions_max=4,
         replay_beats=4, t_width=12, b_width=12, count_width=10, levels_max=7),
    # An item a cycle, as below ONE_CYCLE_DECODE_MHZ (the ULX3S engine's 25 MHz).
    dict(fmt=DigitFormat(1, 7), lanes=8, word_bytes=4, table_depth=256, positions_max=16,
         replay_beats=16, t_width=24, b_width=20, count_width=14, levels_max=15,
         cycles_per_item=1),
    # Three cycles an item, the decode's outcome registered (the fastest clocks).
    dict(fmt=DigitFormat(2, 3), lanes=4, word_bytes=4, table_depth=64, positions_max=8,
         replay_beats=8, t_width=20, b_width=24, count_width=12, levels_max=31,
         cycles_per_item=3),
]


def pool_of(fmt):
    """Every integer weight ``fmt`` can hold."""
    hi = 2 ** (fmt.max_shift + 1)
    return [v for v in range(-hi, hi + 1) if len(csd_digits(v)) <= fmt.digits
            and all(s <= fmt.max_shift for _, s in csd_digits(v))]


class Model:
    """What a decoder must put out for a sequence of commands and their data."""

    def __init__(self, dec):
        self.dec = dec
        self.table = [0] * dec.table_depth       # words, as stored
        self.w, self.t, self.b = [], [], []

    def run(self, cmd, raw):
        dec, g, fmt = self.dec, self.dec.lanes, self.dec.fmt
        k = cmd.kind
        if k in (Kind.TRIT5, Kind.TERN2, Kind.CODES):
            words, errors = [], []
            if k == Kind.TRIT5:
                codes = []
                for byte in raw:
                    codes += [3] * 5 if byte > 242 else [(byte // 3 ** j) % 3 for j in range(5)]
                codes = codes[:cmd.count]
            elif k == Kind.TERN2:
                codes = P.decode_bits(raw, cmd.count, 2)
            if k != Kind.CODES:
                words = [[0, 0b01, 0b11, 0][c] for c in codes]
                errors = [c == 3 for c in codes]
            else:
                stored = P.decode_bits(raw, cmd.codes, cmd.bits)
                p, q = cmd.positions, max(cmd.per_pos, 1)
                kq = p > 1
                for n in range(cmd.count):
                    pos = (n // q) % p
                    c = stored[(n // (p * q)) * q + n % q] if cmd.replay else stored[n]
                    errors.append(False)
                    addr = c * dec.positions_max + pos if kq else c
                    words.append(self.table[addr])
            for at in range(0, cmd.count, g):
                lane_words = words[at:at + g]
                n = len(lane_words)
                self.w.append({"w": lane_words + [0] * (g - n), "nlanes": n,
                               "last": int(at + g >= cmd.count),
                               "error": int(any(errors[at:at + g]))})
        elif k == Kind.TABLE:
            words = P.decode_bits(raw, cmd.count, fmt.bits) if fmt.bits <= 16 else \
                [int.from_bytes(raw, "little") >> (n * fmt.bits) & ((1 << fmt.bits) - 1)
                 for n in range(cmd.count)]
            for n, word in enumerate(words):
                if cmd.positions > 1:
                    addr = (n // cmd.positions) * dec.positions_max + n % cmd.positions
                else:
                    addr = n
                self.table[addr] = word
        elif k == Kind.THRESH:
            rows = P.decode_thresholds(raw, cmd.count, cmd.levels, cmd.bits)
            flat = [v for row in rows for v in row]
            self.t += [{"value": v, "last": int(n == len(flat) - 1)} for n, v in enumerate(flat)]
        elif k == Kind.BIAS:
            vals = P.decode_signed_bits(raw, cmd.count, cmd.bits)
            self.b += [{"value": v, "last": int(n == len(vals) - 1)} for n, v in enumerate(vals)]

    def beats(self):
        """Expected words per output port."""
        dec, lay = self.dec, self.dec.w_layout
        out = {"w": [], "t": [], "b": []}
        for beat in self.w:
            word = sum(v << (j * dec.fmt.bits) for j, v in enumerate(beat["w"]))
            word |= beat["nlanes"] << lay["nlanes"].offset
            word |= beat["last"] << lay["last"].offset
            word |= beat["error"] << lay["error"].offset
            out["w"].append([word])
        out["t"] = [[pack_value(dec.t_layout, v)] for v in self.t]
        out["b"] = [[pack_value(dec.b_layout, v)] for v in self.b]
        return out


def sorted_row(rng, levels, width):
    """A threshold row: linear steps mostly, flat ends, an odd jump, the extremes."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    style = rng.integers(0, 4)
    if style == 0:                               # anything sorted, extremes included
        return sorted(int(v) for v in rng.integers(lo, hi, size=levels, endpoint=True))
    if style == 1:                               # all equal, maybe at an extreme
        return [int(rng.choice([lo, hi, rng.integers(lo, hi)]))] * levels
    step = rng.uniform(0, (hi - lo) / max(levels, 1) / 2)
    start = rng.uniform(lo, hi - step * levels)
    row = [int(np.floor(start + step * n)) for n in range(levels)]
    flat = rng.integers(0, levels // 3 + 1)
    row = [row[flat]] * flat + row[flat:]
    if style == 3 and levels > 2:                # a jump: escapes
        at = int(rng.integers(1, levels))
        row = row[:at] + [min(v + int(rng.integers(0, (hi - row[-1]) + 1)), hi)
                          for v in row[at:]]
    return sorted(min(max(v, lo), hi) for v in row)


class Program:
    """Random commands for one decoder and the bytes of their data."""

    def __init__(self, dec, seed=None, commands=24, invalid=True):
        self.dec, self.model = dec, Model(dec)
        self.commands, self.data, self.raws = [], b"", []
        if seed is not None:
            self._random(np.random.default_rng(seed), commands, invalid)

    def add(self, cmd, raw):
        assert self.dec.check(cmd) is None, self.dec.check(cmd)
        self.commands.append(cmd)
        self.raws.append(raw)
        self.data += raw
        self.model.run(cmd, raw)

    def align(self):
        """End the stream on a word of the flash reader, as an inference does."""
        self.add(Command(Kind.SKIP, -len(self.data) % self.dec.word_bytes),
                 bytes(-len(self.data) % self.dec.word_bytes))

    def _random(self, rng, commands, invalid):
        dec = self.dec
        g, fmt = dec.lanes, dec.fmt
        pool = pool_of(fmt)
        entries = 0                                # table entries loaded
        kq_positions = 1
        for _ in range(commands):
            choice = rng.choice(["trit5", "tern2", "codes", "table", "thresh", "bias", "skip"],
                                p=[.2, .15, .24, .1, .14, .13, .04])
            if choice == "codes" and not entries:
                choice = "table"
            if choice == "trit5":
                count = self._count(rng, g)
                cmd = Command(Kind.TRIT5, count)
                raw = bytearray(P.trits5(rng.integers(-1, 2, size=count)))
                if invalid and raw and rng.random() < 0.2:
                    raw[int(rng.integers(0, len(raw)))] = int(rng.integers(243, 256))
                raw = bytes(raw)
            elif choice == "tern2":
                count = self._count(rng, g)
                cmd = Command(Kind.TERN2, count)
                codes = rng.integers(0, 3, size=count)
                if invalid and count and rng.random() < 0.3:
                    codes[int(rng.integers(0, count))] = 3
                raw = P.bits(codes, 2)
            elif choice == "table":
                kq_positions = 1
                if dec.positions_max > 1 and rng.random() < 0.6:
                    kq_positions = int(rng.integers(2, dec.positions_max + 1))
                    kernels = dec.table_depth // dec.positions_max
                    count = kq_positions * int(rng.integers(1, kernels + 1))
                else:
                    count = int(rng.integers(1, dec.table_depth + 1))
                cmd = Command(Kind.TABLE, count, positions=kq_positions)
                raw = P.table(rng.choice(pool, size=count), fmt)
                entries = count
            elif choice == "codes":
                if kq_positions > 1:
                    kernels = entries // kq_positions
                    bits = max(1, (kernels - 1).bit_length())
                    per_pos = g * int(rng.integers(1, 4))
                    replay = dec.replay_beats and per_pos // g <= dec.replay_beats and \
                        rng.random() < 0.5
                    if replay:
                        blocks = int(rng.integers(1, 3))
                        count = blocks * kq_positions * per_pos
                    else:
                        count = self._count(rng, g)
                    cmd = Command(Kind.CODES, count, bits=bits, positions=kq_positions,
                                  per_pos=per_pos, replay=bool(replay))
                    codes = rng.integers(0, kernels, size=cmd.codes)
                    if cmd.codes and rng.random() < 0.2:
                        # Beyond the kernels loaded: whatever the table holds there.
                        codes[int(rng.integers(0, cmd.codes))] = (1 << bits) - 1
                else:
                    bits = int(rng.integers(max(1, (entries - 1).bit_length()),
                                            dec.addr_bits + 1))
                    count = self._count(rng, g)
                    cmd = Command(Kind.CODES, count, bits=bits)
                    codes = rng.integers(0, entries, size=count)
                raw = P.bits(codes, cmd.bits)
            elif choice == "thresh":
                width = int(rng.integers(1, dec.t_width + 1))
                levels = int(rng.integers(1, dec.levels_max + 1))
                rows = [sorted_row(rng, levels, width) for _ in range(int(rng.integers(1, 5)))]
                cmd = Command(Kind.THRESH, len(rows), bits=width, levels=levels)
                raw = P.thresholds(rows, width)
            elif choice == "skip":
                cmd = Command(Kind.SKIP, int(rng.integers(0, 10)))
                raw = bytes(rng.integers(0, 256, size=cmd.count).tolist())
            else:
                bits = int(rng.integers(1, dec.b_width + 1))
                count = int(rng.integers(0, 12))
                lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
                vals = rng.integers(lo, hi, size=count, endpoint=True)
                cmd = Command(Kind.BIAS, count, bits=bits)
                raw = P.signed_bits(vals, bits)
            self.add(cmd, raw)

    @staticmethod
    def _count(rng, g):
        if rng.random() < 0.5:
            return g * int(rng.integers(0, 12))
        return int(rng.integers(0, 12 * g))

    def inputs(self):
        dec, wb = self.dec, self.dec.word_bytes
        data = self.data + bytes(-len(self.data) % wb)
        words = [list(data[n:n + wb]) for n in range(0, len(data), wb)]
        cmds = [[pack_value(dec.cmd_layout, dec.command(c))] for c in self.commands]
        return words, cmds


@pytest.fixture(scope="module")
def decoders(design):
    cores = [StreamDecoder(**kw) for kw in DECODERS]
    return cores, design(cores, "engine_decode")


def run_programs(dut, cores, programs, *, stall, seed, extra=False):
    inputs, expected = {}, {}
    for n, (core, prog) in enumerate(zip(cores, programs)):
        words, cmds = prog.inputs()
        inputs[f"i_{n}"], inputs[f"c_{n}"] = words, cmds
        for port, beats in prog.model.beats().items():
            expected[f"{port}_{n}"] = beats
    if extra:
        return dut.check(inputs, expected, stall=stall, seed=seed)
    res = dut.run(inputs, {k: len(v) for k, v in expected.items()}, stall=stall, seed=seed)
    dut._compare(res, {k: [[int(x) for x in b] for b in v] for k, v in expected.items()},
                 stall, seed)
    return res


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("stall", [0.0, 0.3, 0.7])
def test_decoder_matches_the_model(decoders, seed, stall):
    cores, dut = decoders
    programs = [Program(core, seed * 100 + n) for n, core in enumerate(cores)]
    run_programs(dut, cores, programs, stall=stall, seed=seed)


def test_decoder_invents_nothing(decoders):
    """Asked for one beat more on any output, the decoder never gives it."""
    cores, dut = decoders
    programs = [Program(core, 77 + n, commands=12) for n, core in enumerate(cores)]
    run_programs(dut, cores, programs, stall=0.4, seed=5, extra=True)


def steady_program(dec, rng):
    """Long commands of every kind, their sizes chosen so that each one runs at full rate."""
    prog, g = Program(dec), dec.lanes
    spans = []                                   # (port, first beat, beats, bytes)

    def add(port, cmd, raw, beats):
        first = {"w": len(prog.model.w), "t": len(prog.model.t), "b": len(prog.model.b)}[port]
        prog.add(cmd, raw)
        spans.append((port, cmd, first, beats, len(raw)))

    entries = min(dec.table_depth, 8)
    prog.add(Command(Kind.TABLE, entries), P.table(rng.choice(pool_of(dec.fmt), entries),
                                                   dec.fmt))
    for _ in range(2):
        count = 5 * g * 4
        add("w", Command(Kind.TRIT5, count), P.trits5(rng.integers(-1, 2, count)), count // g)
    count = 16 * g
    add("w", Command(Kind.TERN2, count), P.bits(rng.integers(0, 3, count), 2), 16)
    for b in (1, 3):
        if b <= dec.addr_bits:
            add("w", Command(Kind.CODES, count, bits=b),
                P.bits(rng.integers(0, min(entries, 1 << b), count), b), 16)
    levels, width = min(15, dec.levels_max), min(16, dec.t_width)
    rows = [[int(v) for v in np.floor(np.linspace(-1000, 1000, levels) / 7.3)] for _ in range(4)]
    add("t", Command(Kind.THRESH, 4, bits=width, levels=levels), P.thresholds(rows, width),
        4 * levels)
    for b in (8, min(16, dec.b_width)):
        vals = rng.integers(-(1 << (b - 1)), 1 << (b - 1), 16)
        add("b", Command(Kind.BIAS, 16, bits=b), P.signed_bits(vals, b), 16)
    return prog, spans


def test_decoder_throughput(decoders):
    """Without stalls every command runs as fast as its items, input bytes or output beats allow.

    The decoder takes an item every ``cycles_per_item`` cycles (a byte's worth of codes, a
    threshold, a bias); a weight command leaves at most a beat per cycle and takes at most a
    byte per cycle; a threshold command gives one threshold an item; consecutive weight
    commands leave no gap. ``StreamDecoder.cycles``, which the engine's timing model
    uses, says so for each command.
    """
    cores, dut = decoders
    rng = np.random.default_rng(3)
    made = [steady_program(core, rng) for core in cores]
    res = run_programs(dut, cores, [p for p, _ in made], stall=0.0, seed=0)
    for n, (core, (prog, spans)) in enumerate(zip(cores, made)):
        for port, cmd, first, beats, size in spans:
            cycles = res.out_cycles[f"{port}_{n}"][first:first + beats]
            took = cycles[-1] - cycles[0] + 1
            bound = max(size, core.cycles(cmd))
            print(f"decoder {n} (lanes {core.lanes}, {core.word_bytes} B/word): {cmd.kind.name} "
                  f"{cmd.count} bits {cmd.bits}: {beats} beats, {size} bytes, {took} cycles")
            if cmd.kind == Kind.THRESH:
                # The first row waits for its first bytes; from then on, one an item.
                steady = cycles[cmd.levels:]
                assert set(np.diff(steady)) == {core.cycles_per_item}, (n, cycles)
            else:
                assert took <= bound + 1, (n, cmd, took, bound)
        # Weight commands of whole beats follow each other without a gap.
        w = res.out_cycles[f"w_{n}"]
        runs = [(first, beats, size, core.cycles(cmd))
                for port, cmd, first, beats, size in spans if port == "w"]
        took = w[runs[-1][0] + runs[-1][1] - 1] - w[runs[0][0]] + 1
        bound = sum(max(size, cycles) for _, _, size, cycles in runs)
        print(f"decoder {n}: {len(runs)} weight commands in {took} cycles (bound {bound})")
        assert took <= bound + 1, (n, took, bound)


def test_inferences_back_to_back(decoders):
    """An inference's stream padded to whole words by SKIP; the next one starts on a word."""
    cores, dut = decoders
    programs = []
    for n, core in enumerate(cores):
        once = Program(core, 500 + n, commands=10)
        once.align()
        twice = Program(core)
        for _ in range(2):
            for cmd, raw in zip(once.commands, once.raws):
                twice.add(cmd, raw)
        assert len(twice.data) % core.word_bytes == 0
        programs.append(twice)
    run_programs(dut, cores, programs, stall=0.3, seed=4)


def test_decoder_refuses_what_it_cannot_run():
    dec = StreamDecoder(fmt=DigitFormat(1, 7), lanes=8, table_depth=64, positions_max=8,
                        replay_beats=2, t_width=16, b_width=12, count_width=10, levels_max=15)
    dec._MustUse__silence = True                  # only its checks are used
    cases = [
        (Command(Kind.CODES, 8, bits=7), "7-bit codes do not fit a table of 64 entries"),
        (Command(Kind.CODES, 8, bits=2, positions=9, per_pos=8), "9 positions, more than"),
        (Command(Kind.CODES, 8, bits=4, positions=3, per_pos=8),
         "do not fit a table of 64 entries at 8 positions"),
        (Command(Kind.CODES, 12, bits=3, positions=3, per_pos=4), "multiple of lanes"),
        (Command(Kind.CODES, 72, bits=3, positions=3, per_pos=24, replay=True),
         "needs 3 beats, more than replay_beats = 2"),
        (Command(Kind.TABLE, 33, positions=3), "needs 88 places, more than table_depth"),
        (Command(Kind.THRESH, 1, bits=17, levels=3), "wider than t_width = 16"),
        (Command(Kind.THRESH, 1, bits=8, levels=16), "16 levels, more than levels_max"),
        (Command(Kind.BIAS, 1, bits=13), "wider than b_width = 12"),
        (Command(Kind.TRIT5, 1024), "count 1024 needs more than count_width = 10"),
    ]
    for cmd, message in cases:
        assert message in dec.check(cmd), (cmd, dec.check(cmd))
        with pytest.raises(ValueError, match=f"{cmd.kind.name} command: "):
            dec.command(cmd)
    # Replay counts the codes in the data, not the weights.
    cmd = Command(Kind.CODES, 48, bits=3, positions=3, per_pos=16, replay=True)
    assert dec.check(cmd) is None and dec.command(cmd)["count"] == 16
    for kw, message in [({"table_depth": 48}, "table_depth must be a power of two"),
                        ({"positions_max": 3}, "positions_max must be a power of two"),
                        ({"lanes": 0}, "lanes must be 1 or more"),
                        ({"cycles_per_item": 4}, "cycles_per_item must be 1, 2 or 3")]:
        with pytest.raises(ValueError, match=f"StreamDecoder: {message}"):
            StreamDecoder(**kw)

"""The layer engine's weight stream format (hw/engine/packing.py): layouts, round trips, sizes."""

from itertools import pairwise

import numpy as np
import pytest

from hw.csd import csd_digits
from hw.engine import packing as P
from hw.engine.layouts import DigitFormat
from hw.engine.packing import Command, Kind
from sim.golden import thresholds_for_requant


def test_trits5_layout():
    # byte = t0 + 3 t1 + 9 t2 + 27 t3 + 81 t4 with trits 0, +1, -1 -> 0, 1, 2.
    assert P.trits5([1, 0, -1, 1, 1]) == bytes([1 + 0 + 9 * 2 + 27 + 81])
    assert P.trits5([-1] * 5) == bytes([242])
    # The last byte is completed with zero weights.
    assert P.trits5([1, 0, -1, 1, 1, -1, 1]) == bytes([127, 2 + 3])
    assert P.trits5([]) == b""


@pytest.mark.parametrize("seed", range(5))
def test_trits5_round_trip(seed):
    rng = np.random.default_rng(seed)
    for count in [0, 1, 4, 5, 6, int(rng.integers(7, 400))]:
        w = rng.integers(-1, 2, size=count).tolist()
        data = P.trits5(w)
        assert len(data) == P.trits5_size(count) == -(-count // 5)
        assert P.decode_trits5(data, count) == w
        assert max(data, default=0) <= 242


def test_trits5_rejects():
    with pytest.raises(ValueError, match="outside"):
        P.trits5([0, 2])
    with pytest.raises(ValueError, match="above 242"):
        P.decode_trits5(bytes([243]), 5)
    with pytest.raises(ValueError, match="not zero"):
        P.decode_trits5(bytes([81]), 4)               # a fifth weight where the pad is
    with pytest.raises(ValueError, match="expected 1 byte"):
        P.decode_trits5(bytes(2), 5)


def test_bits_layout():
    # LSB first, the first field in the low bits of the first byte.
    assert P.bits([1, 2, 3, 0, 1], 3) == (1 | 2 << 3 | 3 << 6 | 1 << 12).to_bytes(2, "little")
    assert P.bits([0xABCD], 16) == bytes([0xCD, 0xAB])
    assert P.bits([1] * 9, 1) == bytes([0xFF, 0x01])
    assert P.signed_bits([-1, 1], 3) == bytes([0b001111])


@pytest.mark.parametrize("b", range(1, 17))
def test_bits_round_trip(b):
    rng = np.random.default_rng(b)
    for count in [0, 1, 7, 8, int(rng.integers(9, 300))]:
        v = rng.integers(0, 1 << b, size=count)
        v[: count // 4] = (1 << b) - 1
        data = P.bits(v, b)
        assert len(data) == P.bits_size(count, b) == -(-count * b // 8)
        assert P.decode_bits(data, count, b) == v.tolist()
        s = rng.integers(-(1 << (b - 1)), 1 << (b - 1), size=count)
        s[: count // 4] = -(1 << (b - 1))
        data = P.signed_bits(s, b)
        assert len(data) == P.bits_size(count, b)
        assert P.decode_signed_bits(data, count, b) == s.tolist()


def test_wide_signed_fields():
    v = [-(1 << 39), (1 << 39) - 1, -5, 0]
    assert P.decode_signed_bits(P.signed_bits(v, 40), 4, 40) == v
    v = [-(1 << 63), (1 << 63) - 1, 12345]
    assert P.decode_signed_bits(P.signed_bits(v, 64), 3, 64) == v


def test_bits_rejects():
    for bad in (0, 17):
        with pytest.raises(ValueError, match="1 to 16"):
            P.bits([0], bad)
    with pytest.raises(ValueError, match=r"outside \[0, 7\]"):
        P.bits([8], 3)
    with pytest.raises(ValueError, match=r"outside \[-4, 3\]"):
        P.signed_bits([4], 3)
    with pytest.raises(ValueError, match="not an integer"):
        P.bits([1.5], 3)
    with pytest.raises(ValueError, match="not zero"):
        P.decode_bits(bytes([0x80]), 1, 3)


def fmt_pool(fmt):
    hi = 2 ** (fmt.max_shift + 1)
    return [v for v in range(-hi, hi + 1) if len(csd_digits(v)) <= fmt.digits
            and all(s <= fmt.max_shift for _, s in csd_digits(v))]


@pytest.mark.parametrize("fmt", [DigitFormat(1, 0), DigitFormat(1, 7), DigitFormat(2, 3),
                                 DigitFormat(3, 5), DigitFormat(4, 15)])
def test_table_round_trip(fmt):
    rng = np.random.default_rng(fmt.bits)
    entries = rng.choice(fmt_pool(fmt), size=37).tolist()
    data = P.table(entries, fmt)
    assert len(data) == P.table_size(37, fmt) == -(-37 * fmt.bits // 8)
    assert P.decode_table(data, 37, fmt) == entries
    # Each entry is the format's own word, packed like any field.
    words = [fmt.encode(e) for e in entries]
    assert int.from_bytes(data, "little") == sum(w << (n * fmt.bits) for n, w in enumerate(words))


def test_table_rejects_what_the_format_cannot_hold():
    with pytest.raises(ValueError, match="table entry 1: weight 3 needs"):
        P.table([1, 3], DigitFormat(1, 3))


def test_threshold_step():
    assert P.threshold_step([0, 3, 6, 10, 13, 16]) == 3           # 3, 3, 4, 3, 3
    assert P.threshold_step([0, 4, 8, 11, 15]) == 3               # 4, 4, 3, 4: 3 and 4 both
    assert P.threshold_step([5, 5, 5]) == 0
    assert P.threshold_step([7]) == 0
    assert P.threshold_step([0, 10, 20, 21]) == 9                 # 10 and 1: tie, smallest
    assert P.threshold_step([-128, 127]) == 254                   # 255 is S + 1


def row_bits(row, width):
    """Bits of one row by the format's definition."""
    if len(row) == 1:
        return width
    s = P.threshold_step(row)
    esc = sum(1 for a, b in pairwise(row) if b - a not in (s, s + 1, 0))
    return 2 * width + 2 * (len(row) - 1) + width * esc


def random_rows(rng, count, levels, width):
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    rows = []
    for _ in range(count):
        kind = rng.integers(0, 3)
        if kind == 0:
            row = sorted(rng.integers(lo, hi, size=levels, endpoint=True).tolist())
        elif kind == 1:
            row = [int(rng.integers(lo, hi, endpoint=True))] * levels
        else:
            step = rng.uniform(0, (hi - lo) / levels)
            row = [int(lo + step * k) for k in range(levels)]
        rows.append(row)
    return rows


@pytest.mark.parametrize("width", [1, 2, 3, 8, 13, 24, 32, 64])
def test_thresholds_round_trip(width):
    rng = np.random.default_rng(width)
    for levels in [1, 2, 3, 15, 40]:
        rows = random_rows(rng, 5, levels, width)
        data = P.thresholds(rows, width)
        bits = sum(row_bits(r, width) for r in rows)
        assert len(data) == -(-bits // 8) == P.thresholds_size(rows, width)
        assert P.decode_thresholds(data, 5, levels, width) == rows


def test_linear_requantizer_hardly_escapes():
    """Thresholds of x * m + c: differences are floor and ceiling of 1/m, flat ends.

    Only the step from the sloped part onto a flat end clipped to the range
    escapes; a row inside the range costs 2 bits per threshold after the first.
    """
    rng = np.random.default_rng(0)
    m = rng.uniform(0.001, 0.5, size=256)
    c = rng.uniform(-20, 20, size=256)
    x_lo, x_hi = -4000, 4000
    t = thresholds_for_requant(m, c, bits=4, signed=False, x_lo=x_lo, x_hi=x_hi)
    rows = t.tolist()
    width = 14                                       # holds -4000 .. 4001
    plain = 2 * width + 2 * 14
    for r in rows:
        clipped = (r[0] == x_lo and r[-1] > x_lo) + (r[-1] == x_hi + 1 and r[0] <= x_hi)
        assert row_bits(r, width) <= plain + width * clipped
    inside = [r for r in rows if x_lo < r[0] and r[-1] <= x_hi]
    assert len(inside) > 100 and all(row_bits(r, width) == plain for r in inside)
    data = P.thresholds(rows, width)
    assert P.decode_thresholds(data, len(rows), 15, width) == rows
    assert len(data) < 1.1 * len(rows) * plain / 8


def test_thresholds_worst_case():
    # Every difference different: all but the ones S covers escape.
    row = [0, 1, 3, 7, 15, 31, 63, 127]
    width = 8
    data = P.thresholds([row], width)
    s = P.threshold_step(row)
    assert s in (0, 1)                              # covers the 1 (and 2 if S = 1)
    assert len(data) == -(-row_bits(row, width) // 8)
    assert P.decode_thresholds(data, 1, len(row), width) == [row]
    # The extremes of the width, either way round.
    lo, hi = -128, 127
    for row in ([lo, hi], [lo, lo, hi, hi], [lo, 0, hi], [hi] * 3):
        assert P.decode_thresholds(P.thresholds([row], 8), 1, len(row), 8) == [row]


def test_thresholds_reject():
    with pytest.raises(ValueError, match="row 1 is not sorted"):
        P.thresholds([[1, 2], [2, 1]], 8)
    with pytest.raises(ValueError, match="row 1 has 3 thresholds, row 0 has 2"):
        P.thresholds([[1, 2], [1, 2, 3]], 8)
    with pytest.raises(ValueError, match="128 does not fit 8-bit"):
        P.thresholds([[0, 128]], 8)
    with pytest.raises(ValueError, match="padding bits after bit 4"):
        P.decode_thresholds(bytes([0x81]), 1, 1, 4)
    with pytest.raises(ValueError, match="2 byte.* the rows use 1"):
        P.decode_thresholds(bytes([0x01, 0x00]), 1, 1, 8)
    with pytest.raises(ValueError, match="ends inside row 0"):
        P.decode_thresholds(bytes([0x01]), 1, 2, 8)


def test_commands_validate():
    with pytest.raises(ValueError, match="CODES command: bits must be 1 to 16"):
        Command(Kind.CODES, 4, bits=0)
    with pytest.raises(ValueError, match="TRIT5 command: does not use bits"):
        Command(Kind.TRIT5, 4, bits=2)
    with pytest.raises(ValueError, match="THRESH command: levels must be 1 or more"):
        Command(Kind.THRESH, 1, bits=8)
    with pytest.raises(ValueError, match="per_pos must be 1 or more"):
        Command(Kind.CODES, 9, bits=2, positions=9)
    with pytest.raises(ValueError, match="count .* must be a multiple"):
        Command(Kind.CODES, 10, bits=2, positions=9, per_pos=1, replay=True)
    with pytest.raises(ValueError, match="replay needs 2 or more positions"):
        Command(Kind.CODES, 8, bits=2, replay=True)
    with pytest.raises(ValueError, match="count must be 0 or more"):
        Command(Kind.BIAS, -1, bits=4)


def test_encode_decode_and_sizes():
    rng = np.random.default_rng(1)
    fmt = DigitFormat(2, 4)
    cases = [
        (Command(Kind.TRIT5, 23), rng.integers(-1, 2, 23).tolist()),
        (Command(Kind.TERN2, 23), rng.integers(-1, 2, 23).tolist()),
        (Command(Kind.CODES, 23, bits=5), rng.integers(0, 32, 23).tolist()),
        (Command(Kind.CODES, 36, bits=3, positions=9, per_pos=2, replay=True),
         rng.integers(0, 8, 4).tolist()),
        (Command(Kind.TABLE, 11, positions=1), rng.choice(fmt_pool(fmt), 11).tolist()),
        (Command(Kind.THRESH, 3, bits=12, levels=7), random_rows(rng, 3, 7, 12)),
        (Command(Kind.BIAS, 5, bits=20), rng.integers(-(1 << 19), 1 << 19, 5).tolist()),
        (Command(Kind.SKIP, 3), []),
    ]
    for cmd, values in cases:
        data = P.encode(cmd, values, fmt)
        assert len(data) == P.data_size(cmd, values, fmt)
        assert P.decode(cmd, data, fmt) == values
    assert P.data_size(cases[3][0]) == 2                 # 4 codes of 3 bits, not 36
    with pytest.raises(ValueError, match="depends on the rows"):
        P.data_size(cases[5][0])
    with pytest.raises(ValueError, match="expected 23 value"):
        P.encode(cases[0][0], [0] * 22)
    with pytest.raises(ValueError, match="TERN2: code 3 at weight 1"):
        P.decode(Command(Kind.TERN2, 2), P.bits([0, 3], 2))


def test_weights_through_the_table():
    table = list(range(100, 100 + 12))                 # 4 kernels of 3 positions
    # Plain codes: the entry is the code.
    assert P.weights(Command(Kind.CODES, 3, bits=4), [5, 0, 11], table) == [105, 100, 111]
    # KQ: entry code * positions + pos, pos advancing every per_pos weights.
    cmd = Command(Kind.CODES, 8, bits=2, positions=3, per_pos=2)
    codes = [1, 2, 3, 0, 1, 1, 2, 2]
    pos = [0, 0, 1, 1, 2, 2, 0, 0]
    assert P.weights(cmd, codes, table) == [100 + c * 3 + p for c, p in zip(codes, pos)]
    # Replay: the codes of the first position serve every position of their block.
    cmd = Command(Kind.CODES, 12, bits=2, positions=3, per_pos=2, replay=True)
    stored = [1, 2, 3, 0]
    expanded = [1, 2, 1, 2, 1, 2, 3, 0, 3, 0, 3, 0]
    pos = [0, 0, 1, 1, 2, 2] * 2
    assert P.weights(cmd, stored, table) == [100 + c * 3 + p for c, p in zip(expanded, pos)]
    with pytest.raises(ValueError, match="uses table entry 12"):
        P.weights(Command(Kind.CODES, 1, bits=4), [12], table)

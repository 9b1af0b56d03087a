"""The layer engine's weight stream: what the flash holds, command by command.

The engine reads ``weights.bin`` once per inference, front to back, in exactly
the order it consumes the data. The schedule tells the decoder
(:class:`hw.engine.decode.StreamDecoder`) what comes next with a
:class:`Command`; the flash holds only the command's data, packed densely at
its own width, so a smaller model is a faster model. This module writes and
reads that data in plain Python and numpy: the compiler calls it to write the
image, the tests to check the hardware.

Every command's data begins on a byte; its last byte is padded with zero bits.
Fields are packed least significant bit first, the first field in the low bits
of the first byte (the flash reader hands out the first byte in the low bits of
its word, so the bit order is the same end to end).

Kinds of data (:class:`Kind`)
-----------------------------
``TRIT5``
    Ternary weights, five per byte: ``byte = t0 + 3 t1 + 9 t2 + 27 t3 + 81 t4``
    with trit 0 for 0, 1 for +1 and 2 for -1, the first weight least
    significant; the last byte is completed with zero weights. A byte above 242
    is invalid. 1.6 bits per weight.
``TERN2``
    Ternary weights as 2-bit codes (0: 0, 1: +1, 2: -1, 3: invalid).
``CODES``
    ``bits``-bit codes (1 to 16) that a translation table turns into run-time
    weights: power-of-two codes, m-bit integers, LAT2's ``{0, +P, -N}``,
    kernel-quantization (KQ) indices. Weight ``n`` of the command uses table
    entry ``code * positions + pos`` with ``pos = (n // per_pos) % positions``
    (``positions = 1``: the entry is the code). With ``replay`` the data holds
    only the codes of the weights at ``pos = 0``: a KQ index is stored once per
    kernel, not once per weight, and each block of ``positions * per_pos``
    weights reuses the ``per_pos`` codes it read at its first position.
``TABLE``
    The translation table: ``count`` run-time weights, each its
    ``DigitFormat.bits``-bit word (:meth:`DigitFormat.encode`). ``positions``
    tells the decoder how the codes of the following ``CODES`` commands index it.
``THRESH``
    ``count`` rows of ``levels`` sorted thresholds of ``bits``-bit two's
    complement. A row is its first threshold (``bits``, signed), then, if
    ``levels > 1``, a step ``S`` (``bits``, unsigned) and a 2-bit code for each
    following threshold: 0 for previous + S, 1 for previous + S + 1, 2 for the
    previous one again, 3 for an escape, followed by the threshold itself
    (``bits``, signed). ``S`` is chosen per row to cover the most differences,
    so a linear requantizer, whose differences are the floor and ceiling of
    ``1 / multiplier``, costs 2 bits per threshold; any sorted row is exact.
``BIAS``
    ``count`` signed ``bits``-bit values, two's complement.
``SKIP``
    ``count`` bytes that nothing reads: padding, so that an inference's stream
    ends on a word of the flash reader and the next one starts afresh.
"""

import enum
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

__all__ = [
    "Command",
    "Kind",
    "bits",
    "bits_size",
    "data_size",
    "decode",
    "decode_bits",
    "decode_signed_bits",
    "decode_table",
    "decode_thresholds",
    "decode_trits5",
    "encode",
    "signed_bits",
    "table",
    "table_size",
    "threshold_step",
    "thresholds",
    "thresholds_size",
    "trits5",
    "trits5_size",
    "weights",
]


class Kind(enum.IntEnum):
    """What a command's data is (module docstring)."""
    TRIT5 = 0
    TERN2 = 1
    CODES = 2
    TABLE = 3
    THRESH = 4
    BIAS = 5
    SKIP = 6


@dataclass(frozen=True)
class Command:
    """One command of the schedule: what the next data in the stream is.

    ``count`` is weights (TRIT5, TERN2, CODES), table entries (TABLE), rows
    (THRESH), values (BIAS) or bytes (SKIP); ``bits`` the field width (CODES, THRESH, BIAS);
    ``levels`` the thresholds per row (THRESH); ``positions``, ``per_pos`` and
    ``replay`` how codes index the table (CODES; TABLE takes ``positions``).
    Fields a kind does not use must keep their defaults.
    """
    kind: Kind
    count: int
    bits: int = 0
    levels: int = 0
    positions: int = 1
    per_pos: int = 0
    replay: bool = False

    def __post_init__(self):
        object.__setattr__(self, "kind", Kind(self.kind))
        problem = self._problem()
        if problem:
            raise ValueError(f"{self.kind.name} command: {problem}")

    def _problem(self):
        k = self.kind
        if self.count < 0:
            return f"count must be 0 or more, not {self.count}"
        uses = {Kind.TRIT5: (), Kind.TERN2: (), Kind.CODES: ("bits", "positions", "per_pos",
                                                             "replay"),
                Kind.TABLE: ("positions",), Kind.THRESH: ("bits", "levels"),
                Kind.BIAS: ("bits",), Kind.SKIP: ()}[k]
        defaults = {"bits": 0, "levels": 0, "positions": 1, "per_pos": 0, "replay": False}
        for name, default in defaults.items():
            if name not in uses and getattr(self, name) != default:
                return f"does not use {name} (got {getattr(self, name)})"
        if k == Kind.CODES and not 1 <= self.bits <= 16:
            return f"bits must be 1 to 16, not {self.bits}"
        if k in (Kind.THRESH, Kind.BIAS) and not 1 <= self.bits <= 64:
            return f"bits must be 1 to 64, not {self.bits}"
        if k == Kind.THRESH and self.levels < 1:
            return f"levels must be 1 or more, not {self.levels}"
        if self.positions < 1:
            return f"positions must be 1 or more, not {self.positions}"
        if k == Kind.CODES and self.positions > 1 and self.per_pos < 1:
            return f"per_pos must be 1 or more with {self.positions} positions"
        if self.replay:
            block = self.positions * self.per_pos
            if self.positions < 2:
                return "replay needs 2 or more positions"
            if self.count % block:
                return (f"with replay, count ({self.count}) must be a multiple of positions * "
                        f"per_pos ({block})")
        return None

    @property
    def codes(self):
        """Values in the data of a CODES command (fewer than ``count`` with replay)."""
        return self.count // self.positions if self.replay else self.count


def _check_int(values, lo, hi, what):
    """``values`` in ``[lo, hi]``: an int64 array, or a list of ints beyond 62 bits."""
    a = np.asarray(values)
    if a.ndim != 1 and a.size:
        raise ValueError(f"{what}: expected a flat sequence, got shape {a.shape}")
    if a.dtype.kind in "iub" or not a.size:
        out = a.astype(np.int64) if max(-lo, hi) < 1 << 62 else [int(v) for v in a.tolist()]
    else:
        out = []
        for v in a.tolist():
            try:
                iv = int(v)
            except (TypeError, ValueError):
                raise ValueError(f"{what}: {v!r} is not an integer") from None
            if iv != v:
                raise ValueError(f"{what}: {v!r} is not an integer")
            out.append(iv)
        if max(-lo, hi) < 1 << 62:
            out = np.array(out, dtype=np.int64)
    bad = [int(v) for v in (out[(out < lo) | (out > hi)] if isinstance(out, np.ndarray)
                            else [v for v in out if not lo <= v <= hi])]
    if bad:
        raise ValueError(f"{what}: {len(bad)} value(s) outside [{lo}, {hi}], first {bad[0]}")
    return out


def _pack_fields(values, widths):
    """Fields ``values[i]`` (non-negative, below ``2**widths[i]``) packed LSB first, then padded."""
    widths = np.asarray(widths, dtype=np.int64)
    total = int(widths.sum())
    if total == 0:
        return b""
    owner = np.repeat(np.arange(len(widths)), widths)
    place = np.arange(total) - np.repeat(np.cumsum(widths) - widths, widths)
    if int(widths.max()) <= 63:
        v = (values.astype(np.uint64) if isinstance(values, np.ndarray)
             else np.asarray([int(x) for x in values], dtype=np.uint64))
        bit = (v[owner] >> place.astype(np.uint64)) & np.uint64(1)
    else:
        bit = np.array([(int(values[o]) >> int(p)) & 1 for o, p in zip(owner, place)])
    return np.packbits(bit.astype(np.uint8), bitorder="little").tobytes()


def _bits_of(data, size, what):
    data = bytes(data)
    if len(data) != size:
        raise ValueError(f"{what}: expected {size} byte(s) of data, got {len(data)}")
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")


def _check_padding(bitarr, used, what):
    if np.any(bitarr[used:]):
        raise ValueError(f"{what}: padding bits after bit {used} are not zero")


def _fields(bitarr, count, b):
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    f = bitarr[:count * b].reshape(count, b).astype(np.int64)
    return f @ (np.int64(1) << np.arange(b, dtype=np.int64))


# Sizes -------------------------------------------------------------------------------

def trits5_size(count):
    """Bytes of ``count`` ternary weights in TRIT5."""
    return -(-count // 5)


def bits_size(count, b):
    """Bytes of ``count`` fields of ``b`` bits."""
    return -(-count * b // 8)


def table_size(count, fmt):
    """Bytes of a table of ``count`` entries in ``fmt``."""
    return bits_size(count, fmt.bits)


def thresholds_size(rows, width):
    """Bytes of threshold ``rows`` at ``width`` (escapes included)."""
    return -(-_thresholds_bits(_check_rows(rows, width), width) // 8)


def data_size(cmd, values=None, fmt=None):
    """Exact bytes of the data of ``cmd``; THRESH needs its ``values`` (rows), TABLE ``fmt``."""
    k = cmd.kind
    if k == Kind.TRIT5:
        return trits5_size(cmd.count)
    if k == Kind.TERN2:
        return bits_size(cmd.count, 2)
    if k == Kind.CODES:
        return bits_size(cmd.codes, cmd.bits)
    if k == Kind.TABLE:
        if fmt is None:
            raise ValueError("TABLE command: the size needs the DigitFormat")
        return table_size(cmd.count, fmt)
    if k == Kind.BIAS:
        return bits_size(cmd.count, cmd.bits)
    if k == Kind.SKIP:
        return cmd.count
    if values is None:
        raise ValueError("THRESH command: the size depends on the rows (escapes)")
    rows = _check_rows(values, cmd.bits)
    _check_shape(cmd, rows)
    return -(-_thresholds_bits(rows, cmd.bits) // 8)


# Encoders ----------------------------------------------------------------------------

def trits5(weights):
    """Ternary ``weights`` (-1, 0, +1), five per byte."""
    w = _check_int(weights, -1, 1, "TRIT5 weights")
    t = np.where(w < 0, 2, w)
    t = np.concatenate([t, np.zeros(-len(t) % 5, dtype=np.int64)]).reshape(-1, 5)
    return (t @ np.array([1, 3, 9, 27, 81], dtype=np.int64)).astype(np.uint8).tobytes()


def bits(values, b):
    """Unsigned ``b``-bit fields (1 <= b <= 16), LSB first."""
    if not 1 <= b <= 16:
        raise ValueError(f"bits: field width must be 1 to 16, not {b}")
    return _pack(values, b, signed=False, what=f"{b}-bit fields")


def signed_bits(values, b):
    """Signed ``b``-bit fields (two's complement), LSB first."""
    if not 1 <= b <= 64:
        raise ValueError(f"signed_bits: field width must be 1 to 64, not {b}")
    return _pack(values, b, signed=True, what=f"signed {b}-bit fields")


def _pack(values, b, *, signed, what):
    lo, hi = (-(1 << (b - 1)), (1 << (b - 1)) - 1) if signed else (0, (1 << b) - 1)
    v = _check_int(values, lo, hi, what)
    mask = (1 << b) - 1
    if isinstance(v, np.ndarray) and b <= 63:
        bit = (v.astype(np.uint64)[:, None] >> np.arange(b, dtype=np.uint64)) & np.uint64(1)
        return np.packbits(bit.astype(np.uint8).reshape(-1), bitorder="little").tobytes()
    return _pack_fields([int(x) & mask for x in v], np.full(len(v), b))


def table(entries, fmt):
    """A translation table: each integer weight in ``entries`` as its ``fmt`` word."""
    words = []
    for n, e in enumerate(entries):
        try:
            words.append(fmt.encode(int(e)))
        except ValueError as err:
            raise ValueError(f"table entry {n}: {err}") from None
    return _pack_fields(words, [fmt.bits] * len(words))


def threshold_step(row):
    """The step ``S`` of a sorted row: covers the most differences, the smallest on a tie.

    Code 2 covers equal neighbours whatever ``S`` is, so only the non-zero
    differences compete; ``S`` covers differences ``S`` and ``S + 1``.
    """
    row = [int(v) for v in row]
    count = Counter(b - a for a, b in pairwise(row) if b != a)
    if not count:
        return 0
    candidates = sorted({d - 1 for d in count} | set(count))
    return max(candidates, key=lambda s: (count[s] + count[s + 1], -s))


def _check_rows(rows, width):
    if not 1 <= width <= 64:
        raise ValueError(f"thresholds: width must be 1 to 64, not {width}")
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    out = []
    for r, row in enumerate(rows):
        row = [int(v) for v in row]
        if not row:
            raise ValueError(f"threshold row {r} is empty")
        if out and len(row) != len(out[0]):
            raise ValueError(f"threshold row {r} has {len(row)} thresholds, row 0 has "
                             f"{len(out[0])}")
        bad = [v for v in row if not lo <= v <= hi]
        if bad:
            raise ValueError(f"threshold row {r}: {bad[0]} does not fit {width}-bit two's "
                             "complement")
        if any(b < a for a, b in pairwise(row)):
            raise ValueError(f"threshold row {r} is not sorted")
        out.append(row)
    return out


def _check_shape(cmd, rows):
    if len(rows) != cmd.count or any(len(r) != cmd.levels for r in rows):
        raise ValueError(f"THRESH command of {cmd.count} row(s) of {cmd.levels} got "
                         f"{len(rows)} row(s) of {len(rows[0]) if rows else 0}")


def _row_fields(row, width):
    """(value, width) fields of one row."""
    mask = (1 << width) - 1
    fields = [(row[0] & mask, width)]
    if len(row) == 1:
        return fields
    s = threshold_step(row)
    fields.append((s, width))
    for prev, cur in pairwise(row):
        d = cur - prev
        if d == s:
            fields.append((0, 2))
        elif d == s + 1:
            fields.append((1, 2))
        elif d == 0:
            fields.append((2, 2))
        else:
            fields += [(3, 2), (cur & mask, width)]
    return fields


def _thresholds_bits(rows, width):
    return sum(w for row in rows for _, w in _row_fields(row, width))


def thresholds(rows, width):
    """Threshold ``rows`` (all of one length, each sorted) of ``width``-bit integers."""
    fields = [f for row in _check_rows(rows, width) for f in _row_fields(row, width)]
    return _pack_fields([v for v, _ in fields], [w for _, w in fields])


# Decoders ----------------------------------------------------------------------------

_WEIGHT_OF_TRIT = np.array([0, 1, -1], dtype=np.int64)


def decode_trits5(data, count):
    """The ``count`` ternary weights of TRIT5 ``data``."""
    raw = np.frombuffer(_bytes_exact(data, trits5_size(count), "TRIT5"), dtype=np.uint8)
    if np.any(raw > 242):
        raise ValueError(f"TRIT5: byte {int(np.argmax(raw > 242))} is {int(raw.max())}, above "
                         "242")
    t = (raw.astype(np.int64)[:, None] // np.array([1, 3, 9, 27, 81])) % 3
    t = t.reshape(-1)
    if np.any(t[count:]):
        raise ValueError("TRIT5: the weights after the last one are not zero")
    return [int(v) for v in _WEIGHT_OF_TRIT[t[:count]]]


def _bytes_exact(data, size, what):
    data = bytes(data)
    if len(data) != size:
        raise ValueError(f"{what}: expected {size} byte(s) of data, got {len(data)}")
    return data


def decode_bits(data, count, b):
    """``count`` unsigned ``b``-bit fields."""
    bitarr = _bits_of(data, bits_size(count, b), f"{b}-bit fields")
    _check_padding(bitarr, count * b, f"{b}-bit fields")
    return [int(v) for v in _fields(bitarr, count, b)]


def decode_signed_bits(data, count, b):
    """``count`` signed ``b``-bit fields."""
    if b > 62:
        bitarr = _bits_of(data, bits_size(count, b), f"signed {b}-bit fields")
        _check_padding(bitarr, count * b, f"signed {b}-bit fields")
        out = []
        for n in range(count):
            v = sum(int(x) << i for i, x in enumerate(bitarr[n * b:(n + 1) * b]))
            out.append(v - (1 << b) if v >> (b - 1) else v)
        return out
    return [v - (1 << b) if v >> (b - 1) else v for v in decode_bits(data, count, b)]


def decode_table(data, count, fmt):
    """The integer weights of a table of ``count`` entries in ``fmt``."""
    bitarr = _bits_of(data, table_size(count, fmt), "table")
    _check_padding(bitarr, count * fmt.bits, "table")
    words = [sum(int(x) << i for i, x in enumerate(bitarr[n * fmt.bits:(n + 1) * fmt.bits]))
             for n in range(count)]
    return [fmt.decode(w) for w in words]


def decode_thresholds(data, count, levels, width):
    """``count`` rows of ``levels`` thresholds of ``width`` bits."""
    bitarr = [int(x) for x in np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8),
                                            bitorder="little")]
    at = 0

    def take(n, signed=False):
        nonlocal at
        if at + n > len(bitarr):
            raise ValueError(f"THRESH: the data ends inside row {len(rows)}")
        v = sum(b << i for i, b in enumerate(bitarr[at:at + n]))
        at += n
        return v - (1 << n) if signed and v >> (n - 1) else v

    rows = []
    for _ in range(count):
        row = [take(width, True)]
        if levels > 1:
            s = take(width)
            for _ in range(levels - 1):
                code = take(2)
                row.append(take(width, True) if code == 3 else
                           row[-1] + (s + code if code < 2 else 0))
        rows.append(row)
    if -(-at // 8) != len(bitarr) // 8:
        raise ValueError(f"THRESH: {len(bitarr) // 8} byte(s) of data, the rows use "
                         f"{-(-at // 8)}")
    if any(bitarr[at:]):
        raise ValueError(f"THRESH: padding bits after bit {at} are not zero")
    return rows


# Commands ----------------------------------------------------------------------------

def encode(cmd, values=(), fmt=None):
    """The data of ``cmd``: its weights (TRIT5, TERN2), codes as stored (CODES), table
    weights (TABLE, in ``fmt``), rows (THRESH), biases (BIAS); zero bytes for SKIP."""
    k = cmd.kind
    if k == Kind.SKIP:
        return bytes(cmd.count)
    if k == Kind.THRESH:
        rows = _check_rows(values, cmd.bits)
        _check_shape(cmd, rows)
        return thresholds(rows, cmd.bits)
    expected = cmd.codes if k == Kind.CODES else cmd.count
    if len(values) != expected:
        raise ValueError(f"{k.name} command: expected {expected} value(s), got {len(values)}")
    if k == Kind.TRIT5:
        return trits5(values)
    if k == Kind.TERN2:
        w = _check_int(values, -1, 1, "TERN2 weights")
        return bits(np.where(w < 0, 2, w), 2)
    if k == Kind.CODES:
        return bits(values, cmd.bits)
    if k == Kind.TABLE:
        if fmt is None:
            raise ValueError("TABLE command: encoding needs the DigitFormat")
        return table(values, fmt)
    return signed_bits(values, cmd.bits)


def decode(cmd, data, fmt=None):
    """Inverse of :func:`encode` (TERN2 code 3 raises; SKIP has no values)."""
    k = cmd.kind
    if k == Kind.SKIP:
        _bytes_exact(data, cmd.count, "SKIP")
        return []
    if k == Kind.TRIT5:
        return decode_trits5(data, cmd.count)
    if k == Kind.TERN2:
        codes = decode_bits(data, cmd.count, 2)
        if 3 in codes:
            raise ValueError(f"TERN2: code 3 at weight {codes.index(3)}")
        return [int(_WEIGHT_OF_TRIT[c]) for c in codes]
    if k == Kind.CODES:
        return decode_bits(data, cmd.codes, cmd.bits)
    if k == Kind.TABLE:
        if fmt is None:
            raise ValueError("TABLE command: decoding needs the DigitFormat")
        return decode_table(data, cmd.count, fmt)
    if k == Kind.THRESH:
        return decode_thresholds(data, cmd.count, cmd.levels, cmd.bits)
    return decode_signed_bits(data, cmd.count, cmd.bits)


def weights(cmd, codes, entries):
    """The weights of a CODES command: its stored ``codes`` through the table ``entries``."""
    codes = [int(c) for c in codes]
    if len(codes) != cmd.codes:
        raise ValueError(f"CODES command: expected {cmd.codes} code(s), got {len(codes)}")
    p, q = cmd.positions, max(cmd.per_pos, 1)
    out = []
    for n in range(cmd.count):
        pos = (n // q) % p
        if cmd.replay:
            c = codes[(n // (p * q)) * q + n % q]
        else:
            c = codes[n]
        e = c * p + pos
        if e >= len(entries):
            raise ValueError(f"CODES: weight {n} uses table entry {e}; the table has "
                             f"{len(entries)}")
        out.append(int(entries[e]))
    return out

"""Lane-wise operations on a stream: ReLU, threshold requantization, pow2 decoding."""

from collections.abc import Sequence

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, ShapeLike, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .lanes import lanes

__all__ = ["ReLU", "Thresholds", "Pow2Decode", "threshold_code", "threshold_latency",
           "thermometer_count", "pow2_value", "TABLE_BITS"]


#: From this many thresholds on, a binary search replaces the bank of comparators.
SEARCH_FROM = 32
#: Up to this many input bits, constant thresholds become a table of codes (``Thresholds``).
TABLE_BITS = 8


def threshold_code(value, thresholds, lo, m=None, name="code", en=None):
    """``lo + #{j : value >= thresholds[j]}`` for non-decreasing thresholds.

    Thresholds may be constants or signals. A few thresholds are compared all at
    once; a long staircase (a wide requantized output) is searched: because the
    thresholds are sorted, ``value >= T[j]`` holds exactly for a prefix of ``j``,
    and ``ceil(log2(L + 1))`` comparisons, each against a threshold picked by the
    bits found so far, find its length. That costs a multiplexer over the
    thresholds instead of ``L`` comparators.

    With ``en`` (a signal; needs ``m``) the logic is pipelined for the clock: the
    comparisons of a few thresholds go into a register (a thermometer code, which
    a shallow encoder turns into the count), and every step of a search (over
    constant thresholds) ends in a register. The registers load when ``en`` is
    high, and the result appears :func:`threshold_latency` loads later.
    """
    thresholds = list(thresholds)
    if en is not None and m is None:
        raise ValueError("a pipelined staircase needs the module to put its registers in")
    if len(thresholds) < SEARCH_FROM:
        if en is None:
            return lo + sum((value >= t for t in thresholds), Const(0, 1))
        # Sorted thresholds make the comparisons a thermometer code: the count is the
        # position of its last one, an OR of one-hot edges per bit (two LUT levels)
        # instead of a population count (an adder tree).
        thermo = Signal(len(thresholds), name=f"{name}_thermo")
        with m.If(en):
            m.d.sync += thermo.eq(Cat(*(value >= t for t in thresholds)))
        return lo + thermometer_count(thermo)
    if m is None:
        raise ValueError("a searched staircase needs the module to put its signals in")
    if en is not None and not all(isinstance(t, int) for t in thresholds):
        # A later step would compare against a word the read port has moved on from;
        # hw.mvu.RomMVU reads each step's thresholds from a ROM of its own instead.
        raise ValueError("a pipelined search needs constant thresholds")
    bits = len(thresholds).bit_length()           # codes 0 .. L need this many bits
    count = Const(0, bits)
    for j in reversed(range(bits)):
        # Candidate: the threshold at position count + 2**j - 1 (0-based), if it exists;
        # count is a multiple of 2**(j+1) here, so its bits above j pick the candidate.
        table = Array(thresholds[i + (1 << j) - 1] for i in range(0, len(thresholds), 2 << j)
                      if i + (1 << j) - 1 < len(thresholds))
        slot = count >> (j + 1)
        exists = slot < len(table)
        take = exists & (value >= table[slot])
        # A signal per step keeps each step's result shared: as an expression, every
        # step would copy the ones before it three times over.
        step = Signal(bits, name=f"{name}_s{j}")
        if en is None:
            m.d.comb += step.eq(Mux(take, count | (1 << j), count))
        else:
            # A register per step; the value travels along with the count.
            held = Signal.like(value, name=f"{name}_v{j}")
            with m.If(en):
                m.d.sync += [step.eq(Mux(take, count | (1 << j), count)), held.eq(value)]
            value = held
        count = step
    return lo + count


def threshold_latency(levels, pipelined=True):
    """Register loads :func:`threshold_code` over ``levels`` thresholds adds when pipelined."""
    if not pipelined:
        return 0
    return 1 if levels < SEARCH_FROM else levels.bit_length()


def thermometer_count(thermo):
    """The number of ones of a thermometer code (ones in a prefix of its bits)."""
    n = len(thermo)
    bits = n.bit_length()
    # One-hot: the code ends at position j (count j + 1).
    edges = [thermo[j] & ~thermo[j + 1] for j in range(n - 1)] + [thermo[n - 1]]
    count = []
    for b in range(bits):
        terms = [edges[j] for j in range(n) if (j + 1) >> b & 1]
        count.append(Cat(*terms).any() if terms else Const(0, 1))
    return Cat(*count)


def pow2_value(code):
    """The value ``0`` if ``code == 0`` else ``2**(code - 1)`` of a pow2 activation code.

    ``(1 << code) >> 1``: one shift, and zero needs no special case.
    """
    return (Const(1, 1) << code) >> 1


class _Lanewise(wiring.Component):
    """One beat per cycle of ``self.lane(value, index, m, en)`` on every lane.

    ``lane`` may put registers loading on ``en`` in front of its result;
    ``self.lane_latency`` says how many a value passes, and the valid flags go
    through as many so that a beat's flag stays with its value.
    """
    lane_latency = 0

    def __init__(self, in_shape: ShapeLike, out_shape: ShapeLike, count: int):
        self.count = count
        super().__init__({"i": In(stream.Signature(lanes(in_shape, count))),
                          "o": Out(stream.Signature(lanes(out_shape, count)))})

    @property
    def latency(self):
        """Cycles from accepting a beat to presenting its result."""
        return self.lane_latency + 1

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        values = [self.lane(self.i.payload[c], c, m, en) for c in range(self.count)]
        valid = self.i.valid
        for stage in range(self.lane_latency):
            v = Signal(name=f"valid_s{stage}")
            with m.If(en):
                m.d.sync += v.eq(valid)
            valid = v
        with m.If(en):
            m.d.sync += self.o.valid.eq(valid)
            m.d.sync += [self.o.payload[c].eq(v) for c, v in enumerate(values)]
        return m


class ReLU(_Lanewise):
    """``max(x, 0)`` on every lane.

    Members
    -------
    i : In(stream.Signature(lanes(in_shape, count)))
    o : Out(stream.Signature(lanes(out_shape, count)))
    """

    def lane(self, value, index, m, en):
        return Mux(value < 0, 0, value)


class Thresholds(_Lanewise):
    """Requantization by thresholds: lane ``c`` becomes ``lo + #{j : x >= T[c][j]}``.

    The thresholds are constants. An input lane of up to :data:`TABLE_BITS` bits
    looks its code up in a table of every input value's code (a LUT ROM: four
    6-input LUTs per output bit for 8 input bits, where 15 comparators of a 4-bit
    code take some 30); a wider lane compares with each threshold, or searches
    (:func:`threshold_code`). With ``pipelined`` (the default) the code, the
    comparisons or each step of a search end in a register: :attr:`latency` grows
    by :meth:`compare_latency`, the rate stays a beat per cycle.

    Members
    -------
    i : In(stream.Signature(lanes(in_shape, count)))
    o : Out(stream.Signature(lanes(out_shape, count)))
    """

    def __init__(self, in_shape: ShapeLike, out_shape: ShapeLike,
                 thresholds: Sequence[Sequence[int]], lo: int, pipelined: bool = True):
        self.thresholds = [[int(t) for t in row] for row in thresholds]
        self.lo = lo
        self.pipelined = pipelined
        self.table = Shape.cast(in_shape).width <= TABLE_BITS
        self.lane_latency = self.compare_latency(in_shape, len(self.thresholds[0]), pipelined)
        super().__init__(in_shape, out_shape, len(self.thresholds))

    @staticmethod
    def compare_latency(in_shape, levels, pipelined=True):
        """Registers between a lane's value and its code."""
        if Shape.cast(in_shape).width <= TABLE_BITS:
            return int(pipelined)
        return threshold_latency(levels, pipelined)

    def lane(self, value, index, m, en):
        if not self.table:
            return threshold_code(value, self.thresholds[index], self.lo, m,
                                  name=f"code{index}", en=en if self.pipelined else None)
        # The code of every input bit pattern, read as the lane's shape reads it.
        shape = value.shape()
        codes = []
        for pattern in range(1 << shape.width):
            v = pattern - (pattern >> (shape.width - 1) << shape.width if shape.signed else 0)
            codes.append(self.lo + sum(v >= t for t in self.thresholds[index]))
        code = Array(Const(c) for c in codes)[value.as_unsigned()]
        if not self.pipelined:
            return code
        held = Signal.like(self.o.payload[index], name=f"code{index}", reset_less=True)
        with m.If(en):
            m.d.sync += held.eq(code)
        return held


class Pow2Decode(_Lanewise):
    """The value of a power-of-two activation code on every lane (:func:`pow2_value`).

    Only needed where a pow2-coded stream meets an op that adds (a residual add,
    a global sum); matrix-vector units take the codes directly.

    Members
    -------
    i : In(stream.Signature(lanes(in_shape, count)))
    o : Out(stream.Signature(lanes(out_shape, count)))
    """

    def lane(self, value, index, m, en):
        return pow2_value(value)

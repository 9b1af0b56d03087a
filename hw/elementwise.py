"""Lane-wise operations on a stream: ReLU, threshold requantization, pow2 decoding."""

from collections.abc import Sequence

from amaranth.hdl import Array, Const, Module, Mux, ShapeLike, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .lanes import lanes

__all__ = ["ReLU", "Thresholds", "Pow2Decode", "threshold_code", "pow2_value"]


#: From this many thresholds on, a binary search replaces the bank of comparators.
SEARCH_FROM = 32


def threshold_code(value, thresholds, lo, m=None, name="code"):
    """``lo + #{j : value >= thresholds[j]}`` for non-decreasing thresholds.

    Thresholds may be constants or signals. A few thresholds are compared all at
    once; a long staircase (a wide requantized output) is searched: because the
    thresholds are sorted, ``value >= T[j]`` holds exactly for a prefix of ``j``,
    and ``ceil(log2(L + 1))`` comparisons, each against a threshold picked by the
    bits found so far, find its length. That costs a multiplexer over the
    thresholds instead of ``L`` comparators.
    """
    thresholds = list(thresholds)
    if len(thresholds) < SEARCH_FROM:
        return lo + sum((value >= t for t in thresholds), Const(0, 1))
    if m is None:
        raise ValueError("a searched staircase needs the module to put its signals in")
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
        m.d.comb += step.eq(Mux(take, count | (1 << j), count))
        count = step
    return lo + count


def pow2_value(code):
    """The value ``0`` if ``code == 0`` else ``2**(code - 1)`` of a pow2 activation code.

    ``(1 << code) >> 1``: one shift, and zero needs no special case.
    """
    return (Const(1, 1) << code) >> 1


class _Lanewise(wiring.Component):
    """One registered beat per cycle of ``self.lane(value, index)`` on every lane."""

    def __init__(self, in_shape: ShapeLike, out_shape: ShapeLike, count: int):
        self.count = count
        super().__init__({"i": In(stream.Signature(lanes(in_shape, count))),
                          "o": Out(stream.Signature(lanes(out_shape, count)))})

    def elaborate(self, platform):
        m = Module()
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)
        with m.If(en):
            m.d.sync += self.o.valid.eq(self.i.valid)
            m.d.sync += [self.o.payload[c].eq(self.lane(self.i.payload[c], c, m))
                         for c in range(self.count)]
        return m


class ReLU(_Lanewise):
    """``max(x, 0)`` on every lane.

    Members
    -------
    i : In(stream.Signature(lanes(in_shape, count)))
    o : Out(stream.Signature(lanes(out_shape, count)))
    """

    def lane(self, value, index, m):
        return Mux(value < 0, 0, value)


class Thresholds(_Lanewise):
    """Requantization by thresholds: lane ``c`` becomes ``lo + #{j : x >= T[c][j]}``.

    The thresholds are constants, so each is one comparator against a constant.

    Members
    -------
    i : In(stream.Signature(lanes(in_shape, count)))
    o : Out(stream.Signature(lanes(out_shape, count)))
    """

    def __init__(self, in_shape: ShapeLike, out_shape: ShapeLike,
                 thresholds: Sequence[Sequence[int]], lo: int):
        self.thresholds = [[int(t) for t in row] for row in thresholds]
        self.lo = lo
        super().__init__(in_shape, out_shape, len(self.thresholds))

    def lane(self, value, index, m):
        return threshold_code(value, self.thresholds[index], self.lo, m, name=f"code{index}")


class Pow2Decode(_Lanewise):
    """The value of a power-of-two activation code on every lane (:func:`pow2_value`).

    Only needed where a pow2-coded stream meets an op that adds (a residual add,
    a global sum); matrix-vector units take the codes directly.

    Members
    -------
    i : In(stream.Signature(lanes(in_shape, count)))
    o : Out(stream.Signature(lanes(out_shape, count)))
    """

    def lane(self, value, index, m):
        return pow2_value(value)

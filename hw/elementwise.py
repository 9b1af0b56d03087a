"""Lane-wise operations on a stream: ReLU, threshold requantization, pow2 decoding."""

from amaranth.hdl import Const, Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .lanes import lanes

__all__ = ["ReLU", "Thresholds", "Pow2Decode", "threshold_code", "pow2_value"]


def threshold_code(value, thresholds, lo):
    """``lo + #{j : value >= thresholds[j]}``; thresholds may be constants or signals."""
    return lo + sum((value >= t for t in thresholds), Const(0, 1))


def pow2_value(code):
    """The value ``0`` if ``code == 0`` else ``2**(code - 1)`` of a pow2 activation code.

    ``(1 << code) >> 1``: one shift, and zero needs no special case.
    """
    return (Const(1, 1) << code) >> 1


class _Lanewise(wiring.Component):
    """One registered beat per cycle of ``self.lane(value, index)`` on every lane."""

    def __init__(self, in_shape, out_shape, count):
        self.count = count
        super().__init__({"i": In(stream.Signature(lanes(in_shape, count))),
                          "o": Out(stream.Signature(lanes(out_shape, count)))})

    def elaborate(self, platform):
        m = Module()
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)
        with m.If(en):
            m.d.sync += self.o.valid.eq(self.i.valid)
            m.d.sync += [self.o.payload[c].eq(self.lane(self.i.payload[c], c))
                         for c in range(self.count)]
        return m


class ReLU(_Lanewise):
    """``max(x, 0)`` on every lane.

    Members
    -------
    i : In(stream.Signature(lanes(in_shape, count)))
    o : Out(stream.Signature(lanes(out_shape, count)))
    """

    def lane(self, value, index):
        return Mux(value < 0, 0, value)


class Thresholds(_Lanewise):
    """Requantization by thresholds: lane ``c`` becomes ``lo + #{j : x >= T[c][j]}``.

    The thresholds are constants, so each is one comparator against a constant.

    Members
    -------
    i : In(stream.Signature(lanes(in_shape, count)))
    o : Out(stream.Signature(lanes(out_shape, count)))
    """

    def __init__(self, in_shape, out_shape, thresholds, lo):
        self.thresholds = [[int(t) for t in row] for row in thresholds]
        self.lo = lo
        super().__init__(in_shape, out_shape, len(self.thresholds))

    def lane(self, value, index):
        return threshold_code(value, self.thresholds[index], self.lo)


class Pow2Decode(_Lanewise):
    """The value of a power-of-two activation code on every lane (:func:`pow2_value`).

    Only needed where a pow2-coded stream meets an op that adds (a residual add,
    a global sum); matrix-vector units take the codes directly.

    Members
    -------
    i : In(stream.Signature(lanes(in_shape, count)))
    o : Out(stream.Signature(lanes(out_shape, count)))
    """

    def lane(self, value, index):
        return pow2_value(value)

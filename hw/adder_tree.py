"""Balanced adder trees over signed terms, optionally pipelined."""

from amaranth.hdl import Const, Signal, signed

__all__ = ["AdderTree"]


class AdderTree:
    """Sum of ``±term`` values in a ``width``-bit two's complement result.

    Terms are ``(value, negative)`` pairs. Negation is pushed into the tree:
    ``a + (-b)`` is built as ``a - b``, and only a root that is wholly negative
    costs a final subtraction from zero. Every partial sum is truncated to
    ``width`` bits; the compiler guarantees the final sum fits, and modular
    arithmetic makes the truncated partial sums exact.

    Every partial sum is a signal marked ``keep``: left as one expression, Yosys
    (``alumacc``) merges the adds between two registers into a multi-operand adder
    and maps it to carry-save full adders built from LUTs, which cost a third more
    LUTs on the xc7 and a fifth more on the ECP5 than one carry chain per add
    (measured on a 144-input ternary ``RomMVU``).

    Parameters
    ----------
    width : int
        Width of the signed result.
    levels_per_stage : int or None
        Insert a register after every this many adder levels (``None``: purely
        combinational).
    """

    def __init__(self, width: int, levels_per_stage: int | None = None):
        self.width = width
        self.levels_per_stage = levels_per_stage

    @staticmethod
    def levels(n_terms):
        """Adder levels of a balanced tree over ``n_terms`` terms."""
        return max(n_terms - 1, 0).bit_length()

    def latency(self, levels):
        """Cycles from terms to sum for a tree ``levels`` deep."""
        if self.levels_per_stage is None:
            return 0
        return -(-levels // self.levels_per_stage)

    def _fit(self, v):
        # Wrap to `width` bits only where the value is wider: a narrower value keeps its
        # own signedness, so an unsigned one is never misread as negative.
        return v[:self.width].as_signed() if len(v) > self.width else v

    def build(self, m, terms, en=1, name="sum", levels=None):
        """Add the tree's logic to module ``m``; returns the result value.

        ``levels`` forces the tree to be that many adder levels deep (at least
        what the terms need), so that trees of different sizes get the same
        latency and can run side by side in one pipeline.
        """
        shape = signed(self.width)
        needed = max(len(terms) - 1, 0).bit_length()
        levels = needed if levels is None else max(levels, needed)
        level = [(v, neg) for v, neg in terms] or [(Const(0, shape), False)]
        for depth in range(1, levels + 1):
            nxt = []
            for i in range(0, len(level) - 1, 2):
                (a, na), (b, nb) = level[i], level[i + 1]
                if na == nb:
                    v, neg = a + b, na
                elif nb:
                    v, neg = a - b, False
                else:
                    v, neg = b - a, False
                v = self._fit(v)
                s = Signal(v.shape(), name=f"{name}_a{depth}_{i // 2}", attrs={"keep": 1})
                m.d.comb += s.eq(v)
                nxt.append((s, neg))
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
            lps = self.levels_per_stage
            if lps is not None and (depth % lps == 0 or depth == levels):
                staged = []
                for j, (v, neg) in enumerate(level):
                    # No reset: the valid flags beside the tree say what holds data,
                    # and a reset would be one more net to every register.
                    r = Signal(shape, name=f"{name}_l{depth}_{j}", reset_less=True)
                    with m.If(en):
                        m.d.sync += r.eq(v)
                    staged.append((r, neg))
                level = staged
        value, neg = level[0]
        return self._fit(-value if neg else value)

"""Canonical signed digits: integer constants as sums of signed powers of two.

A multiplication by a constant ``w`` becomes ``sum(±(x << shift))`` over the
non-zero digits of ``w`` in non-adjacent form (NAF), which has the fewest
non-zero digits of any signed-digit form. Ternary weights have one digit with
shift 0; power-of-two weights one digit; an m-bit integer at most
``ceil((m + 1) / 2)``.
"""

__all__ = ["csd_digits", "max_digits", "max_shift", "const_product", "small_product"]


def csd_digits(w):
    """Non-zero NAF digits of ``w`` as ``[(negative, shift), ...]``, low shifts first."""
    w = int(w)
    digits, shift = [], 0
    while w != 0:
        if w & 1:
            d = 2 - (w & 3)          # +1 if w = 1 (mod 4), -1 if w = 3 (mod 4)
            digits.append((d < 0, shift))
            w -= d
        w >>= 1
        shift += 1
    return digits


def max_digits(weights):
    return max((len(csd_digits(w)) for w in weights), default=0)


def max_shift(weights):
    return max((s for w in weights for _, s in csd_digits(w)), default=0)


def const_product(x, k):
    """``x * k`` for an unsigned Amaranth value ``x`` and a constant ``k >= 0``, as the
    shifted adds of ``k``'s digits: no multiplier cell (a synthesizer would map ``x * k``
    onto a DSP block)."""
    from amaranth.hdl import Const
    terms = [(neg, x.as_unsigned() << shift) for neg, shift in csd_digits(k)]
    if not terms:
        return Const(0, 1)
    acc = None
    for neg, t in sorted(terms, key=lambda nt: nt[0]):    # positive terms first
        acc = t if acc is None else (acc - t if neg else acc + t)
    return acc.as_unsigned()


def small_product(x, y):
    """``x * y`` of two small unsigned values without a multiplier: a multiplexer over
    ``y``'s values of :func:`const_product` (for the few-bit counts of command decoding)."""
    from amaranth.hdl import Array
    return Array([const_product(x, k) for k in range(1 << len(y))])[y]

"""Packed fields the layer engine's cores pass between them (``amaranth.lib.data`` layouts).

A run-time weight is a list of ``digits`` signed power-of-two digits: the weight
``w`` is ``sum_d (nz_d ? (neg_d ? -1 : 1) << shift_d : 0)``. Ternary weights need
one digit without a shift, power-of-two weights one digit with a shift, m-bit
integers their canonical signed digits (at most ``ceil((m + 1) / 2)``), and the
decoder turns LAT2 and codebook codes into the same form. The MAC bank never
multiplies: a digit is a shift, a conditional negation and an add.
"""

from amaranth.hdl import Mux, unsigned
from amaranth.lib import data

__all__ = ["digit_layout", "weight_layout", "DigitFormat", "pick"]


class DigitFormat:
    """How many digits a run-time weight has and how far each may shift.

    Parameters
    ----------
    digits : int
        Signed digits per weight (1 for ternary and power-of-two weights).
    max_shift : int
        Largest shift of any digit (0 for ternary).
    """

    def __init__(self, digits=1, max_shift=0):
        if digits < 1 or max_shift < 0:
            raise ValueError(f"need digits >= 1 and max_shift >= 0, got {digits}, {max_shift}")
        self.digits, self.max_shift = digits, max_shift
        self.shift_bits = max(max_shift, 0).bit_length()

    @property
    def digit(self):
        return digit_layout(self.shift_bits)

    @property
    def weight(self):
        return weight_layout(self)

    @property
    def bits(self):
        """Bits of one run-time weight."""
        return self.digits * (2 + self.shift_bits)

    def encode(self, w):
        """The bits of integer weight ``w`` in this format (ValueError if it does not fit)."""
        from ..csd import csd_digits
        found = csd_digits(w)
        if len(found) > self.digits or any(s > self.max_shift for _, s in found):
            raise ValueError(f"weight {w} needs digits {found}, more than {self.digits} "
                             f"digit(s) of shift <= {self.max_shift}")
        word, width = 0, 2 + self.shift_bits
        for d, (neg, shift) in enumerate(found):
            word |= (1 | (int(neg) << 1) | (shift << 2)) << (d * width)
        return word

    def decode(self, word):
        """The integer weight that the bits ``word`` of this format stand for."""
        width, w = 2 + self.shift_bits, 0
        for d in range(self.digits):
            field = (int(word) >> (d * width)) & ((1 << width) - 1)
            if field & 1:
                w += (-1 if field & 2 else 1) << (field >> 2)
        return w

    def __eq__(self, other):
        return (isinstance(other, DigitFormat) and
                (self.digits, self.max_shift) == (other.digits, other.max_shift))

    def __hash__(self):
        return hash((self.digits, self.max_shift))

    def __repr__(self):
        return f"DigitFormat(digits={self.digits}, max_shift={self.max_shift})"


def digit_layout(shift_bits):
    """One signed digit: non-zero, negative, and the shift."""
    fields = {"nz": 1, "neg": 1}
    if shift_bits:
        fields["shift"] = unsigned(shift_bits)
    return data.StructLayout(fields)


def weight_layout(fmt):
    """A run-time weight: ``fmt.digits`` digits, digit 0 in the low bits."""
    return data.ArrayLayout(digit_layout(fmt.shift_bits), fmt.digits)


def pick(array, index):
    """``array[index]`` of an ``ArrayLayout`` view and a run-time ``index``, as a
    multiplexer over the elements. (A view indexed by a signal shifts by ``index``
    times the element width, a multiplication that synthesis may put on a DSP block.)"""
    elem = array.shape().elem_shape
    value = array[0].as_value() if isinstance(array[0], data.View) else array[0]
    for i in range(1, array.shape().length):
        item = array[i].as_value() if isinstance(array[i], data.View) else array[i]
        value = Mux(index == i, item, value)
    return data.View(elem, value) if isinstance(elem, data.Layout) else value

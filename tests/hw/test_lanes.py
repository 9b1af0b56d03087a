"""hw.lanes's range helpers, and sim.golden.int_range (its twin: hw and sim import neither)."""

import pytest

from hw.lanes import int_shape, shape_for_range, shape_range
from sim.golden import int_range


@pytest.mark.parametrize("signed", [False, True])
def test_shape_range_is_golden_int_range(signed):
    for bits in range(1, 65):
        assert shape_range(int_shape(bits, signed)) == int_range(bits, signed)


@pytest.mark.parametrize("signed", [False, True])
def test_shape_for_range_is_the_narrowest(signed):
    """Each type is the answer for its own range, and for a range one past it the next width."""
    for bits in range(1, 65):
        lo, hi = int_range(bits, signed)
        assert shape_for_range(lo, hi) == int_shape(bits, signed)
        wider = shape_for_range(lo - 1 if signed else lo, hi + 1)
        assert wider.width == bits + 1


def test_shape_for_range_of_mixed_ranges():
    assert shape_for_range(0, 0) == int_shape(1, False)
    assert shape_for_range(-1, 0) == int_shape(1, True)
    assert shape_for_range(-1, 1) == int_shape(2, True)
    assert shape_for_range(-1, 128) == int_shape(9, True)
    assert shape_for_range(-129, 0) == int_shape(9, True)

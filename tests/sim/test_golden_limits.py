"""The golden model at the widths the limits allow: exact, without wrapping or blowing up."""

import numpy as np
import pytest

from sim import golden


def _definition(x, th, lo):
    xc = np.moveaxis(x, 1, -1)[..., None]
    return np.moveaxis((xc >= th).sum(axis=-1), -1, 1) + lo


@pytest.mark.parametrize("bits,signed", [(1, False), (3, True), (12, True)])
def test_threshold_search_equals_the_definition(bits, signed):
    rng = np.random.default_rng(bits)
    levels = 2 ** bits - 1
    th = np.sort(rng.integers(-5000, 5000, size=(3, levels)), axis=1)
    th[0, : levels // 2] = th[0, 0]                   # repeated thresholds
    x = rng.integers(-6000, 6000, size=(4, 3, 5, 2))
    x[0, 0, 0, 0] = th[0, 0]                          # exactly on a threshold
    lo = golden.int_range(bits, signed)[0]
    np.testing.assert_array_equal(golden.threshold(x, th, bits=bits, signed=signed),
                                  _definition(x, th, lo))


def test_unsorted_thresholds_keep_the_definition():
    th = np.array([[5, -3, 9]])
    x = np.arange(-6, 12).reshape(1, 1, -1, 1)
    np.testing.assert_array_equal(golden.threshold(x, th, bits=2, signed=False),
                                  _definition(x, th, 0))


def test_twelve_bit_threshold_on_a_large_map_uses_little_memory():
    import tracemalloc
    th = np.sort(np.random.default_rng(0).integers(-2 ** 20, 2 ** 20, size=(64, 4095)), axis=1)
    x = np.random.default_rng(1).integers(-2 ** 20, 2 ** 20, size=(2, 64, 32, 32))
    tracemalloc.start()
    golden.threshold(x, th, bits=12, signed=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * x.nbytes                     # the definition would take 4,095x

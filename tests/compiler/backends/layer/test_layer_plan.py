"""Layer-engine planning choices that follow the engine's clock."""

import pytest

from compiler.backends.layer.plan import ONE_CYCLE_DECODE_MHZ, decode_cycles
from compiler.backends.layer.timing import FlashRate


@pytest.mark.parametrize("mhz, cycles", [(25, 1), (ONE_CYCLE_DECODE_MHZ, 1), (50, 2), (100, 2)])
def test_the_decoder_takes_two_cycles_an_item_above_its_one_cycle_clock(mhz, cycles):
    assert decode_cycles(FlashRate(mhz * 1e6, 62.5e6, 2)) == cycles

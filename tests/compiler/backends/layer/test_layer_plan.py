"""Layer-engine planning choices that follow the engine's clock."""

import pytest

from compiler.backends.layer.plan import ONE_CYCLE_DECODE_MHZ, TWO_CYCLE_DECODE_MHZ, decode_cycles
from compiler.backends.layer.timing import FlashRate


@pytest.mark.parametrize("mhz, cycles", [(25, 1), (ONE_CYCLE_DECODE_MHZ, 1), (50, 2),
                                         (TWO_CYCLE_DECODE_MHZ, 2), (100, 3)])
def test_the_decoder_takes_more_cycles_an_item_at_faster_clocks(mhz, cycles):
    assert decode_cycles(FlashRate(mhz * 1e6, 62.5e6, 2)) == cycles

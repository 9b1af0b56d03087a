"""The engine's simulation runs its two clocks at the board's ratio."""

import pytest

from boards.engine_clocks import ENGINE_CLOCKS
from compiler.backends.layer.backend import engine_rate_warning
from compiler.backends.layer.simtop import FlashSetup
from compiler.backends.layer.verify import sim_clocks
from sim.verilator import CLK_PERIOD_NS


@pytest.mark.parametrize("board", sorted(ENGINE_CLOCKS))
def test_flash_clock_keeps_the_boards_ratio(board):
    """On the ULX3S the engine runs at 25 MHz and the flash at 62.5 MHz: simulated with
    the bench's 100 MHz clock as the engine's, the flash must run at 250 MHz, or a
    stream-bound engine looks slower than it is (16.2 M cycles against 9.1 M, once,
    when the ratio was 50 : 62.5)."""
    c = ENGINE_CLOCKS[board]
    flash_ns = sim_clocks(FlashSetup(**c.sim_flash_setup()))["flash_clk"]
    assert CLK_PERIOD_NS / flash_ns == pytest.approx(c.flash_hz / c.engine_hz)


class _Plan:
    cycles = 1000


def test_a_slower_engine_than_modelled_is_a_warning():
    assert engine_rate_warning(_Plan(), {"cycles_per_inference": 1050}) is None
    line = engine_rate_warning(_Plan(), {"cycles_per_inference": 1778})
    assert "1,778" in line and "78%" in line and "1,000" in line

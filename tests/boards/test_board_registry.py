"""The board registry: names, aliases, budgets against the platforms."""

import pytest

from boards import ALIASES, BOARDS, DEFAULT_BOARD, BoardError, board_names, get_board
from compiler.backends.dataflow.cost import FABRICS


def test_names_and_alias():
    assert set(BOARDS) == {"arty_a7_35", "arty_a7_100", "ulx3s", "icebreaker"}
    assert get_board("arty_a7") is get_board("arty_a7_35")
    assert ALIASES == {"arty_a7": "arty_a7_35"}
    assert get_board(DEFAULT_BOARD).name == "arty_a7_35"
    assert get_board("ARTY-A7-100").name == "arty_a7_100"
    assert board_names() == ["arty_a7", "arty_a7_100", "arty_a7_35", "icebreaker", "ulx3s"]


def test_unknown_board_lists_valid_names():
    with pytest.raises(BoardError) as err:
        get_board("de10_nano")
    message = str(err.value)
    assert "\n" not in message
    assert message == ("unknown board 'de10_nano'; choose one of: arty_a7 (= arty_a7_35), "
                       "arty_a7_100, arty_a7_35, icebreaker, ulx3s")


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_matches_its_platform(name):
    board = get_board(name)
    platform = board.platform()
    assert board.clock_hz == platform.default_clk_frequency
    assert board.toolchain == platform.toolchain
    assert platform.device.lower() in board.device.lower()
    assert board.family in FABRICS                      # the compiler's cost models
    assert board.open_toolchain == (board.family != "xilinx")
    assert set(board.budget) == {"luts", "ffs", "brams", "dsps", "bram_bits"}
    assert all(isinstance(v, int) and v > 0 for v in board.budget.values())
    assert board.lut_kind == ("LUT6" if board.family == "xilinx" else "LUT4")
    for index in range(board.leds):
        platform.request("led", index, dir="-")


def test_datasheet_budgets():
    a35, a100, ulx3s, ice = (get_board(n) for n in ("arty_a7_35", "arty_a7_100", "ulx3s",
                                                    "icebreaker"))
    assert (a35.luts, a35.ffs, a35.brams, a35.dsps) == (20_800, 41_600, 100, 90)
    assert (a100.luts, a100.ffs, a100.brams, a100.dsps) == (63_400, 126_800, 270, 240)
    assert (ulx3s.luts, ulx3s.ffs, ulx3s.brams, ulx3s.dsps) == (83_640, 83_640, 208, 156)
    assert (ice.luts, ice.ffs, ice.brams, ice.dsps) == (5_280, 5_280, 30, 8)
    assert a35.bram_bits == ulx3s.bram_bits == 18 * 1024 and ice.bram_bits == 4 * 1024


def test_openfpgaloader_names():
    assert {n: b.loader_board for n, b in BOARDS.items()} == {
        "arty_a7_35": "arty_a7_35t", "arty_a7_100": "arty_a7_100t",
        "ulx3s": "ulx3s", "icebreaker": "ice40_generic"}
    assert not get_board("icebreaker").sram_load

"""The sync clock from the board's PLL: the divisors, what each board makes, the top."""

import pytest
from amaranth.hdl import signed

from boards import BoardError, BoardTop, get_board
from boards.clocking import (_ecp5_setting, _mmcm_setting, ecp5_pll_divisors,
                             ice40_pll_divisors, pll_frequency)
from boards.engine_clocks import engine_clocks
from hw.elementwise import ReLU


def test_each_board_makes_its_default_clock():
    assert pll_frequency(get_board("ulx3s"), 100e6) == 100e6
    assert pll_frequency(get_board("arty_a7"), 100e6) == 100e6        # the oscillator itself
    # 12 MHz x 67 / 16: the iCE40's nearest to 50 MHz.
    assert pll_frequency(get_board("icebreaker"), 50e6) == 50.25e6
    for board in ("ulx3s", "arty_a7_100", "icebreaker"):
        b = get_board(board)
        assert abs(pll_frequency(b, b.sync_hz) - b.sync_hz) <= 0.005 * b.sync_hz


@pytest.mark.parametrize("mhz", [12, 33.3, 48, 66.6, 75, 90, 100, 125, 150, 200])
def test_outputs_follow_the_formulas_within_the_ranges(mhz):
    hz = mhz * 1e6
    p, got = ice40_pll_divisors(12e6, hz)
    pfd = 12e6 / (p["DIVR"] + 1)
    assert 10e6 <= pfd <= 133e6 and 533e6 <= pfd * (p["DIVF"] + 1) <= 1066e6
    assert got == pfd * (p["DIVF"] + 1) / 2 ** p["DIVQ"]
    e = _ecp5_setting(25e6, hz)
    assert e.hz == 25e6 * e.params["CLKFB_DIV"] / e.params["CLKI_DIV"]
    assert 400e6 <= e.hz * e.params["CLKOP_DIV"] <= 800e6
    x = _mmcm_setting(100e6, hz)
    vco = 100e6 * x.params["CLKFBOUT_MULT_F"]
    assert 600e6 <= vco <= 1200e6 and x.hz == vco / x.params["CLKOUT0_DIVIDE_F"]
    for value in x.params.values():
        assert (value * 8) == int(value * 8)                 # eighths
    for s in (got, x.hz):
        assert abs(s - hz) < 0.02 * hz
    # The ECP5's CLKOP feeds back, so f_in * CLKFB_DIV / CLKI_DIV (a phase detector of at
    # least 3.125 MHz: CLKI_DIV <= 8) is all it makes: not 12 or 48 MHz from 25.
    if abs(e.hz - hz) > 0.005 * hz:
        with pytest.raises(BoardError, match="the nearest is"):
            pll_frequency(get_board("ulx3s"), hz)


def test_a_clock_no_pll_makes_is_a_clear_error():
    with pytest.raises(BoardError, match=r"--clock 1 MHz: icebreaker's PLL cannot make it "
                                         r"from its 12 MHz oscillator; the nearest is"):
        pll_frequency(get_board("icebreaker"), 1e6)
    with pytest.raises(BoardError, match="--clock 2000 MHz: ulx3s's PLL"):
        pll_frequency(get_board("ulx3s"), 2000e6)


def test_top_uart_divisor_follows_the_clock():
    for hz, cpb in [(25e6, 217), (50e6, 434), (100e6, 868)]:
        top = BoardTop(ReLU(signed(8), signed(8), 2), "ulx3s", clock_hz=hz, baud=115_200)
        assert top.clock_hz == hz and top.clocks_per_bit == cpb
        net = None if hz == 25e6 else "clock.pll_sync_clk"
        assert top.board_clocks["sync"].net == net and top.board_clocks["sync"].hz == hz


@pytest.mark.parametrize("board, primitive", [("ulx3s", "EHXPLLL"), ("icebreaker", "SB_PLL40_PAD"),
                                              ("arty_a7", "MMCME2_ADV")])
def test_plan_has_the_pll_and_its_constraint(tmp_path, board, primitive):
    from boards import build
    hz = {"ulx3s": 75e6, "icebreaker": 50.25e6, "arty_a7": 125e6}[board]
    top = BoardTop(ReLU(signed(8), signed(8), 2), board, clock_hz=hz)
    res = build(board, top, tmp_path, run_toolchain=False, progress=lambda line: None)
    assert res.clocks["sync"]["mhz"] == hz / 1e6
    text = "".join(p.read_text() for p in tmp_path.iterdir()
                   if p.suffix in (".il", ".v", ".lpf", ".pcf", ".xdc", ".sdc"))
    assert primitive in text
    if board == "ulx3s":
        assert f'FREQUENCY NET "clock.pll_sync_clk" {hz:.1f} HZ;' in text
    if board == "icebreaker":
        assert "clock.pll_sync_clk" in text        # nextpnr's SDC/pre-pack constraint


def test_engine_clock_on_request():
    assert engine_clocks("ulx3s", 50_000_000).engine_hz == 50_000_000
    assert engine_clocks("ulx3s", 100_000_000).flash_hz == 62_500_000
    assert ecp5_pll_divisors(25e6, 100e6, 62.5e6)["CLKOS_DIV"] == 8
    with pytest.raises(BoardError, match="together with the flash's 62.5 MHz"):
        engine_clocks("ulx3s", 40_000_000)
    with pytest.raises(BoardError, match="runs at the oscillator's 100 MHz"):
        engine_clocks("arty_a7_100", 50_000_000)
    assert engine_clocks("arty_a7_100", 100_000_000) is engine_clocks("arty_a7_100")

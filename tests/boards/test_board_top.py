"""The board top, end to end over its UART pins in the Amaranth simulator."""

import random
from fractions import Fraction

import numpy as np
import pytest
from amaranth.hdl import Fragment, signed
from amaranth.sim import Simulator

from boards import BoardError, BoardTop, get_board
from boards.host import decode_beats, encode_beats
from boards.top import clocks_per_bit, fastest_baud
from hw.elementwise import ReLU
from hw.mvu import ConstantMVU

from uart_model import receive_bytes, send_break, send_bytes

WEIGHTS = [[1, -2, 0, 4], [0, 1, 1, -1], [2, 0, -1, 1]]


def mvu():
    # 6-bit signed inputs (one byte a lane), 12-bit signed sums (two bytes, sign-extended)
    return ConstantMVU(WEIGHTS, in_shape=signed(6), acc_width=12, bias=[3, -5, 0])


def expected(x):
    return (np.array(x) @ np.array(WEIGHTS).T + np.array([3, -5, 0])).tolist()


def simulate(top, *benches):
    """Run testbenches side by side: a host sends and listens at the same time."""
    sim = Simulator(top)
    sim.add_clock(1 / top.clock_hz)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()


def test_board_top_mvu_over_uart():
    top = BoardTop(mvu(), "icebreaker", baud=3_000_000, clock_hz=12_000_000)  # 4 cycles a bit
    cpb = top.clocks_per_bit
    assert cpb == 4
    rng = random.Random(1)
    x = [[rng.randint(-32, 31) for _ in range(4)] for _ in range(6)]
    data = encode_beats(x, top.in_format)
    assert len(data) == 6 * 4 and top.out_format.beat_bytes == 3 * 2
    got = {}

    bridge = top.bridge

    async def sender(ctx):
        ctx.set(bridge.rx, 1)
        await ctx.tick().repeat(5)
        assert ctx.get(bridge.result) == 0 and ctx.get(bridge.activity) == 0
        await send_bytes(ctx, bridge.rx, data, cpb)

    async def listener(ctx):
        # Results start coming back while the input is still going in.
        got["bytes"], got["framing"] = await receive_bytes(
            ctx, bridge.tx, 6 * top.out_format.beat_bytes, cpb, timeout=2000)
        await ctx.tick().repeat(2 * cpb)
        got["leds"] = ctx.get(bridge.activity), ctx.get(bridge.result), ctx.get(bridge.error)

    simulate(top, sender, listener)
    assert got["framing"] == 0
    assert decode_beats(got["bytes"], top.out_format) == expected(x)
    assert got["leds"] == (1, 1, 0)


def test_break_resets_a_half_sent_input():
    top = BoardTop(mvu(), "icebreaker", baud=3_000_000, clock_hz=12_000_000)
    cpb = top.clocks_per_bit
    x = [[31, -32, 7, -1], [0, 1, 2, 3]]
    got = {}

    bridge = top.bridge

    async def sender(ctx):
        ctx.set(bridge.rx, 1)
        await ctx.tick().repeat(5)
        await send_bytes(ctx, bridge.rx, b"\x05\x06\x07", cpb)     # 3 of 4 bytes of a beat
        await send_break(ctx, bridge.rx, cpb)
        await send_bytes(ctx, bridge.rx, encode_beats(x, top.in_format), cpb)

    async def listener(ctx):
        got["bytes"], _ = await receive_bytes(ctx, bridge.tx, 2 * 6, cpb, timeout=2000)
        got["error"] = ctx.get(bridge.error)

    simulate(top, sender, listener)
    assert decode_beats(got["bytes"], top.out_format) == expected(x)
    assert got["error"] == 0            # the break cleared the error it raised itself


def test_fifo_overrun_lights_error():
    # One input byte becomes 8 two-byte sums: the UART sends 16 bytes for every byte it
    # receives, the accelerator waits on it, and input piles up in a 4-byte FIFO.
    expand = ConstantMVU([[1]] * 8, in_shape=signed(8), acc_width=16)
    top = BoardTop(expand, "icebreaker", baud=3_000_000, rx_fifo_depth=4,
                   clock_hz=12_000_000)
    cpb = top.clocks_per_bit
    got = {}

    async def host(ctx):
        bridge = top.bridge
        ctx.set(bridge.rx, 1)
        await ctx.tick().repeat(5)
        await send_bytes(ctx, bridge.rx, bytes(range(1, 41)), cpb)
        got["error"] = ctx.get(bridge.error)

    simulate(top, host)
    assert got["error"] == 1


def test_board_top_relu_at_default_baud_on_ulx3s():
    # 100 MHz (the PLL's, by default) / 2 Mbaud = 50 cycles per bit, as the ULX3S build:
    # the fastest rate the FT231X (3 MHz / 1.5) makes exactly too.
    top = BoardTop(ReLU(signed(8), signed(8), 2), "ulx3s")
    assert top.baud == 2_000_000 and top.clock_hz == 100e6 and top.clocks_per_bit == 50
    x = [[-5, 7], [127, -128]]
    got = {}

    bridge = top.bridge

    async def sender(ctx):
        ctx.set(bridge.rx, 1)
        await ctx.tick().repeat(5)
        await send_bytes(ctx, bridge.rx, encode_beats(x, top.in_format), top.clocks_per_bit)

    async def listener(ctx):
        got["bytes"], _ = await receive_bytes(ctx, bridge.tx, 4, top.clocks_per_bit,
                                              timeout=20 * 50)

    simulate(top, sender, listener)
    assert decode_beats(got["bytes"], top.out_format) == [[0, 7], [127, 0]]


@pytest.mark.parametrize("board,clock_hz,baud", [
    ("ulx3s", 100e6, 2_000_000),          # FT231X: 3 MHz / 1.5; 3 Mbaud would be 33.3 cycles
    ("ulx3s", 25e6, 1_000_000),           # the layer engine's clock
    ("ulx3s", 75e6, 3_000_000),
    ("arty_a7", 100e6, 4_000_000),        # FT2232H: 12 MHz / 3
    ("icebreaker", 50.25e6, 750_000),     # the iCE40 PLL's 50 MHz: 67 cycles, 12 MHz / 16
    ("icebreaker", 12e6, 3_000_000),
    ("icebreaker", 1e6, 250_000),         # 4 cycles a bit, 12 MHz / 48
])
def test_fastest_exact_baud(board, clock_hz, baud):
    b = get_board(board)
    assert fastest_baud(clock_hz, b) == baud
    assert clock_hz / baud == round(clock_hz / baud) >= 4
    d = Fraction(b.uart_max_baud, baud)
    assert d in (1, Fraction(3, 2)) or (d >= 2 and (8 * d).denominator == 1)


def test_baud_rate_checks():
    assert clocks_per_bit(100e6, 115_200) == 868
    assert clocks_per_bit(25e6, 1_000_000) == 25
    # The rate is checked before the accelerator is looked at.
    with pytest.raises(BoardError, match="faster than ulx3s's USB-UART"):
        BoardTop(None, "ulx3s", baud=6_000_000)
    with pytest.raises(BoardError, match="at least 4"):
        BoardTop(None, "icebreaker", baud=6_000_000, clock_hz=12_000_000)
    with pytest.raises(BoardError, match=r"off at 12 MHz \(4 cycles per bit\)"):
        BoardTop(None, "icebreaker", baud=2_700_000, clock_hz=12_000_000)  # 4.44 a bit
    with pytest.raises(BoardError, match="positive integer"):
        BoardTop(None, "icebreaker", baud=115200.5)
    with pytest.raises(BoardError, match="unknown board 'zedboard'"):
        BoardTop(None, "zedboard")


def test_top_takes_board_object_or_name():
    by_object, by_name = BoardTop(mvu(), get_board("arty_a7")), BoardTop(mvu(), "arty_a7_35")
    assert by_object.board is by_name.board is get_board("arty_a7_35")
    assert by_object.clocks_per_bit == 25                  # 4 Mbaud at 100 MHz
    for top in (by_object, by_name):
        Fragment.get(top, None)          # elaborates without a platform (simulation)

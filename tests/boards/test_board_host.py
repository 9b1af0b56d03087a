"""The host side of the UART protocol, against a fake serial port."""

import io

import pytest

from boards.host import (LaneFormat, ProtocolError, decode_beats, encode_beats, infer, reset,
                         receive_beats)


class FakePort:
    """A serial port whose board answers each ``write`` with ``reply(data)``."""

    def __init__(self, reply, chunk=3):
        self.reply, self.chunk = reply, chunk
        self.written, self.pending = bytearray(), bytearray()
        self.breaks = 0

    def write(self, data):
        self.written += data
        self.pending += self.reply(bytes(data))

    def read(self, n):
        n = min(n, self.chunk)                  # pyserial may return less than asked
        out, self.pending = bytes(self.pending[:n]), self.pending[n:]
        return out

    def send_break(self, duration):
        self.breaks += 1

    def reset_input_buffer(self):
        self.pending.clear()


def test_encoding_layout():
    fmt = LaneFormat(12, True, 3)
    assert (fmt.lane_bytes, fmt.beat_bytes, fmt.range) == (2, 6, (-2048, 2047))
    assert encode_beats([[1, -1, -2048]], fmt) == bytes([1, 0, 0xFF, 0xFF, 0x00, 0xF8])
    assert encode_beats([[5, 250]], LaneFormat(8, False, 2)) == bytes([5, 250])
    assert encode_beats([[-1, 0]], LaneFormat(3, True, 2)) == bytes([0xFF, 0])
    assert decode_beats(bytes([0xFF, 0x0F]), LaneFormat(12, False, 1)) == [[4095]]
    # bits above the lane are extension, ignored on decode
    assert decode_beats(bytes([0x07, 0x7F]), LaneFormat(3, True, 2)) == [[-1, -1]]


@pytest.mark.parametrize("fmt", [LaneFormat(1, False, 7), LaneFormat(4, True, 3),
                                 LaneFormat(16, True, 2), LaneFormat(17, False, 2),
                                 LaneFormat(24, True, 1)])
def test_round_trip(fmt):
    lo, hi = fmt.range
    beats = [[lo, hi] * (fmt.count // 2) + [0] * (fmt.count % 2), list(range(fmt.count))]
    beats[1] = [min(v, hi) for v in beats[1]]
    assert decode_beats(encode_beats(beats, fmt), fmt) == beats


def test_encoding_errors():
    fmt = LaneFormat(4, True, 2)
    with pytest.raises(ProtocolError,
                       match=r"beat 1 lane 0: 8 does not fit a signed 4-bit lane \[-8, 7\]"):
        encode_beats([[0, 0], [8, 0]], fmt)
    with pytest.raises(ProtocolError, match="beat 0 has 3 lanes, the input takes 2"):
        encode_beats([[0, 0, 0]], fmt)
    with pytest.raises(ProtocolError, match="not a whole number of 2-byte beats"):
        decode_beats(b"\x00\x00\x00", fmt)


def test_infer_against_fake_board():
    # The "board" adds 1 to each signed 8-bit lane and returns 16-bit lanes.
    in_fmt, out_fmt = LaneFormat(8, True, 2), LaneFormat(16, True, 2)

    def board(data):
        beats = decode_beats(data, in_fmt)
        return encode_beats([[v + 1 for v in b] for b in beats], out_fmt)

    port = FakePort(board)
    assert infer(port, [[-128, 127], [0, -1]], in_fmt, out_fmt, 2) == [[-127, 128], [1, 0]]
    assert port.written == bytes([0x80, 0x7F, 0x00, 0xFF])


def test_short_read_is_a_clear_error():
    port = FakePort(lambda data: b"\x01\x02\x03")
    with pytest.raises(ProtocolError, match=r"sent 3 of 8 bytes \(0 of 2 output beats\)"):
        infer(port, [[0]], LaneFormat(8, False, 1), LaneFormat(16, False, 2), 2)
    with pytest.raises(ProtocolError, match="sent 0 of 1 bytes"):
        receive_beats(io.BytesIO(b""), 1, LaneFormat(8, False, 1))


def test_reset_sends_break_and_drops_input():
    port = FakePort(lambda data: b"junk")
    port.write(b"x")
    reset(port, settle_s=0)
    assert port.breaks == 1 and port.pending == b""
    with pytest.raises(ProtocolError, match="cannot send a UART break"):
        reset(io.BytesIO(), settle_s=0)

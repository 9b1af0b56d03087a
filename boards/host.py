"""The host side of the board's UART protocol, in pure Python.

The protocol (docs/boards.md) has no framing: the host writes input beats as
bytes and reads output beats as bytes. A beat of ``n`` lanes of ``width`` bits
is ``n * ceil(width / 8)`` bytes, lane 0 first, each lane little-endian two's
complement (see :mod:`hw.serdes`). A UART break resets the accelerator.

Every function takes any file-like ``port`` with ``write(bytes)`` and
``read(n)``; for a real board that is a pyserial port (``pip install pyserial``)::

    import serial
    from boards.host import LaneFormat, infer
    with serial.Serial("/dev/ttyUSB1", 115200, timeout=5) as port:
        out = infer(port, beats, LaneFormat(8, True, 3), LaneFormat(16, True, 10), 1)
"""

import time
from dataclasses import dataclass

__all__ = ["LaneFormat", "encode_beats", "decode_beats", "send_beats", "receive_beats",
           "infer", "reset", "ProtocolError"]


class ProtocolError(Exception):
    """The board sent too few bytes, or a value does not fit its lane."""


@dataclass(frozen=True)
class LaneFormat:
    """How one beat travels: ``count`` lanes of ``width``-bit integers."""
    width: int
    signed: bool
    count: int

    @property
    def lane_bytes(self):
        return -(-self.width // 8)

    @property
    def beat_bytes(self):
        return self.count * self.lane_bytes

    @property
    def range(self):
        if self.signed:
            return -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        return 0, (1 << self.width) - 1


def encode_beats(beats, fmt):
    """Bytes for ``beats``, each a sequence of ``fmt.count`` integers."""
    lo, hi = fmt.range
    out = bytearray()
    for k, beat in enumerate(beats):
        beat = [int(v) for v in beat]
        if len(beat) != fmt.count:
            raise ProtocolError(f"beat {k} has {len(beat)} lanes, the input takes {fmt.count}")
        for c, v in enumerate(beat):
            if not lo <= v <= hi:
                raise ProtocolError(f"beat {k} lane {c}: {v} does not fit a "
                                    f"{'signed' if fmt.signed else 'unsigned'} "
                                    f"{fmt.width}-bit lane [{lo}, {hi}]")
            out += v.to_bytes(fmt.lane_bytes, "little", signed=fmt.signed)
    return bytes(out)


def decode_beats(data, fmt):
    """Beats (lists of integers) from ``data``, a whole number of beats of bytes."""
    if len(data) % fmt.beat_bytes:
        raise ProtocolError(f"{len(data)} bytes is not a whole number of "
                            f"{fmt.beat_bytes}-byte beats")
    nb, mask = fmt.lane_bytes, (1 << fmt.width) - 1
    beats = []
    for start in range(0, len(data), fmt.beat_bytes):
        beat = []
        for c in range(fmt.count):
            raw = int.from_bytes(data[start + c * nb:start + (c + 1) * nb], "little") & mask
            if fmt.signed and raw >> (fmt.width - 1):
                raw -= 1 << fmt.width
            beat.append(raw)
        beats.append(beat)
    return beats


def send_beats(port, beats, fmt):
    data = encode_beats(beats, fmt)
    port.write(data)
    if hasattr(port, "flush"):
        port.flush()
    return len(data)


def receive_beats(port, count, fmt):
    """Read ``count`` beats; a port that times out (returns short) raises ProtocolError."""
    want = count * fmt.beat_bytes
    data = bytearray()
    while len(data) < want:
        chunk = port.read(want - len(data))
        if not chunk:
            raise ProtocolError(f"the board sent {len(data)} of {want} bytes "
                                f"({len(data) // fmt.beat_bytes} of {count} output beats) "
                                "before the port timed out")
        data += chunk
    return decode_beats(bytes(data), fmt)


def infer(port, beats, in_fmt, out_fmt, out_beats):
    """Send one input (its ``beats``), return its ``out_beats`` output beats.

    One input at a time, then wait for its output: the UART has no flow
    control, so this keeps the board's input FIFO from overflowing however
    slow the accelerator is.
    """
    send_beats(port, beats, in_fmt)
    return receive_beats(port, out_beats, out_fmt)


def reset(port, settle_s=0.05):
    """Send a break (resets the accelerator) and drop whatever the board had sent.

    Needs a pyserial-like port (``send_break``); waits ``settle_s`` for bytes in
    flight, then clears the input buffer.
    """
    if not hasattr(port, "send_break"):
        raise ProtocolError("this port cannot send a UART break (needs a pyserial port)")
    port.send_break(0.01)
    time.sleep(settle_s)
    if hasattr(port, "reset_input_buffer"):
        port.reset_input_buffer()

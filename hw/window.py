"""Sliding windows over a feature map stream, with line buffers."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, ShapeLike, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .lanes import lanes

__all__ = ["SlidingWindow"]


class SlidingWindow(wiring.Component):
    """All ``kernel`` x ``kernel`` windows at a ``stride`` of an image, no padding.

    Input: ``height * width`` pixels of ``channels`` lanes, raster order.
    Output: one beat per window position, raster order, holding
    ``kernel * kernel * channels`` lanes; lane ``(ky * kernel + kx) * channels + c``
    is channel ``c`` of the pixel at offset ``(ky, kx)`` in the window.

    The last ``kernel - 1`` rows live in one line-buffer memory, a column of
    ``kernel - 1`` pixels per address; the window itself is a ``kernel`` x
    ``kernel`` shift register that takes one new column per input pixel. A pixel
    goes in every cycle unless a finished window waits on ``o``.

    ``line_style`` is passed to synthesis as the line buffer's ``ram_style``:
    ``"distributed"`` keeps a wide, shallow line buffer (a max pool's over many
    channels) in LUT RAM, where block RAM would waste most of its depth.

    Members
    -------
    i : In(stream.Signature(lanes(shape, channels)))
    o : Out(stream.Signature(lanes(shape, kernel * kernel * channels)))
    """

    def __init__(self, shape: ShapeLike, channels: int, height: int, width: int, kernel: int,
                 stride: int = 1, *, line_style=None):
        if kernel > height or kernel > width:
            raise ValueError(f"kernel {kernel} does not fit a {height}x{width} image")
        self.shape, self.channels = shape, channels
        self.height, self.width, self.kernel, self.stride = height, width, kernel, stride
        self.line_style = line_style
        super().__init__({
            "i": In(stream.Signature(lanes(shape, channels))),
            "o": Out(stream.Signature(lanes(shape, kernel * kernel * channels))),
        })

    @property
    def out_height(self):
        return (self.height - self.kernel) // self.stride + 1

    @property
    def out_width(self):
        return (self.width - self.kernel) // self.stride + 1

    def elaborate(self, platform):
        m = Module()
        k, s = self.kernel, self.stride
        pix_bits = len(self.i.payload.as_value())
        x = Signal(range(self.width))
        y = Signal(range(self.height))
        take = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)

        x_next = Signal.like(x)
        m.d.comb += x_next.eq(x)
        with m.If(take):
            m.d.comb += x_next.eq(Mux(x == self.width - 1, 0, x + 1))
        new_pixel = self.i.payload.as_value()

        # Column of the k pixels above and at the new one, oldest row first.
        if k > 1:
            attrs = {"ram_style": self.line_style} if self.line_style else None
            m.submodules.lines = lines = Memory(shape=unsigned((k - 1) * pix_bits),
                                                depth=self.width, init=[], attrs=attrs)
            wr = lines.write_port()
            rd = lines.read_port(transparent_for=(wr,))
            # The column of the next pixel, read as this one is taken. Addressed from x
            # alone (not from x_next, which waits for ready), so the handshake only
            # reaches the read enable: without a take the read data keeps the column
            # of the pixel at x, which no write changes until x moves on.
            x_inc = Mux(x == self.width - 1, 0, x + 1)
            m.d.comb += [rd.addr.eq(x_inc), rd.en.eq(take), wr.addr.eq(x), wr.en.eq(take),
                         wr.data.eq(Cat(rd.data, new_pixel)[pix_bits:])]
            column = [rd.data[r * pix_bits:(r + 1) * pix_bits] for r in range(k - 1)]
            column.append(new_pixel)
        else:
            column = [new_pixel]

        window = [[Signal(pix_bits, name=f"win_{ky}_{kx}") for kx in range(k)]
                  for ky in range(k)]
        emit_x = Array(Const(int(i >= k - 1 and (i - k + 1) % s == 0)) for i in range(self.width))
        emit_y = Array(Const(int(i >= k - 1 and (i - k + 1) % s == 0)) for i in range(self.height))
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            for ky in range(k):
                m.d.sync += [window[ky][kx].eq(window[ky][kx + 1]) for kx in range(k - 1)]
                m.d.sync += window[ky][k - 1].eq(column[ky])
            m.d.sync += self.o.valid.eq(emit_x[x] & emit_y[y])
            m.d.sync += x.eq(x_next)
            with m.If(x == self.width - 1):
                m.d.sync += y.eq(Mux(y == self.height - 1, 0, y + 1))
        m.d.comb += self.o.payload.as_value().eq(Cat(*(window[ky][kx] for ky in range(k)
                                                       for kx in range(k))))
        return m

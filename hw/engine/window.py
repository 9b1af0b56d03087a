"""The run-time sliding window of the layer engine: addresses of every MAC beat of a layer."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from .layouts import pick

__all__ = ["WindowWalker", "segment_layout", "step_layout", "segment_config"]


def segment_layout(addr_bits, dim_bits, kernel_bits, weight_bits):
    """One source a layer's MACs read: a feature map and how a window walks it.

    ``origin`` is the word address of window position (0, 0) for output (0, 0),
    ``base + ((-pad) * width + (-pad)) * cw`` (it may be negative); the steps
    are precomputed by the compiler so that the walker only adds.
    """
    a = signed(addr_bits + 1)
    d = signed(dim_bits + 1)
    return data.StructLayout({
        "on": 1,
        "origin": a,            # address of input (-pad, -pad), word 0
        "step_x": a,            # stride * cw: next output column
        "step_y": a,            # stride * width * cw: next output row
        "row_skip": a,          # (width - kernel) * cw: from a window row's end to the next
        "cw": unsigned(dim_bits),           # words per pixel (channels / simd)
        "kernel": unsigned(kernel_bits),
        "stride": unsigned(kernel_bits),
        "pad": unsigned(kernel_bits),
        "height": d, "width": d,
        "acc": 1,               # accumulator it adds into
        "wofs": unsigned(weight_bits),      # its first word in a group's weights
        "reuse": 1,             # one kernel position's weights serve every position
    })


def step_layout(addr_bits, dim_bits, kernel_bits, weight_bits, group_bits, lanes_bits):
    """A MAC step: two sources, an optional skip read, and where the results go."""
    seg = segment_layout(addr_bits, dim_bits, kernel_bits, weight_bits)
    a = unsigned(addr_bits)
    return data.StructLayout({
        "groups": unsigned(group_bits),     # groups of pe output channels
        "out_h": unsigned(dim_bits), "out_w": unsigned(dim_bits),
        "seg": data.ArrayLayout(seg, 2),
        "skip": 1, "skip_base": a,
        "dst_base": a,
        "dst_cw": unsigned(dim_bits),       # words per output pixel
        "to_stream": 1,                     # results leave the engine instead
        "bias": 1,                          # the step's first accumulator starts from a bias
        "lanes": unsigned(lanes_bits),      # output channels of the last group (stream only)
    })


def segment_config(*, base, height, width, cw, kernel, stride, pad, acc=0, wofs=0,
                   reuse=False):
    """The constants of :func:`segment_layout` for a map at ``base`` (Python ints)."""
    return {"on": 1, "origin": base + (-pad * width - pad) * cw, "step_x": stride * cw,
            "step_y": stride * width * cw, "row_skip": (width - kernel) * cw, "cw": cw,
            "kernel": kernel, "stride": stride, "pad": pad, "height": height, "width": width,
            "acc": acc, "wofs": wofs, "reuse": int(reuse)}


class WindowWalker(wiring.Component):
    """Every MAC beat of one layer step, in the order the engine computes them.

    For each group ``g`` of ``pe`` output channels, each output pixel in raster
    order, each source segment (one or two), each window row ``ky``, column
    ``kx`` and word ``cc`` of the pixel's channels, one beat: the activation
    word address (and whether it lies in the padding), the weight word, and
    the control the MAC bank needs; then, for a residual add, one skip beat
    reading the shortcut at the output position. Nothing here multiplies:
    every address is the previous one plus a step the compiler precomputed.

    A step starts on ``start`` (with ``cfg`` holding still until ``done``).
    Before the beats of a group the walker waits until ``loaded`` says that
    the group's weights and thresholds are in place; ``issued`` counts the
    groups whose beats have all gone out. Groups are numbered across steps, so
    the halves of the double-buffered weights alternate through the network.

    Parameters
    ----------
    pe, simd : the MAC bank's outputs and lanes
    cfg_layout : :func:`step_layout`
    group_bits : width of the global group counter
    tag_shape : the tag the bank carries to the epilogue (fields buf, addr, at, last,
        stream, lanes)

    Members
    -------
    start : In(1)
    bump : In(1)           count one group that another unit computed (the stem)
    cfg : In(cfg_layout)
    loaded : In(group_bits)
    issued : Out(group_bits)
    done : Out(1)
    o : Out(stream.Signature(StructLayout(addr, pad, widx, buf, start, last, acc, skip,
                                          skip_at, tag)))
    """

    def __init__(self, *, pe, simd, cfg_layout, weight_bits, group_bits, tag_shape):
        self.pe, self.simd = pe, simd
        self.cfg_layout, self.group_bits = cfg_layout, group_bits
        seg = cfg_layout["seg"].shape.elem_shape
        self.addr_shape = seg["origin"].shape
        self.beat_layout = data.StructLayout({
            "addr": self.addr_shape,
            "pad": 1,
            "widx": unsigned(weight_bits),
            "buf": 1,
            "start": 1, "last": 1, "acc": 1, "skip": 1,
            "skip_at": unsigned(max(simd // pe - 1, 0).bit_length() or 1),
            "tag": tag_shape,
        })
        super().__init__({
            "start": In(1), "bump": In(1), "cfg": In(cfg_layout), "loaded": In(group_bits),
            "issued": Out(group_bits), "done": Out(1),
            "o": Out(stream.Signature(self.beat_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        # The step's configuration is copied at `start` (it holds still until `done`),
        # with the loop bounds less one: registers next to the loops, so that the
        # loops' compares need no adder and no wire from the step table.
        new = self.cfg
        cfg = Signal(self.cfg_layout, name="cfg_held")
        groups_per_word = max(self.simd // self.pe, 1)
        a_shape = self.addr_shape
        d_shape = cfg.seg[0].height.shape()

        # Loop counters, outermost first.
        g = Signal.like(cfg.groups)
        oy = Signal.like(cfg.out_h)
        ox = Signal.like(cfg.out_w)
        sg = Signal(2)                   # 0, 1: MAC segments; 2: the skip beat
        ky = Signal.like(cfg.seg[0].kernel)
        kx = Signal.like(cfg.seg[0].kernel)
        cc = Signal.like(cfg.seg[0].cw)
        # Running addresses and positions.
        row = [Signal(a_shape, name=f"row{s}") for s in range(2)]      # origin at ox = 0
        org = [Signal(a_shape, name=f"org{s}") for s in range(2)]      # origin of this pixel
        iy0 = [Signal(d_shape, name=f"iy0_{s}") for s in range(2)]     # oy * stride - pad
        ix0 = [Signal(d_shape, name=f"ix0_{s}") for s in range(2)]
        addr = Signal(a_shape)
        iy = Signal(d_shape)
        ix = Signal(d_shape)
        widx = Signal.like(self.o.payload.widx)
        dst = Signal(a_shape)            # output pixel's first word
        gw = Signal(a_shape)             # the group's word within an output pixel
        at = Signal(range(groups_per_word))
        gcount = Signal(self.group_bits)

        cw_end = [Signal.like(cfg.seg[s].cw, name=f"cw_end{s}") for s in range(2)]
        k_end = [Signal.like(cfg.seg[s].kernel, name=f"k_end{s}") for s in range(2)]
        w_end, h_end, g_end = Signal.like(cfg.out_w), Signal.like(cfg.out_h), Signal.like(g)
        seg = pick(cfg.seg, sg[0])
        last_cc = cc == Mux(sg[0], cw_end[1], cw_end[0])
        k_last = Mux(sg[0], k_end[1], k_end[0])
        last_kx = kx == k_last
        last_ky = ky == k_last
        last_window = last_cc & last_kx & last_ky
        has_second = cfg.seg[1].on
        last_ox = ox == w_end
        last_oy = oy == h_end
        last_g = g == g_end
        in_skip = sg == 2
        # The last beat of a pixel: the skip beat, or the end of the last segment.
        end_pixel = in_skip | (last_window & ((sg == 1) | ~has_second) & ~cfg.skip)

        busy = Signal()
        waiting = Signal()               # for the group's weights
        m.d.comb += waiting.eq(busy & (self.loaded == gcount))
        p = self.o.payload
        m.d.comb += [
            p.addr.eq(Mux(in_skip, cfg.skip_base + dst + gw, addr)),
            p.pad.eq(~in_skip & ((iy < 0) | (iy >= seg.height) | (ix < 0) | (ix >= seg.width))),
            p.widx.eq(widx),
            p.buf.eq(gcount[0]),
            p.start.eq(~in_skip & (ky == 0) & (kx == 0) & (cc == 0)),
            p.last.eq(end_pixel),
            p.acc.eq(seg.acc),
            p.skip.eq(in_skip),
            p.skip_at.eq(at),
            p.tag.buf.eq(gcount[0]),
            p.tag.addr.eq(cfg.dst_base + dst + gw),
            p.tag.at.eq(at),
            p.tag.last.eq(last_ox & last_oy),
            p.tag.stream.eq(cfg.to_stream),
            p.tag.lanes.eq(Mux(last_g, cfg.lanes, self.pe)),
        ]
        m.d.comb += self.o.valid.eq(busy & ~waiting)
        m.d.comb += self.done.eq(~busy)
        m.d.comb += self.issued.eq(gcount)

        def begin_segment(s, origin, y0, x0, c=cfg):
            """Point the window at the first word of segment ``s`` of a pixel."""
            m.d.sync += [sg.eq(s), ky.eq(0), kx.eq(0), cc.eq(0), addr.eq(origin),
                         iy.eq(y0), ix.eq(x0), widx.eq(c.seg[s].wofs)]

        with m.If(self.bump):
            m.d.sync += gcount.eq(gcount + 1)
        with m.If(self.start & ~busy):
            m.d.sync += [busy.eq(1), g.eq(0), oy.eq(0), ox.eq(0), dst.eq(0), gw.eq(0), at.eq(0)]
            m.d.sync += [cfg.eq(new), w_end.eq(new.out_w - 1), h_end.eq(new.out_h - 1),
                         g_end.eq(new.groups - 1)]
            for s in range(2):
                m.d.sync += [row[s].eq(new.seg[s].origin), org[s].eq(new.seg[s].origin),
                             iy0[s].eq(-new.seg[s].pad), ix0[s].eq(-new.seg[s].pad),
                             cw_end[s].eq(new.seg[s].cw - 1), k_end[s].eq(new.seg[s].kernel - 1)]
            begin_segment(0, new.seg[0].origin, -new.seg[0].pad, -new.seg[0].pad, new)

        with m.If(self.o.valid & self.o.ready):
            with m.If(~in_skip & ~last_window):
                # Within a window: the next word, column or row.
                m.d.sync += addr.eq(addr + 1)
                m.d.sync += widx.eq(Mux(seg.reuse & last_cc, seg.wofs, widx + 1))
                m.d.sync += cc.eq(Mux(last_cc, 0, cc + 1))
                with m.If(last_cc):
                    m.d.sync += [kx.eq(Mux(last_kx, 0, kx + 1)),
                                 ix.eq(Mux(last_kx, Mux(sg[0], ix0[1], ix0[0]), ix + 1))]
                    with m.If(last_kx):
                        m.d.sync += [ky.eq(ky + 1), iy.eq(iy + 1),
                                     addr.eq(addr + 1 + seg.row_skip)]
            with m.Elif(~in_skip & (sg == 0) & has_second):
                begin_segment(1, org[1], iy0[1], ix0[1])
            with m.Elif(~in_skip & cfg.skip):
                m.d.sync += sg.eq(2)                  # the skip beat comes next
            with m.Else():
                # The pixel is done: the next output pixel, row or group.
                nxt_org = [Signal(a_shape, name=f"nxt_org{s}") for s in range(2)]
                nxt_iy0 = [Signal(d_shape, name=f"nxt_iy0_{s}") for s in range(2)]
                nxt_ix0 = [Signal(d_shape, name=f"nxt_ix0_{s}") for s in range(2)]
                m.d.sync += dst.eq(dst + cfg.dst_cw)
                for s in range(2):
                    sc = cfg.seg[s]
                    with m.If(~last_ox):
                        m.d.comb += [nxt_org[s].eq(org[s] + sc.step_x), nxt_iy0[s].eq(iy0[s]),
                                     nxt_ix0[s].eq(ix0[s] + sc.stride)]
                    with m.Elif(~last_oy):
                        m.d.comb += [nxt_org[s].eq(row[s] + sc.step_y),
                                     nxt_iy0[s].eq(iy0[s] + sc.stride), nxt_ix0[s].eq(-sc.pad)]
                        m.d.sync += row[s].eq(row[s] + sc.step_y)
                    with m.Else():
                        m.d.comb += [nxt_org[s].eq(sc.origin), nxt_iy0[s].eq(-sc.pad),
                                     nxt_ix0[s].eq(-sc.pad)]
                        m.d.sync += row[s].eq(sc.origin)
                    m.d.sync += [org[s].eq(nxt_org[s]), iy0[s].eq(nxt_iy0[s]),
                                 ix0[s].eq(nxt_ix0[s])]
                begin_segment(0, nxt_org[0], nxt_iy0[0], nxt_ix0[0])
                m.d.sync += ox.eq(Mux(last_ox, 0, ox + 1))
                with m.If(last_ox):
                    m.d.sync += oy.eq(Mux(last_oy, 0, oy + 1))
                    with m.If(last_oy):
                        # The group is done.
                        m.d.sync += [g.eq(g + 1), gcount.eq(gcount + 1), dst.eq(0)]
                        m.d.sync += at.eq(Mux(at == groups_per_word - 1, 0, at + 1))
                        with m.If(at == groups_per_word - 1):
                            m.d.sync += gw.eq(gw + 1)
                        with m.If(last_g):
                            m.d.sync += busy.eq(0)
        return m

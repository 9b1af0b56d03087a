"""The layer engine: a network run layer by layer on one MAC bank, weights streamed in."""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..csd import const_product
from ..fifo import StreamFIFO
from ..lanes import lanes
from ..pad import Pad
from ..pool import WindowMax
from ..qspi import read_request
from ..skid import SkidBuffer
from ..window import SlidingWindow
from .bank import MacBank
from .config import EngineConfig, StepKind
from .decode import StreamDecoder
from .epilogue import Epilogue
from .layouts import pick, weight_layout
from .loader import Loader, entry_layout
from .stem import Collector, MapWriter, StemFeeder
from .window import WindowWalker, step_layout

__all__ = ["LayerEngine"]


def _bits(n):
    return max(int(n) - 1, 1).bit_length()


class LayerEngine(wiring.Component):
    """A whole network on one bank of run-time MACs, from a compiler-made schedule.

    Pixels of the input image come in on ``i`` (raster order, one beat per
    pixel, as for the dataflow accelerators) and the network's output leaves on
    ``o``, one value per beat. The weights arrive through a read port: the
    engine asks ``flash_req`` once per inference for the whole stream and takes
    its words from ``flash_data`` in order.

    Inside: the loader replays the command list, the decoder unpacks weights,
    thresholds and biases into double-buffered weight words, threshold tables
    and bias registers; the sequencer steps through the schedule; for each
    step the window walker (or, for the stem, the line-buffered window over the
    input) feeds the MAC bank; the epilogue requantizes and adds residuals; the
    results go to the activation memory, or out. ``docs/engine.md`` has the
    whole picture.

    Members
    -------
    i : In(stream.Signature(lanes(input_shape, input_channels)))
    o : Out(stream.Signature(lanes(out_shape, 1)))
    flash_req : Out(stream.Signature(StructLayout(addr, length)))
    flash_data : In(stream.Signature(unsigned(8 * word_bytes)))
    """

    def __init__(self, config: EngineConfig):
        self.config = c = config
        lim = c.limits
        self.addr_bits = lim.get("addr_bits", _bits(c.mem_depth) + 1)
        self.dim_bits = lim.get("dim_bits", 9)
        self.kernel_bits = lim.get("kernel_bits", 4)
        self.weight_bits = _bits(2 * c.wbuf_words) + 1
        self.table_bits = _bits(c.table_depth) + 1
        self.decoder = StreamDecoder(**c.decoder)
        self.tag = data.StructLayout({
            "buf": 1, "addr": unsigned(self.addr_bits), "at": unsigned(_bits(c.simd // c.pe)),
            "last": 1, "stream": 1, "lanes": unsigned(_bits(c.pe + 1)),
            "tbase": unsigned(self.table_bits), "gg": unsigned(_bits(
                c.stem.groups if c.stem else 1)),
        })
        self.walk_layout = step_layout(self.addr_bits, self.dim_bits, self.kernel_bits,
                                       self.weight_bits, lim.get("group_bits", 12),
                                       _bits(c.pe + 1))
        self.req_layout = read_request()
        super().__init__({
            "i": In(stream.Signature(lanes(c.input_shape, c.input_channels))),
            "o": Out(stream.Signature(lanes(c.out_shape, 1))),
            "flash_req": Out(stream.Signature(self.req_layout)),
            "flash_data": In(stream.Signature(unsigned(8 * c.word_bytes))),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        pe, simd = c.pe, c.simd
        acc = c.acc_width

        # The stream: flash words -> FIFO -> decoder, commands from the loader.
        m.submodules.stream_fifo = fifo = StreamFIFO(unsigned(8 * c.word_bytes), c.stream_fifo)
        m.submodules.decoder = dec = self.decoder
        wiring.connect(m, wiring.flipped(self.flash_data), fifo.i)
        m.d.comb += [dec.i.payload.as_value().eq(fifo.o.payload), dec.i.valid.eq(fifo.o.valid),
                     fifo.o.ready.eq(dec.i.ready)]

        epi = Epilogue(pe=pe, acc_width=acc, skip_shape=c.in_shape,
                       accumulators=c.accumulators, depth=c.table_depth,
                       levels_max=c.levels_max, tag_shape=self.tag)
        m.submodules.epilogue = epi
        entries = entry_layout(dec.cmd_layout, beats_bits=24, table_bits=self.table_bits,
                               levels_bits=_bits(c.levels_max + 1))
        w_per_word = pe * simd // c.decoder_lanes
        loader = Loader(entries=c.entries, entry_layout=entries, decoder=dec,
                        pe=pe, words_per_half=c.wbuf_words,
                        w_words_per_word=w_per_word, tw_layout=epi.tw_layout,
                        group_bits=c.group_bits, flash_addr=c.flash_addr,
                        flash_length=c.flash_length, req_layout=self.req_layout,
                        wbuf_addr_bits=self.weight_bits)
        m.submodules.loader = loader
        self.parts = {"loader": loader, "decoder": dec, "epilogue": epi}
        wiring.connect(m, loader.req, wiring.flipped(self.flash_req))
        wiring.connect(m, loader.cmd, dec.c)
        wiring.connect(m, dec.w, loader.w)
        wiring.connect(m, dec.t, loader.t)
        wiring.connect(m, dec.b, loader.b)
        wiring.connect(m, loader.tw, epi.tw)

        # The weight buffer: two halves of words of pe x simd weights.
        wlayout = data.ArrayLayout(weight_layout(c.fmt), pe * simd)
        m.submodules.wbuf = wbuf = Memory(shape=wlayout, depth=2 * c.wbuf_words, init=[])
        wwr = wbuf.write_port()
        wrd = wbuf.read_port(domain="sync")
        # A word is written whole with its last column: the columns before it wait in
        # registers. Written column by column, each decoder beat would need its own
        # write enable, and block RAM gives those to 9-bit lanes only (a 16-bit beat
        # would take two, wasting a ninth of the buffer).
        beat = loader.wbuf_data.as_value()
        staged = [Signal.like(beat, name=f"wbuf_col{n}") for n in range(w_per_word - 1)]
        for n, col in enumerate(staged):
            with m.If(loader.wbuf_en & (loader.wbuf_col == n)):
                m.d.sync += col.eq(beat)
        m.d.comb += [wwr.addr.eq(loader.wbuf_addr), wwr.data.as_value().eq(Cat(*staged, beat)),
                     wwr.en.eq(loader.wbuf_en & (loader.wbuf_col == w_per_word - 1))]

        # The activation memory: words of simd lanes; results are written pe lanes at a time.
        m.submodules.act = act = Memory(shape=lanes(c.act_shape, simd), depth=c.mem_depth,
                                        init=[])
        self.parts["act"] = act
        ard = act.read_port(domain="sync")
        awr = self._act_write = act.write_port(granularity=pe)

        # The sequencer's state: the current step and its configuration.
        step_entry = data.StructLayout({"kind": unsigned(2), "walk": self.walk_layout,
                                        "epi": epi.cfg_layout})
        m.submodules.steps = steps = Memory(shape=step_entry, depth=len(c.steps),
                                            init=[step_entry.const(s) for s in c.steps])
        srd = steps.read_port(domain="sync")
        step = Signal(range(len(c.steps)))
        self.parts["step"] = step
        cur = Signal(step_entry)
        m.d.comb += [srd.addr.eq(step), epi.cfg.eq(cur.epi)]
        is_stem = cur.kind == StepKind.STEM
        released = Signal(c.group_bits)
        release = Signal()
        with m.If(release):
            m.d.sync += released.eq(released + 1)
        m.d.comb += loader.released.eq(released)

        walker = WindowWalker(pe=pe, simd=simd, cfg_layout=self.walk_layout,
                              weight_bits=self.weight_bits, group_bits=c.group_bits,
                              tag_shape=self.tag)
        m.submodules.walker = walker
        self.parts["walker"] = walker
        m.d.comb += [walker.cfg.eq(cur.walk), walker.loaded.eq(loader.loaded)]

        # Requests to the read stage: from the walker, or from the stem.
        req = data.StructLayout({"mem": 1, "addr": walker.beat_layout["addr"].shape, "pad": 1,
                                 "x": lanes(c.in_shape, simd),
                                 "widx": unsigned(self.weight_bits), "buf": 1, "start": 1,
                                 "last": 1, "acc": 1, "skip": 1,
                                 "skip_at": walker.beat_layout["skip_at"].shape,
                                 "tag": self.tag})
        r = Signal(req)
        r_valid, r_ready = Signal(), Signal()
        wb = walker.o.payload
        with m.If(~is_stem):
            m.d.comb += [r.mem.eq(1), r.addr.eq(wb.addr), r.pad.eq(wb.pad), r.widx.eq(wb.widx),
                         r.buf.eq(wb.buf), r.start.eq(wb.start), r.last.eq(wb.last),
                         r.acc.eq(wb.acc), r.skip.eq(wb.skip), r.skip_at.eq(wb.skip_at),
                         r.tag.eq(wb.tag), r_valid.eq(walker.o.valid),
                         walker.o.ready.eq(r_ready)]

        stem_run = Signal()
        stem_group = Signal(c.group_bits)
        stem_written = Signal()
        if c.stem is not None:
            stem_written = self._stem(m, c, loader, is_stem, stem_run, stem_group, r, r_valid,
                                      r_ready, epi)
        else:
            m.d.comb += self.i.ready.eq(0)

        # The read stage: activation word and weight word, then a beat for the bank.
        held = Signal(req)
        b_valid = Signal()
        bank = MacBank(pe=pe, simd=simd, in_shape=c.in_shape, fmt=c.fmt, acc_width=acc,
                       accumulators=c.accumulators, levels_per_stage=c.levels_per_stage,
                       tag_shape=self.tag)
        m.submodules.bank = bank
        self.parts["bank"] = bank
        advance = ~b_valid | bank.i.ready
        m.d.comb += r_ready.eq(advance)
        with m.If(advance):
            m.d.sync += [b_valid.eq(r_valid), held.eq(r)]
        m.d.comb += [ard.addr.eq(r.addr), ard.en.eq(advance),
                     wrd.addr.eq(Mux(r.buf, c.wbuf_words, 0) + r.widx), wrd.en.eq(advance)]
        bi = bank.i.payload
        # Memory lanes widen to the bank's lanes (zero or sign extension, lane by lane).
        aw = c.act_shape.width
        mem_bits, x_bits = ard.data.as_value(), held.x.as_value()
        lanes_in = []
        for n in range(simd):
            lane = Signal(c.in_shape, name=f"mem_lane{n}")
            raw = mem_bits[n * aw:(n + 1) * aw]
            m.d.comb += lane.eq(raw.as_signed() if c.act_shape.signed else raw)
            lanes_in.append(lane)
        m.d.comb += bi.x.as_value().eq(Mux(held.mem, Mux(held.pad, 0, Cat(*lanes_in)), x_bits))
        # Only a step with biases reads the registers: they hold whatever the last one left.
        with m.If(~is_stem & cur.walk.bias):
            m.d.comb += bi.bias.eq(pick(loader.bias, held.buf))
        m.d.comb += [bi.w.eq(wrd.data),
                     bi.start.eq(held.start), bi.last.eq(held.last), bi.acc.eq(held.acc),
                     bi.skip.eq(held.skip), bi.skip_at.eq(held.skip_at), bi.tag.eq(held.tag),
                     bank.i.valid.eq(b_valid)]
        wiring.connect(m, bank.o, epi.i)

        # Results of a layer on the bank: to the activation memory, or out.
        res = epi.o.payload
        out_vals = [Signal(c.out_shape, name=f"out{p}") for p in range(pe)]
        out_left = Signal(range(pe + 1))
        out_n = Signal(range(pe))
        m.d.comb += [self.o.valid.eq(out_left != 0),
                     self.o.payload[0].eq(Mux(out_n == 0, out_vals[0], 0))]
        for p in range(1, pe):
            with m.If(out_n == p):
                m.d.comb += self.o.payload[0].eq(out_vals[p])
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [out_left.eq(out_left - 1), out_n.eq(out_n + 1)]
        with m.If(~is_stem):
            with m.If(res.tag.stream):
                m.d.comb += epi.o.ready.eq(out_left == 0)
                with m.If(epi.o.valid & (out_left == 0)):
                    m.d.sync += [out_left.eq(res.tag.lanes), out_n.eq(0)]
                    m.d.sync += [out_vals[p].eq(res.value[p]) for p in range(pe)]
            with m.Else():
                m.d.comb += epi.o.ready.eq(1)
                m.d.comb += [awr.addr.eq(res.tag.addr),
                             awr.en.eq(Mux(epi.o.valid, 1 << res.tag.at, 0))]
                vw = epi.value_shape.width
                vals = res.value.as_value()
                group = Cat(*(vals[p * vw:p * vw + c.act_shape.width] for p in range(pe)))
                m.d.comb += awr.data.as_value().eq(group.replicate(simd // pe))
            m.d.comb += release.eq(epi.o.valid & epi.o.ready & res.tag.last)

        # The sequencer: fetch a step, start it, wait until all its results are out.
        with m.FSM():
            with m.State("FETCH"):
                m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += cur.eq(srd.data)
                m.next = "START"
            with m.State("START"):
                with m.If(is_stem):
                    m.d.sync += [stem_run.eq(1), stem_group.eq(walker.issued)]
                with m.Else():
                    m.d.comb += walker.start.eq(1)
                m.next = "SETTLE"
            with m.State("SETTLE"):
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(is_stem):
                    with m.If(stem_written):
                        m.d.sync += stem_run.eq(0)
                        m.d.comb += [release.eq(1), walker.bump.eq(1)]
                        m.next = "NEXT"
                with m.Elif(walker.done & (released == walker.issued)):
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += step.eq(Mux(step == len(c.steps) - 1, 0, step + 1))
                m.next = "FETCH"
        return m

    def _stem(self, m, c, loader, is_stem, stem_run, stem_group, r, r_valid, r_ready, epi):
        """The stem's window, its beats for the bank, and its (pooled) results to memory.

        Returns a signal that is high once the whole map has been written.
        """
        s = c.stem
        k = s.kernel * s.kernel * s.channels
        h, w = s.height, s.width
        chain = []
        if s.pad:
            chain.append(Pad(s.in_shape, s.channels, h, w, s.pad))
            h, w = h + 2 * s.pad, w + 2 * s.pad
        # The window's ready comes from the bank through the feeder; a skid (a pixel
        # wide) keeps that path out of the padding and the input.
        chain.append(SkidBuffer(lanes(s.in_shape, s.channels)))
        chain.append(SlidingWindow(s.in_shape, s.channels, h, w, s.kernel, s.stride))
        for n, core in enumerate(chain):
            m.submodules[f"stem_in{n}"] = core
        wiring.connect(m, wiring.flipped(self.i), chain[0].i)
        for a, b in zip(chain, chain[1:]):
            wiring.connect(m, a.o, b.i)
        feeder = StemFeeder(shape=c.in_shape, k=k, simd=c.simd, groups=s.groups,
                            weight_bits=self.weight_bits)
        m.submodules.stem_feeder = feeder
        win = chain[-1].o
        # Registered: it rises a cycle after the stem's weights are in, and falls only
        # once every window has gone.
        go = Signal()
        m.d.sync += go.eq(is_stem & stem_run & (loader.loaded != stem_group))
        m.d.comb += [feeder.i.valid.eq(win.valid & go), win.ready.eq(feeder.i.ready & go)]
        m.d.comb += [feeder.i.payload[n].eq(win.payload[n]) for n in range(k)]
        f = feeder.o.payload
        with m.If(is_stem):
            m.d.comb += [r.mem.eq(0), r.x.eq(f.x), r.widx.eq(f.widx), r.buf.eq(stem_group[0]),
                         r.start.eq(f.start), r.last.eq(f.last),
                         r.tag.buf.eq(stem_group[0]), r.tag.tbase.eq(const_product(f.gg, s.levels)),
                         r.tag.gg.eq(f.gg), r_valid.eq(feeder.o.valid),
                         feeder.o.ready.eq(r_ready)]

        # Results: gathered per pixel, max pooled, written.
        collect = Collector(in_layout=data.StructLayout({
            "value": lanes(epi.o.payload.value.shape().elem_shape, c.pe),
            "gg": self.tag["gg"].shape}), out_shape=c.act_shape, pe=c.pe, groups=s.groups)
        m.submodules.stem_collect = collect
        with m.If(is_stem):
            m.d.comb += [collect.i.valid.eq(epi.o.valid), epi.o.ready.eq(collect.i.ready)]
        m.d.comb += [collect.i.payload.value.eq(epi.o.payload.value),
                     collect.i.payload.gg.eq(epi.o.payload.tag.gg)]
        channels = s.groups * c.pe
        tail = collect.o
        oh = (s.height + 2 * s.pad - s.kernel) // s.stride + 1
        ow = (s.width + 2 * s.pad - s.kernel) // s.stride + 1
        if s.pool:
            pk, ps, pp = s.pool["kernel"], s.pool["stride"], s.pool["pad"]
            lo = -(1 << (c.act_shape.width - 1)) if c.act_shape.signed else 0
            pool = []
            ph, pw = oh, ow
            if pp:
                pool.append(Pad(c.act_shape, channels, oh, ow, pp, value=lo))
                ph, pw = oh + 2 * pp, ow + 2 * pp
            # A pixel of every channel is wide and a row short: LUT RAM, not block RAM.
            pool += [SlidingWindow(c.act_shape, channels, ph, pw, pk, ps,
                                   line_style="distributed"),
                     WindowMax(c.act_shape, channels, pk * pk)]
            for n, core in enumerate(pool):
                m.submodules[f"stem_pool{n}"] = core
                wiring.connect(m, tail, core.i)
                tail = core.o
        words = channels // c.simd
        writer = MapWriter(shape=c.act_shape, simd=c.simd, words=words,
                           pixels=s.out_h * s.out_w, base=s.dst_base, addr_bits=self.addr_bits)
        m.submodules.stem_writer = writer
        wiring.connect(m, tail, writer.i)
        act_wr = self._act_write
        with m.If(is_stem):
            m.d.comb += [act_wr.addr.eq(writer.wr.addr), act_wr.data.eq(writer.wr.data),
                         act_wr.en.eq(Mux(writer.wr.en, (1 << (c.simd // c.pe)) - 1, 0))]
        started = Signal()
        m.d.comb += writer.start.eq(is_stem & stem_run & ~started)
        with m.If(writer.start):
            m.d.sync += started.eq(1)
        with m.If(~stem_run):
            m.d.sync += started.eq(0)
        return started & writer.done

"""A prepared graph as a layer engine: its configuration, ROM contents and weight stream."""

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Shape, signed

from hw.engine.config import EngineConfig, StemConfig, StepKind
from hw.engine.decode import StreamDecoder
from hw.engine.epilogue import Mode
from hw.engine.window import segment_config
from hw.lanes import shape_for_range, shape_range

from ...errors import BuildError
from .schedule import allocate, schedule
from .stream import Stream, codes_for, digit_format

__all__ = ["EngineBuild", "lower_engine", "HEADER_BYTES"]

#: The engine reads the stream from this offset of weights.bin (a header page before it).
HEADER_BYTES = 256
DECODER_LANES = 8
WORD_BYTES = 1


@dataclass
class EngineBuild:
    """Everything the compiler made for one engine."""
    config: EngineConfig
    steps: list
    stream: Stream
    mem_words: int
    groups: list           # per step: load groups (1 for the stem)


def signed_width(lo, hi):
    """Width of the narrowest signed type holding ``[lo, hi]``."""
    return shape_for_range(min(lo, -1), max(hi, 0)).width


def _union(*shapes):
    """The narrowest shape holding every value of each of ``shapes``."""
    ranges = [shape_range(s) for s in shapes]
    return shape_for_range(min(lo for lo, _ in ranges), max(hi for _, hi in ranges))


def _rows(array, first, pe):
    """Rows ``first .. first + pe`` of ``array``, the missing ones copies of the last."""
    block = array[first:first + pe]
    if len(block) < pe:
        block = np.concatenate([block, np.repeat(block[-1:], pe - len(block), axis=0)])
    return block


def _weights(matrix, first, pe, width):
    block = np.zeros((pe, width), np.int64)
    rows = matrix[first:first + pe]
    block[:len(rows), :rows.shape[1]] = rows
    return block


def _set(levels, base, lo):
    return {"base": base, "levels": levels, "steps": levels.bit_length(), "lo": lo}


_NO_SET = {"base": 0, "levels": 0, "steps": 0, "lo": 0}


def lower_engine(graph, *, pe, simd, levels_per_stage=2, stream_fifo=512, decode_cycles=2):
    """The :class:`EngineBuild` of a prepared graph for a bank of ``pe`` x ``simd``, its
    decoder taking ``decode_cycles`` per item (``StreamDecoder.cycles_per_item``)."""
    steps = schedule(graph, simd)
    mem_words = allocate(steps)
    nodes = {n.name: n for n in graph.nodes}

    codes = {}
    for s in steps:
        for seg in s.segments:
            node = nodes[seg.node]
            codes[seg.node] = codes_for(node, seg.weights, seg.kernel,
                                        seg.src.channels if seg.src else None,
                                        replay=s.kind != "stem")
    fmt = digit_format(codes.values())

    # Widths: accumulators from the exact ranges, lanes from the stored maps and the input.
    acc = 2
    for s in steps:
        for seg in s.segments:
            n = nodes[seg.node]
            acc = max(acc, signed_width(n.lo, n.hi))
        if s.mode == "RAW" and s.bias is not None:
            acc = max(acc, signed_width(int(s.bias.min()), int(s.bias.max())))
    act_shape = _union(*[shape_for_range(nodes[s.out_node].lo, nodes[s.out_node].hi)
                         for s in steps if s.dst is not None])
    inp = graph.input
    input_shape = shape_for_range(inp.lo, inp.hi)
    in_shape = _union(act_shape, input_shape)
    for s in steps:                      # the values T3 sees: code + skip or two codes
        if s.mode in ("QS", "QQ"):
            acc = max(acc, signed_width(-(1 << in_shape.width), 1 << in_shape.width))
    last = steps[-1]
    out_node = nodes[graph.outputs[0]]
    out_shape = signed(acc) if last.mode == "RAW" else shape_for_range(out_node.lo, out_node.hi)

    levels_max = max([1] + [t.shape[1] for s in steps for t in s.sets if t is not None])
    table_depth = 1
    wbuf_words = 1
    accumulators = 2 if any(s.mode == "QQ" for s in steps) else 1
    for s in steps:
        if s.kind == "stem":
            k = s.segments[0].weights.shape[1]
            groups = -(-s.out_channels // pe)
            wbuf_words = max(wbuf_words, groups * -(-k // simd))
            table_depth = max(table_depth, groups * s.sets[0].shape[1])
        else:
            wbuf_words = max(wbuf_words, sum(seg.chunks for seg in s.segments))
            table_depth = max(table_depth, sum(t.shape[1] for t in s.sets if t is not None))
    kq = [c for c in codes.values() if c.positions > 1]
    positions_max = 1 << max([0] + [(c.positions - 1).bit_length() for c in kq])
    table_entries = max([2] + [len(c.table) * (positions_max if c.positions > 1 else 1)
                               for c in codes.values()])
    decoder_args = dict(
        fmt=fmt, lanes=DECODER_LANES, word_bytes=WORD_BYTES,
        table_depth=1 << (table_entries - 1).bit_length(), positions_max=positions_max,
        replay_beats=max([0] + [pe * simd * s.segments[0].src.cw // DECODER_LANES
                                for s in steps if s.kind == "conv"]) if kq else 0,
        t_width=acc + 1, b_width=acc, levels_max=max(levels_max, 1),
        cycles_per_item=decode_cycles)
    decoder = StreamDecoder(**decoder_args)
    decoder._MustUse__silence = True          # only its command encoding is used here
    if (pe * simd) % DECODER_LANES:
        raise BuildError(f"layer engine: {pe} x {simd} lanes is not a multiple of "
                         f"{DECODER_LANES} weights per decoder beat")

    stream = Stream(decoder, pe=pe, simd=simd, lanes=DECODER_LANES, fmt=fmt)
    loaded = []

    def table(c):
        # The decoder translates codes through the table it loaded last: a step whose
        # segments have tables of their own (a block's conv and projection) reloads
        # each before its weights, in every group.
        if c.kind == "codes" and (not loaded or loaded[-1] is not c):
            stream.table(c)
            loaded.append(c)
    rom, groups_per_step = [], []
    stem = None
    for s in steps:
        sets = [t for t in s.sets]
        if s.kind == "stem":
            seg = s.segments[0]
            k = seg.weights.shape[1]
            chunks = -(-k // simd)
            g = -(-s.out_channels // pe)
            levels = sets[0].shape[1]
            for gg in range(g):
                stream.thresholds(_rows(sets[0], gg * pe, pe), gg * levels)
            for gg in range(g):
                table(codes[seg.node])
                stream.weights(codes[seg.node], _weights(seg.weights, gg * pe, pe, chunks * simd))
            stream.end_group()
            groups_per_step.append(1)
            lo = s.lows[0]
            rom.append({"kind": StepKind.STEM, "walk": {}, "epi": {
                "mode": int(Mode.Q), "sets": [_set(levels, 0, lo), _NO_SET, _NO_SET]}})
            si = s.stem_in
            pool = s.pool
            oh, ow = s.dst.height, s.dst.width
            stem = StemConfig(in_shape=input_shape, channels=si["channels"],
                              height=si["height"], width=si["width"], kernel=seg.kernel,
                              stride=seg.stride, pad=seg.pad, groups=g, levels=levels,
                              out_h=oh, out_w=ow, pool=pool, dst_base=s.dst.base)
            continue
        g = -(-s.out_channels // pe)
        groups_per_step.append(g)
        bases, total = [], 0
        for t in sets:
            bases.append(total)
            total += 0 if t is None else t.shape[1]
        for gi in range(g):
            for t, base in zip(sets, bases):
                if t is not None:
                    stream.thresholds(_rows(t, gi * pe, pe), base)
            if s.mode == "RAW" and s.bias is not None:
                stream.bias(_rows(s.bias[:, None], gi * pe, pe)[:, 0])
            for seg in s.segments:
                c = codes[seg.node]
                table(c)
                width = seg.chunks * simd
                indices = (_weights(c.indices, gi * pe, pe, c.indices.shape[1])
                           if c.positions > 1 else None)
                stream.weights(c, _weights(seg.weights, gi * pe, pe, width), indices)
            stream.end_group()
        walk_segs, wofs = [], 0
        for i, seg in enumerate(s.segments):
            walk_segs.append(segment_config(base=seg.src.base, height=seg.src.height,
                                            width=seg.src.width, cw=seg.src.cw,
                                            kernel=seg.kernel, stride=seg.stride, pad=seg.pad,
                                            acc=seg.acc, wofs=wofs, reuse=seg.reuse))
            wofs += seg.chunks
        while len(walk_segs) < 2:
            walk_segs.append({**segment_config(base=0, height=1, width=1, cw=1, kernel=1,
                                               stride=1, pad=0), "on": 0})
        to_stream = s.dst is None
        walk = {"groups": g, "out_h": s.out_h, "out_w": s.out_w, "seg": walk_segs,
                "skip": int(s.skip is not None),
                "skip_base": s.skip.base if s.skip is not None else 0,
                "dst_base": 0 if to_stream else s.dst.base,
                "dst_cw": 0 if to_stream else s.dst.cw, "to_stream": int(to_stream),
                "bias": int(s.mode == "RAW" and s.bias is not None),
                "lanes": s.out_channels - (g - 1) * pe}
        epi_sets = [_set(t.shape[1], base, lo) if t is not None else _NO_SET
                    for t, base, lo in zip(sets, bases, s.lows)]
        rom.append({"kind": StepKind.CONV, "walk": walk,
                    "epi": {"mode": int(Mode[s.mode]), "sets": epi_sets}})

    dims = [v for s in steps if s.kind == "conv" for seg in s.segments
            for v in (seg.src.height, seg.src.width, s.out_h, s.out_w, seg.src.cw)]
    kernels = [seg.kernel for s in steps for seg in s.segments] + \
              [seg.stride for s in steps for seg in s.segments]
    config = EngineConfig(
        pe=pe, simd=simd, act_shape=Shape.cast(act_shape), in_shape=Shape.cast(in_shape),
        fmt=fmt, acc_width=acc, accumulators=accumulators, mem_depth=max(mem_words, 2),
        wbuf_words=wbuf_words, table_depth=table_depth, levels_max=levels_max,
        out_shape=Shape.cast(out_shape), input_shape=Shape.cast(input_shape),
        input_channels=inp.shape[0], steps=rom, entries=stream.entries, stem=stem,
        flash_addr=HEADER_BYTES, flash_length=len(stream.data), word_bytes=WORD_BYTES,
        stream_fifo=stream_fifo, decoder_lanes=DECODER_LANES, decoder=decoder_args,
        levels_per_stage=levels_per_stage,
        limits={"addr_bits": max(mem_words, 2).bit_length() + 1,
                "dim_bits": max(dims + [2]).bit_length() + 1,
                "kernel_bits": max(kernels + [2]).bit_length() + 1,
                "group_bits": max(max(groups_per_step), 2).bit_length() + 1})
    return EngineBuild(config, steps, stream, mem_words, groups_per_step)

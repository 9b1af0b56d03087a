"""How big a layer engine to build for a model and a board: the bank's PE x SIMD.

The bank does ``pe`` output channels x ``simd`` input lanes a cycle. A bigger
bank computes faster but costs LUTs, and it is worth nothing once the weights
cannot arrive faster from the flash. :func:`plan_engine` tries every bank the
model allows (``simd`` divides every stored map's channels; ``pe`` divides ``simd``,
as results are written ``pe`` lanes of a ``simd``-lane word at a time; ``pe * simd``
whole decoder beats), estimates for each

* the cycles per inference, step by step the larger of compute and stream
  (``timing.py``'s model, with the stream bytes of the model's real weight
  stream at that ``simd``),
* the LUTs (:data:`LUT_MODEL`, fitted to Yosys), and
* the block RAM of every buffer (:func:`buffers`),

and takes the fastest bank that fits ``share`` of the board, the smaller when
two are within :data:`TIE` of each other. The chosen bank is then lowered
exactly; the report lists its steps with what bounds each.
"""

from dataclasses import dataclass, field

from hw.engine.engine import LayerEngine

from ...errors import BuildError
from ..dataflow.cost import Resources
from ..memories import MemorySpec, count_brams, design_memories
from .lower import DECODER_LANES, lower_engine
from .schedule import allocate, schedule
from .timing import PIPELINE_CYCLES, FlashRate, epilogue_cycles, step_timings

__all__ = ["EnginePlan", "plan_engine", "buffers", "LUT_MODEL", "PES", "SIMDS"]

PES = (1, 2, 4, 8, 16, 32, 64)
SIMDS = (8, 16, 32, 64, 128)
#: Banks within this fraction of the fastest count as fast; the smallest of them wins.
TIE = 0.01
#: Share of the board's LUTs and block RAM a plan may take (room for the UART, the
#: flash path and routing).
SHARE = 0.8
#: A deeper stream FIFO may take block RAM up to this share of the board's.
BRAM_SHARE = 0.9
#: Stream FIFO depths (bytes) weighed: the base, then multiples of 16 KiB (8 RAMB18).
FIFO_DEPTHS = (512,) + tuple(16384 * k for k in range(1, 9))
#: The fastest banks by the quick estimate that are lowered and timed exactly.
REFINE = 4

#: LUTs of an engine: ``base + per_mac_bit * pe * simd * digit_bits + per_pe_bit * pe * acc``,
#: ``digit_bits`` the bits of one run-time weight (its digits' sign, zero and shift
#: fields), ``acc`` the accumulator width. Fitted to Yosys ``synth_xilinx`` of width-8
#: ResNet-18 engines (ternary at 4x8 and 8x8: 4,615 and 6,271 LUTs; LAT2, 3 digits of
#: shift <= 5, at 8x8: 14,342), measured with ``python -m bench.engine_fps --synth``.
LUT_MODEL = {"base": 2960, "per_mac_bit": 9.7, "per_pe_bit": 17.3}
#: LUTs of a family per LUT6 of that model: ECP5's LUT4s (carry chains included) from
#: nextpnr on ResNet-18's 32 x 32 engine, 56,395 logic and carry LUT4s where
#: ``synth_xilinx`` gave 34,078 LUT6 of logic.
LUT_FACTOR = {"xilinx": 1.0, "ecp5": 1.65, "ice40": 1.65}
#: Flip-flops as a share of LUTs in the same runs.
FF_PER_LUT = 0.8


@dataclass
class Buffer:
    name: str
    width: int
    depth: int
    brams: int
    luts: int
    copies: int = 1          # memories of this shape (thresholds: one per lane)

    @property
    def bits(self):
        return self.width * self.depth * self.copies


@dataclass
class EnginePlan:
    """A bank size, the engine lowered at it, and what it costs and how fast it runs."""
    build: object                  # lower.EngineBuild
    rate: FlashRate
    timings: list                  # timing.StepTiming per step
    buffers: list                  # Buffer
    resources: Resources
    candidates: list = field(default_factory=list)   # (pe, simd, cycles, luts, brams, fits)
    budget: dict = None

    @property
    def pe(self):
        return self.build.config.pe

    @property
    def simd(self):
        return self.build.config.simd

    @property
    def cycles(self):
        return sum(t.cycles for t in self.timings)

    @property
    def fps(self):
        return self.rate.engine_hz / max(self.cycles, 1)


def _digit_bits(fmt):
    return fmt.digits * (2 + fmt.shift_bits)


#: Bits of one loader command that vary between commands, which is what synthesis
#: keeps of the ROM (47 of ``hw.engine.loader.entry_layout``'s 106 for ResNet-18); the
#: exact count is taken once the design exists (:func:`design_buffers`).
LOADER_ENTRY_BITS = 56
#: The board top's UART receive FIFO (``boards.top.UARTBridge``, 512 bytes).
HOST_FIFO_BYTES = 512
HOST_FIFO = "UART receive FIFO (board top)"
STREAM_FIFO = "stream FIFO"


def buffers(fabric, config):
    """The engine's memories, estimated from its configuration: ``[Buffer]`` with their
    block RAMs on ``fabric``. :func:`design_buffers` counts the elaborated design."""
    c = config
    wbits = _digit_bits(c.fmt)
    act = c.act_shape.width
    # name, width, depth, and as Fabric.memory takes them: granularity, copies, options
    mems = [("activations", c.simd * act, c.mem_depth, c.pe * act, 1, {}),
            ("weights (two halves)", c.pe * c.simd * wbits, 2 * c.wbuf_words, None, 1, {}),
            ("thresholds (per lane)", c.acc_width + 1, 2 * c.table_depth, None, c.pe, {}),
            ("loader commands", LOADER_ENTRY_BITS, len(c.entries), None, 1, {"rom": True})]
    s = c.stem
    if s is not None:
        mems.append(("stem line buffer", (s.kernel - 1) * s.channels * s.in_shape.width,
                     s.width + 2 * s.pad, None, 1, {}))
        if s.pool:
            k, pad = s.pool["kernel"], s.pool["pad"]
            mems.append(("stem pool line buffer", (k - 1) * s.groups * c.pe * act,
                         _stem_conv_w(s) + 2 * pad, None, 1, {"style": "distributed"}))
    mems.append((HOST_FIFO, 8, HOST_FIFO_BYTES - 1, None, 1, {}))
    out = []
    for name, width, depth, granularity, copies, options in mems:
        brams, luts = fabric.memory(width, depth, granularity, copies, **options)
        out.append(Buffer(name, width, depth, brams, luts, copies))
    return out + [_stream_fifo(fabric, c)]


def _stream_fifo(fabric, config):
    """The stream FIFO's buffer: ``hw.fifo.StreamFIFO`` keeps one beat in its output
    register, the rest in memory."""
    width, depth = 8 * config.word_bytes, config.stream_fifo - 1
    return Buffer(STREAM_FIFO, width, depth, *fabric.memory(width, depth))


def _stem_conv_w(s):
    return (s.width + 2 * s.pad - s.kernel) // s.stride + 1


#: Friendly names of the engine's memories in the report, by their place in the design.
_NAMES = (("act", "activations"), ("wbuf", "weights (two halves)"),
          ("epilogue.table", "thresholds (per lane)"), ("stream_fifo", STREAM_FIFO),
          ("loader.rom", "loader commands"), ("steps", "step table"),
          ("stem_in", "stem line buffer"), ("stem_pool", "stem pool line buffer"),
          ("bank.queue", "bank result queue"), ("decoder", "decoder"),
          ("host", HOST_FIFO))


def design_buffers(fabric, engine):
    """The memories of the elaborated ``engine`` (and the board top's UART FIFO) as
    ``[Buffer]``: what synthesis will map, memories of one kind in one row."""
    rows = {}
    mems = design_memories(engine) + [
        MemorySpec("host", 8, HOST_FIFO_BYTES - 1, 8, 1)]
    for mem, brams, luts in count_brams(fabric, mems):
        name = next((n for p, n in _NAMES if mem.name.startswith(p)), mem.name)
        b = rows.get(name)
        if b is None:
            rows[name] = Buffer(name, mem.width, mem.depth, brams, luts)
        else:
            b.brams, b.luts, b.copies = b.brams + brams, b.luts + luts, b.copies + 1
    return list(rows.values())


def estimate_luts(pe, simd, fmt, acc_width, family="xilinx"):
    m = LUT_MODEL
    return int(LUT_FACTOR[family] * (m["base"] + m["per_mac_bit"] * pe * simd * _digit_bits(fmt)
                                     + m["per_pe_bit"] * pe * acc_width))


def _estimate(build, pe, rate):
    """Cycles per inference at ``pe`` from a build lowered at another ``pe`` (same simd):
    the stream bytes hardly depend on ``pe``, the compute cycles follow its groups."""
    bits = rate.bits_per_cycle
    total, g_index = 0, 0
    for step, groups in zip(build.steps, build.groups):
        nbytes = sum(build.stream.group_bytes[g_index:g_index + groups])
        g_index += groups
        epi = epilogue_cycles(step)
        g = -(-step.out_channels // pe)
        if step.kind == "stem":
            k = step.segments[0].weights.shape[1]
            compute = step.out_h * step.out_w * g * max(-(-k // build.config.simd), epi)
        else:
            beats = sum(seg.chunks for seg in step.segments) + (step.skip is not None)
            compute = step.out_h * step.out_w * g * max(beats, epi)
        total += max(compute, nbytes * 8 / bits) + PIPELINE_CYCLES
    return int(total)


def _bank_ok(pe, simd):
    return simd % pe == 0 and (pe * simd) % DECODER_LANES == 0


#: The fastest engine clocks at which the stream decoder takes an item every cycle and
#: every other cycle (``StreamDecoder.cycles_per_item``); above the second, every third
#: cycle. Placed on the ECP5-85F: the one-cycle loop through the bit store's shift and the
#: decode at 57 MHz in a small engine (the whole ResNet-18 engine at 37.6 MHz, before its
#: threshold search was registered); two cycles at 63 MHz (the path: the command's fields,
#: the item's decode, whether it goes, into the threshold counter's enable); three cycles,
#: with the rest of the engine registered, 77 MHz (``bench.figures``' engine_small row),
#: its paths no longer in the decoder.
ONE_CYCLE_DECODE_MHZ = 30
TWO_CYCLE_DECODE_MHZ = 60


def decode_cycles(rate):
    """Cycles per decoder item at the engine clock of ``rate``."""
    mhz = rate.engine_hz / 1e6
    return 1 if mhz <= ONE_CYCLE_DECODE_MHZ else 2 if mhz <= TWO_CYCLE_DECODE_MHZ else 3


def _lowered(graph, pe, simd, rate):
    try:
        return lower_engine(graph, pe=pe, simd=simd, decode_cycles=decode_cycles(rate))
    except BuildError:
        return None


def plan_engine(graph, fabric, budget, rate, *, pe=None, simd=None, share=SHARE):
    """The :class:`EnginePlan` for a prepared graph (weight forms kept) on a board.

    ``pe`` / ``simd`` fix the bank (``--bank PExSIMD``); otherwise every bank the
    model allows is weighed. Raises :class:`BuildError` if no bank fits, with what
    each buffer needs against what the board has.
    """
    if pe and simd and not _bank_ok(pe, simd):
        raise BuildError(f"--bank {pe}x{simd}: PE must divide SIMD (results are written PE "
                         f"lanes of a SIMD-lane word at a time) and PE x SIMD must be a "
                         f"multiple of {DECODER_LANES}")
    simds = [simd] if simd else list(SIMDS)
    pes = [pe] if pe else list(PES)
    candidates, first_error, probes = [], None, {}
    for s in simds:
        try:
            steps = schedule(graph, s)
        except BuildError as err:
            first_error = first_error or err
            continue
        allocate(steps)
        ref_pe = next((p for p in (8, 16, 4, 32, 2, 64, 1) if _bank_ok(p, s)
                       and (pe is None or p == pe)), None)
        ref = _lowered(graph, ref_pe, s, rate) if ref_pe else None
        if ref is None:
            continue
        probes[s] = ref
        for p in pes:
            if not _bank_ok(p, s):
                continue
            cfg = _scaled_config(ref, p)
            luts = estimate_luts(p, s, cfg.fmt, cfg.acc_width, fabric.name)
            bufs = buffers(fabric, cfg)
            brams = sum(b.brams for b in bufs)
            luts += sum(b.luts for b in bufs)
            fits = luts <= share * budget["luts"] and brams <= budget["brams"]
            candidates.append((p, s, _estimate(ref, p, rate), luts, brams, fits))
    if not candidates:
        if first_error is not None:
            raise first_error
        raise BuildError(f"layer engine: no bank of PE in {pes} x SIMD in {simds} suits this "
                         "model")
    fitting = [c for c in candidates if c[5]]
    if not fitting:
        raise BuildError(_refusal(fabric, budget, candidates, probes, share))
    # The fastest few, lowered exactly, each with the largest stream FIFO the block RAM
    # left allows (the flash runs ahead through compute-bound steps as far as it holds);
    # the winner's memories are then counted in its elaborated design, and if they do
    # not fit after all, the next fastest are tried.
    fitting.sort(key=lambda c: c[2])
    refined, tried = [], None
    while fitting or refined:
        for p, s, _, luts, _, _ in fitting[:REFINE]:
            build = probes[s] if probes[s].config.pe == p else \
                lower_engine(graph, pe=p, simd=s, decode_cycles=decode_cycles(rate))
            estimate = buffers(fabric, build.config)
            build, timings, _ = _with_fifo(fabric, budget, rate, build, estimate)
            refined.append((sum(t.cycles for t in timings), luts, build))
        del fitting[:REFINE]
        quickest = min(r[0] for r in refined)
        pick = min((r for r in refined if r[0] <= quickest * (1 + TIE)),
                   key=lambda r: (r[1], r[0]))
        refined.remove(pick)
        build = pick[2]
        design = design_buffers(fabric, LayerEngine(build.config))
        tried = tried or (build, design)
        if sum(b.brams for b in design) > budget["brams"]:
            continue
        build, timings, bufs = _with_fifo(fabric, budget, rate, build, design)
        luts = estimate_luts(build.config.pe, build.config.simd, build.config.fmt,
                             build.config.acc_width, fabric.name) + sum(b.luts for b in bufs)
        res = Resources(luts=luts, ffs=int(FF_PER_LUT * luts),
                        brams=sum(b.brams for b in bufs))
        return EnginePlan(build, rate, timings, bufs, res, candidates=sorted(candidates),
                          budget=dict(budget))
    build, design = tried
    raise BuildError(_refusal_lines(
        f"layer engine: the fastest engines that fit by estimate do not fit once built: "
        f"PE {build.config.pe} x SIMD {build.config.simd} needs "
        f"{sum(b.brams for b in design)} block RAMs; the board has {budget['brams']}. "
        f"Block RAM per buffer:", design))


def _with_fifo(fabric, budget, rate, build, bufs):
    """``(build, timings, buffers)`` with the stream FIFO that gives the fewest cycles
    within :data:`BRAM_SHARE` of the board's block RAM (at least the base FIFO);
    ``bufs`` are the build's buffers, whose stream FIFO row is replaced."""
    from dataclasses import replace
    others = [b for b in bufs if b.name != STREAM_FIFO]
    best = None
    for depth in FIFO_DEPTHS:
        cfg = replace(build.config, stream_fifo=depth)
        fifo = _stream_fifo(fabric, cfg)
        total = sum(b.brams for b in others) + fifo.brams
        if depth != FIFO_DEPTHS[0] and total > BRAM_SHARE * budget["brams"]:
            continue
        timings = step_timings(build, rate, depth * cfg.word_bytes)
        cycles = sum(t.cycles for t in timings)
        # A deeper FIFO only where it buys at least 0.5%.
        if best is None or cycles < 0.995 * best[0]:
            best = (cycles, cfg, timings, others + [fifo])
    _, cfg, timings, bufs = best
    return replace(build, config=cfg), timings, bufs


def _scaled_config(ref, pe):
    """The reference build's configuration with the bank's PE changed (buffer sizing)."""
    from dataclasses import replace
    c = ref.config
    wbuf, table = c.wbuf_words, c.table_depth
    if c.stem is not None:
        stem = ref.steps[0]
        k = stem.segments[0].weights.shape[1]
        g = -(-stem.out_channels // pe)
        wbuf = max(max((sum(seg.chunks for seg in s.segments) for s in ref.steps[1:]),
                       default=1), g * -(-k // c.simd))
        table = max(table if c.pe == pe else 1, g * c.stem.levels,
                    max((sum(t.shape[1] for t in s.sets if t is not None)
                         for s in ref.steps[1:]), default=1))
        stem_cfg = replace(c.stem, groups=g)
    else:
        stem_cfg = None
    # The loader has a few commands per group of output channels: as many more groups
    # as the bank has fewer PEs.
    entries = c.entries[:1] * max(1, len(c.entries) * c.pe // pe)
    return replace(c, pe=pe, wbuf_words=wbuf, table_depth=table, stem=stem_cfg,
                   entries=entries)


def _refusal(fabric, budget, candidates, probes, share):
    smallest = min(candidates, key=lambda c: (c[4], c[3]))
    p, s = smallest[0], smallest[1]
    cfg = _scaled_config(probes[s], p)
    bufs = buffers(fabric, cfg)
    return _refusal_lines(
        f"layer engine: the smallest engine for this model (PE {p} x SIMD {s}) needs "
        f"{smallest[4]} block RAMs and about {smallest[3]:,} LUTs; the board has "
        f"{budget['brams']} block RAMs and {budget['luts']:,} LUTs "
        f"({share:.0%} usable). Block RAM per buffer:", bufs)


def _refusal_lines(head, bufs):
    lines = [head]
    for b in bufs:
        lines.append(f"  {b.name}: {b.depth:,} x {b.width} bits = {b.bits / 8192:,.1f} KiB, "
                     f"{b.brams} block RAM{'s' if b.brams != 1 else ''}")
    lines.append("Use a board with more block RAM, or fewer channels or activation bits.")
    return "\n".join(lines)

"""The hardware plan: which cores implement each node, how parallel, at what cost.

:func:`make_plan` turns a prepared graph (:func:`compiler.passes.prepare`) into
a list of :class:`Stage`, one per group of nodes that one chain of cores
implements:

``conv``       conv2d [+ threshold]  -> Pad -> SlidingWindow -> MVU (with thresholds)
``dense``      dense [+ threshold]   -> MVU
``threshold``  a requantization on its own (after an add, say)
``relu``, ``maxpool`` (SlidingWindow -> WindowMax), ``gap`` (GlobalSum),
``flatten`` (Flatten, or nothing for a 1x1 map), ``add`` (AddJoin).

Each MVU stage gets a weight placement -- ``hardwired`` (ConstantMVU: the
weights are wiring, one vector per cycle) or ``rom`` (RomMVU folded onto
``pe`` x ``simd`` lanes) -- chosen within the board's budget; see
:func:`choose_folding`. Buffers before joins are sized by
:mod:`compiler.buffers`.
"""

from dataclasses import dataclass, field

import numpy as np

from hw.csd import csd_digits
from hw.elementwise import SEARCH_FROM
from hw.mvu import DigitEncoding
from hw.lanes import shape_for_range
from sim import golden

from . import buffers, rate
from .cost import Resources
from .errors import BuildError
from .widths import check_signal_widths

__all__ = ["Stage", "Plan", "make_plan", "PLACEMENTS"]

PLACEMENTS = ("auto", "hardwired", "rom")
MAX_RATE_FIFO = 1024
MVU_KINDS = ("conv", "dense")


def signed_width(lo, hi):
    """Width of the narrowest *signed* type holding ``[lo, hi]``."""
    return max((-int(min(lo, 0)) - 1).bit_length(), int(max(hi, 0)).bit_length()) + 1


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass
class Stage:
    name: str                 # the node whose value the stage outputs
    kind: str
    nodes: list               # IR nodes it implements
    inputs: list              # names of the stages feeding it
    in_lanes: list            # lane shape of each input
    out_lane: object          # lane shape of the output
    in_channels: int
    out_channels: int
    in_beats: int             # beats per inference on the (first) input
    out_beats: int
    geometry: dict = field(default_factory=dict)
    # MVU stages
    weights: np.ndarray = None       # (N, K), K in window lane order
    bias: np.ndarray = None
    thresholds: np.ndarray = None    # (N, L) or None
    out_lo: int = 0                  # threshold code of "below all thresholds"
    acc_width: int = 0
    placement: str = None
    in_pow2: bool = False            # input lanes are pow2 codes (decode fused in the MVU)
    pe: int = 1
    simd: int = 1
    queue: int = 0                   # windows queued before a folded MVU (compiler.rate)
    # filled by costing
    cycles: int = 0
    resources: Resources = None

    @property
    def is_mvu(self):
        return self.kind in MVU_KINDS

    @property
    def n(self):
        return self.weights.shape[0]

    @property
    def k(self):
        return self.weights.shape[1]

    @property
    def vectors(self):
        """Matrix-vector products per inference."""
        return self.out_beats

    @property
    def mvu_cycles(self):
        if self.placement == "hardwired":
            return self.vectors
        return self.vectors * (self.n // self.pe) * (self.k // self.simd)

    @property
    def digits(self):
        """Non-zero signed digits of all weights: the adders a hard-wired MVU needs."""
        return sum(len(csd_digits(w)) for w in self.weights.ravel())

    @property
    def lanes_desc(self):
        return f"{self.out_channels} x {self.out_lane}"


@dataclass
class Plan:
    graph: object
    stages: list
    fabric: object
    fifo_depths: dict          # (stage, input index) -> depth of the FIFO before it
    fifo_reasons: dict = field(default_factory=dict)   # same keys -> "join" or "rate"
    budget: dict = None
    placement: str = "auto"
    target_cycles: int = None
    warnings: list = field(default_factory=list)     # things the user should know, one line each

    def __getitem__(self, name):
        return next(s for s in self.stages if s.name == name)

    def consumers(self, name):
        return [(s, i) for s in self.stages for i, src in enumerate(s.inputs) if src == name]

    @property
    def input_stage(self):
        return self.stages[0]

    @property
    def output_stage(self):
        return self.stages[-1]

    @property
    def cycles(self):
        """Cycles per inference in steady state: the slowest stage."""
        return max(s.cycles for s in self.stages)

    @property
    def bottleneck(self):
        return max(self.stages, key=lambda s: s.cycles)

    @property
    def resources(self):
        total = Resources()
        for s in self.stages:
            total += s.resources
        for (name, i), depth in self.fifo_depths.items():
            total += fifo_cost(self.fabric, self[name].in_lanes[i], self[name].in_channels, depth)
        return total


# --- building stages from the graph ------------------------------------------------------

def _lane(node):
    return shape_for_range(node.lo, node.hi)


def _stages_from_graph(graph):
    consumers = {n.name: graph.consumers(n.name) for n in graph.nodes}
    alias = {}              # node name -> name of the stage that outputs its value
    stages = []
    fused = set()
    for node in graph.nodes:
        if node.name in fused:
            continue
        if node.op == "pow2_decode" and all(c.op in ("conv2d", "dense")
                                            for c in consumers[node.name]):
            # The MACs take the codes: exponent addition and one shift per product.
            alias[node.name] = alias[node.inputs[0]]
            fused.add(node.name)
            continue
        if node.op == "input":
            stages.append(Stage(node.name, "input", [node.name], [], [], _lane(node),
                                node.channels, node.channels, node.beats, node.beats,
                                geometry={"shape": node.shape}))
            alias[node.name] = node.name
            continue
        src = graph[node.inputs[0]]
        in_pow2 = src.name in fused and src.op == "pow2_decode"
        inputs = [alias[s] for s in node.inputs]
        in_lanes = [_lane(graph[s]) for s in node.inputs]
        if in_pow2:
            in_lanes = [_lane(graph[src.inputs[0]])]
        common = dict(in_channels=src.channels, in_beats=src.beats)
        if node.op in ("conv2d", "dense"):
            out = node
            nxt = consumers[node.name]
            if len(nxt) == 1 and nxt[0].op == "threshold":
                out = nxt[0]
                fused.add(out.name)
            w = node.tensors["weight"].astype(np.int64)
            if node.op == "conv2d":
                # (O, C, k, k) -> (O, k, k, C): the lane order of a window beat.
                matrix = w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
                geometry = {"height": src.shape[1], "width": src.shape[2],
                            "kernel": node.attrs["kernel"], "stride": node.attrs["stride"],
                            "padding": node.attrs["padding"]}
            else:
                matrix, geometry = w, {}
            bias = node.tensors.get("bias")
            stage = Stage(out.name, "conv" if node.op == "conv2d" else "dense",
                          [node.name] + ([out.name] if out is not node else []), inputs,
                          in_lanes, _lane(out), out_channels=out.channels,
                          out_beats=out.beats, geometry=geometry, weights=matrix,
                          bias=None if bias is None else bias.astype(np.int64),
                          acc_width=signed_width(node.lo, node.hi), in_pow2=in_pow2,
                          **common)
            if out is not node:
                stage.thresholds = out.tensors["thresholds"].astype(np.int64)
                stage.out_lo = golden.int_range(out.attrs["bits"], out.attrs["signed"])[0]
            stages.append(stage)
            alias[node.name] = alias[out.name] = out.name
            continue
        if node.op == "flatten" and (len(src.shape) == 1 or src.shape[1:] == (1, 1)):
            alias[node.name] = alias[src.name]        # nothing to do in hardware
            continue
        stage = Stage(node.name, node.op, [node.name], inputs, in_lanes, _lane(node),
                      out_channels=node.channels if len(node.shape) == 3 else node.shape[0],
                      out_beats=node.beats, **common)
        if node.op == "maxpool":
            stage.geometry = {"height": src.shape[1], "width": src.shape[2],
                              "kernel": node.attrs["kernel"],
                              "stride": node.attrs["stride"] or node.attrs["kernel"],
                              "padding": 0}
        elif node.op == "threshold":
            stage.thresholds = node.tensors["thresholds"].astype(np.int64)
            stage.out_lo = golden.int_range(node.attrs["bits"], node.attrs["signed"])[0]
        elif node.op in ("gap", "flatten"):
            stage.geometry = {"pixels": src.beats}
        elif node.op not in ("add", "relu", "pow2_decode"):
            raise BuildError(f"node '{node.name}': op '{node.op}' has no hardware yet")
        stages.append(stage)
        alias[node.name] = node.name
    out = alias[graph.outputs[0]]
    if out == stages[0].name:
        raise BuildError(f"the output '{graph.outputs[0]}' is the input itself: the model "
                         "computes nothing to build hardware for")
    if stages[-1].name != out:
        raise BuildError(f"the output node '{graph.outputs[0]}' must be the last stage")
    return stages


# --- costs --------------------------------------------------------------------------------

def fifo_cost(fabric, lane, channels, depth):
    depth = max(depth, 3)          # hw.fifo.StreamFIFO's least depth
    width = lane.width * channels
    brams, luts = fabric.memory(width, depth)
    return Resources(luts + 2 * depth.bit_length() + 8, width + 2 * depth.bit_length() + 2,
                     brams)


def _window_cost(fabric, lane, channels, g):
    k, w = g["kernel"], lane.width
    pix = channels * w
    res = Resources(ffs=k * k * pix + 16, luts=16)
    if k > 1:
        brams, luts = fabric.memory((k - 1) * pix, g["width"] + 2 * g["padding"])
        res += Resources(luts=luts, brams=brams)
    if g["padding"]:
        res += Resources(luts=pix // 2 + 8, ffs=pix + 12)          # pad mux + output register
    return res


def _threshold_luts(fabric, lanes, levels, width, constants=True):
    """LUTs of ``lanes`` requantizers over ``levels`` thresholds (hw.elementwise.threshold_code).

    A searched staircase reads its thresholds combinationally, never from block
    RAM: constant thresholds (hard-wired) are a LUT ROM and the multiplexer
    joining its LUTs; thresholds that arrive as signals (a folded MVU's threshold
    ROM word) are a multiplexer over all of them.
    """
    if levels < SEARCH_FROM:
        return lanes * levels * width // 2                  # a comparator per threshold
    steps = levels.bit_length()                             # binary search
    if constants:
        roms = -(-levels // 2 ** fabric.lut_inputs)         # one LUT: 2**inputs x 1 bit
        table = roms * width + fabric.mux_luts(roms, width)
    else:
        table = fabric.mux_luts(levels, width)
    return lanes * (table + steps * width)


def _mvu_cost(fabric, s):
    in_w = s.in_lanes[0].width
    acc_w = s.acc_width
    res = Resources()
    if s.in_pow2:
        # Decoding a code is a one-hot shift: a LUT per output bit of each lane.
        code_w, in_w = in_w, 2 ** in_w
        res.luts += (s.k if s.placement == "hardwired" else s.pe * s.simd) * in_w
        res.luts += 0 if s.placement == "hardwired" else s.pe * s.simd * code_w  # exponent add
    levels = 0
    if s.placement == "hardwired":
        terms = s.digits + int(np.count_nonzero(s.bias)) if s.bias is not None else s.digits
        adds = max(terms - s.n, 0)
        # Early adders see input-wide operands, late ones the full accumulator.
        res.luts += adds * (in_w + acc_w + 1) // 2
        levels = max(1, int(np.ceil(np.log2(max(terms / s.n, 2)))))
        res.ffs += s.n * acc_w * (levels // 3 + 1) // 2 + s.n * acc_w
        if s.thresholds is not None:
            res.luts += _threshold_luts(fabric, s.n, s.thresholds.shape[1], acc_w)
        res.ffs += s.n * s.out_lane.width
    else:
        enc = DigitEncoding(s.weights.ravel())
        terms = s.pe * s.simd * enc.digits
        shifter = in_w * enc.shift_bits if enc.shift_bits else 0
        res.luts += terms * (acc_w + shifter + 1) + s.pe * acc_w * 2
        res.luts += fabric.mux_luts(s.k // s.simd, s.simd * in_w)     # input chunk select
        res.ffs += s.k * in_w + s.simd * in_w + s.pe * acc_w * 2 + s.n * s.out_lane.width + 24
        words = (s.n // s.pe) * (s.k // s.simd)
        brams, luts = fabric.memory(s.pe * s.simd * enc.weight_bits, words)
        res += Resources(luts=luts, brams=brams)
        if s.thresholds is not None:
            levels = s.thresholds.shape[1]
            tw = acc_w + 1
            brams, luts = fabric.memory(s.pe * levels * tw, s.n // s.pe)
            res += Resources(luts=luts + _threshold_luts(fabric, s.pe, levels, acc_w,
                                                         constants=False),
                             brams=brams)
    return res


def cost_stage(fabric, s, goal=None, queues=True):
    """Fill in ``cycles`` and ``resources`` of a stage.

    ``goal``: the cycles per inference the stage needs to reach (the plan's
    rate); a folded conv gets the shortest window queue that reaches it, or
    none at all without ``queues``.
    """
    lane_in = s.in_lanes[0] if s.in_lanes else s.out_lane
    g = s.geometry
    if s.kind == "input":
        s.cycles, s.resources = s.out_beats, Resources()
    elif s.kind == "conv":
        ph, pw = g["height"] + 2 * g["padding"], g["width"] + 2 * g["padding"]
        per_window = s.mvu_cycles // s.vectors
        queue = rate.queue_for_rate(ph, pw, g["kernel"], g["stride"], per_window, goal=goal) \
            if per_window > 1 and queues else 0
        s.queue = max(queue, 3) if queue else 0         # hw.fifo.StreamFIFO holds at least 3
        s.cycles = int(rate.window_mvu_cycles(ph, pw, g["kernel"], g["stride"], per_window,
                                              s.queue))
        s.resources = _window_cost(fabric, lane_in, s.in_channels, g) + _mvu_cost(fabric, s)
        if s.queue:
            s.resources += fifo_cost(fabric, lane_in, g["kernel"] ** 2 * s.in_channels, s.queue)
    elif s.kind == "dense":
        s.cycles = s.mvu_cycles
        s.resources = _mvu_cost(fabric, s)
    elif s.kind == "maxpool":
        s.cycles = g["height"] * g["width"]
        win = g["kernel"] ** 2
        s.resources = _window_cost(fabric, lane_in, s.in_channels, g) + Resources(
            luts=s.in_channels * (win - 1) * lane_in.width * 2,
            ffs=s.in_channels * lane_in.width)
    elif s.kind in ("gap", "flatten"):
        s.cycles = g["pixels"]
        out_bits = s.out_channels * s.out_lane.width
        s.resources = Resources(luts=out_bits if s.kind == "gap" else out_bits // 2,
                                ffs=out_bits * (2 if s.kind == "gap" else 1) + 16)
    elif s.kind == "threshold":
        s.cycles = s.in_beats
        s.resources = Resources(luts=_threshold_luts(fabric, s.in_channels,
                                                     s.thresholds.shape[1], lane_in.width),
                                ffs=s.out_channels * s.out_lane.width + 1)
    elif s.kind in ("relu", "pow2_decode"):
        s.cycles = s.in_beats
        s.resources = Resources(luts=s.in_channels * lane_in.width // 2,
                                ffs=s.out_channels * s.out_lane.width + 1)
    elif s.kind == "add":
        s.cycles = s.in_beats
        s.resources = Resources(luts=s.out_channels * s.out_lane.width,
                                ffs=s.out_channels * s.out_lane.width + 1)
    else:
        raise AssertionError(s.kind)
    return s


# --- folding ------------------------------------------------------------------------------

def _fold_for(stage, cycles):
    """Smallest ``(pe, simd)`` with the stage's MVU work done in ``cycles`` cycles, or None."""
    per_vector = cycles // stage.vectors
    best = None
    for pe in _divisors(stage.n):
        for simd in _divisors(stage.k):
            if (stage.n // pe) * (stage.k // simd) <= per_vector:
                key = (pe * simd, pe)
                if best is None or key < best[0]:
                    best = (key, pe, simd)
    return None if best is None else best[1:]


def _fits(res, budget, share=1.0):
    return (budget is None
            or (res.luts <= share * budget["luts"] and res.ffs <= share * budget["ffs"]
                and res.brams <= share * budget["brams"]))


def choose_folding(plan, *, placement="auto", target_cycles=None, overrides=None, share=0.8):
    """Give every MVU stage a placement and parallelism.

    ``hardwired`` puts every layer's weights in wiring. ``rom`` folds every
    layer: with ``target_cycles`` each layer gets the least parallelism that
    meets it; without, the fastest balanced design whose estimate fits within
    ``share`` of the budget. ``auto`` takes ``hardwired`` if that fits, else
    ``rom``. ``overrides`` maps a stage name to ``(pe, simd)``.
    """
    mvus = [s for s in plan.stages if s.is_mvu]
    requested, overrides = dict(overrides or {}), {}
    for name, (pe, simd) in requested.items():
        stage = next((s for s in mvus if s.name == name or name in s.nodes), None)
        if stage is None:
            raise BuildError(f"--fold {name}: no convolution or dense layer of that name; "
                             f"layers: {', '.join(s.nodes[0] for s in mvus)}")
        if stage.n % pe or stage.k % simd:
            raise BuildError(f"--fold {name}={pe}x{simd}: PE must divide the {stage.n} "
                             f"outputs and SIMD the {stage.k} inputs of the layer")
        if stage.name in overrides:
            raise BuildError(f"--fold {name}: layer '{stage.nodes[0]}' is folded twice; give "
                             "one --fold per layer")
        overrides[stage.name] = (pe, simd)

    def apply(kind, cycles=None, queues=True):
        for s in mvus:
            if s.name in overrides:
                s.placement, (s.pe, s.simd) = "rom", overrides[s.name]
            elif kind == "hardwired":
                s.placement, s.pe, s.simd = "hardwired", s.n, s.k
            else:
                s.placement = "rom"
                s.pe, s.simd = _fold_for(s, cycles) or (s.n, s.k)
            cost_stage(plan.fabric, s, goal=cycles, queues=queues)
        _plan_buffers(plan)          # their size depends on the folding, and they cost too

    if placement == "hardwired" or (placement == "auto" and target_cycles is None):
        apply("hardwired")
        if placement == "hardwired" or _fits(plan.resources, plan.budget, share):
            return plan
    if target_cycles is not None:
        apply("rom", target_cycles)
        return plan
    # The fastest folded design that fits: try every cycle count some layer can hit, each
    # with window queues that let the folding reach it and without (slower, smaller).
    floor = max((s.cycles for s in plan.stages if not s.is_mvu), default=1)
    candidates = sorted({c for s in mvus for pe in _divisors(s.n) for simd in _divisors(s.k)
                         for c in [s.vectors * (s.n // pe) * (s.k // simd)] if c >= floor}
                        | {floor})
    best = None
    for cycles in candidates:
        if best is not None and cycles >= best[0]:
            break
        for queues in (True, False):
            apply("rom", cycles, queues)
            if _fits(plan.resources, plan.budget, share) and (
                    best is None or (plan.cycles, plan.resources.luts) < best[:2]):
                best = (plan.cycles, plan.resources.luts, cycles, queues)
    if best is not None:
        apply("rom", best[2], best[3])
    return plan          # without a fit: the most folded design; check_budget() says why


def _why_floor(plan):
    """Why the plan cannot go faster: its slowest stage, and what bounds that stage."""
    s = plan.bottleneck
    if s.is_mvu and s.placement == "hardwired" or s.is_mvu and s.pe * s.simd == s.n * s.k:
        work = f"computes all its {s.n}x{s.k} products every cycle, one per output beat"
        if s.kind == "conv":
            g = s.geometry
            work = (f"walks its {g['height'] + 2 * g['padding']}x{g['width'] + 2 * g['padding']} "
                    "padded input map one pixel per cycle")
        return f"layer '{s.name}' is fully parallel and {work} ({s.cycles:,} cycles)"
    if s.is_mvu:
        return f"layer '{s.name}' needs {s.cycles:,} cycles"
    return (f"stage '{s.name}' ({s.kind}) moves one pixel per cycle and handles "
            f"{s.cycles:,} per inference")


def check_budget(plan, board_name):
    """Refuse a plan whose estimate exceeds the board, naming the numbers and the remedy."""
    if plan.budget is None:
        return
    res, b = plan.resources, plan.budget
    over = [(what, need, b[what]) for what, need in
            (("luts", res.luts), ("ffs", res.ffs), ("brams", res.brams)) if need > b[what]]
    if not over:
        return
    worst = max((s for s in plan.stages), key=lambda s: s.resources.luts)
    numbers = "; ".join(f"{what}: needs ~{need}, {board_name} has {have}"
                        for what, need, have in over)
    hint = ("fold the layers onto fewer lanes (--weights rom, a larger --target-cycles, or "
            "--fold LAYER=PExSIMD)" if plan.placement != "rom" or plan.target_cycles is None
            else "allow more cycles per inference (--target-cycles)")
    raise BuildError(f"the model does not fit {board_name}: {numbers}. The largest stage is "
                     f"'{worst.name}' (~{worst.resources.luts} LUTs). To fit, {hint}, use fewer "
                     "channels or weight bits, or choose a larger board.")


def _join_buffers(plan):
    """FIFO depth before each input of every add stage (see :mod:`compiler.buffers`)."""
    by_name = {s.name: s for s in plan.stages}
    memo = {}

    def need(name, src):
        """Need function of stage ``name`` in beats of stage ``src``'s output."""
        key = (name, src)
        if key in memo:
            return memo[key]
        s = by_name[name]
        if name == src:
            result = buffers.one_to_one_need(s.out_beats)
        elif s.kind == "add":
            result = np.maximum(need(s.inputs[0], src), need(s.inputs[1], src))
        elif s.kind == "input":
            raise BuildError(f"stage '{src}' does not feed '{name}'")
        else:
            g = s.geometry
            if s.kind in ("conv", "maxpool"):
                own = buffers.window_need(g["height"], g["width"], g["kernel"], g["stride"],
                                          g["padding"])
            elif s.kind in ("gap", "flatten"):
                own = buffers.reduce_need(g["pixels"])
            else:
                own = buffers.one_to_one_need(s.out_beats)
            result = buffers.compose(own, need(s.inputs[0], src))
        memo[key] = result
        return result

    def ancestors(name):
        seen, todo = [], [name]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.append(n)
                todo.extend(by_name[n].inputs)
        return seen

    depths = {}
    for s in plan.stages:
        if s.kind != "add":
            continue
        a, b = s.inputs
        common = [n for n in ancestors(a) if n in ancestors(b)]
        # The nearest common ancestor: the latest stage in topological order.
        order = [st.name for st in plan.stages]
        fork = max(common, key=order.index)
        # Fill the memo in topological order first, so that need() recurses one stage
        # deep at most (a chain of a thousand stages exceeded Python's recursion limit).
        on_path, fed = set(ancestors(a)) | set(ancestors(b)), {fork}
        for st in plan.stages[order.index(fork) + 1:]:
            deps = st.inputs if st.kind == "add" else st.inputs[:1]
            if st.name in on_path and deps and all(d in fed for d in deps):
                need(st.name, fork)
                fed.add(st.name)
        da, db = buffers.join_depths(need(a, fork), need(b, fork))
        for i, d in enumerate((da, db)):
            if d > 0:
                depths[(s.name, i)] = d
    return depths


def _rate_buffers(plan):
    """FIFOs that let a folded layer and its neighbours run at their own pace.

    A folded MVU takes many cycles per vector while the stages around it move a
    beat per cycle, and the windows between them emit in bursts (a stride-2
    window emits on every other pixel of every other row). Without room to
    absorb the bursts, each stage waits for the other and the rate falls well
    below the slowest stage's. A FIFO holding one image of the producer's beats
    decouples them, so the pipeline runs at the rate of its slowest stage.
    """
    depths = {}
    by_name = {s.name: s for s in plan.stages}
    for s in plan.stages:
        for i, src in enumerate(s.inputs):
            p = by_name[src]
            folded = any(x.is_mvu and x.placement == "rom" for x in (s, p))
            if folded and p.out_beats > 1:
                depths[(s.name, i)] = min(p.out_beats, MAX_RATE_FIFO)
    return depths


def make_plan(graph, fabric, *, budget=None, placement="auto", target_cycles=None,
              overrides=None):
    """Plan the hardware for a prepared graph on a fabric within a budget."""
    if placement not in PLACEMENTS:
        raise BuildError(f"unknown weight placement '{placement}'; choose one of "
                         f"{', '.join(PLACEMENTS)}")
    if target_cycles is not None and target_cycles < 1:
        raise BuildError("--target-cycles must be a positive number of cycles")
    stages = _stages_from_graph(graph)
    plan = Plan(graph, stages, fabric, {}, budget=budget, placement=placement,
                target_cycles=target_cycles)
    for s in stages:
        if s.is_mvu:
            s.placement, s.pe, s.simd = "hardwired", s.n, s.k
        cost_stage(fabric, s)
    choose_folding(plan, placement=placement, target_cycles=target_cycles, overrides=overrides)
    _plan_buffers(plan)
    check_signal_widths(plan)
    if target_cycles is not None and plan.cycles > target_cycles:
        unit = "cycle" if target_cycles == 1 else "cycles"
        plan.warnings.append(f"target {target_cycles:,} {unit} per inference not reachable; "
                             f"best is {plan.cycles:,} because {_why_floor(plan)}")
    return plan


def _plan_buffers(plan):
    """Set the FIFOs before stage inputs: join FIFOs, widened to rate FIFOs where needed."""
    plan.fifo_depths = _join_buffers(plan)
    plan.fifo_reasons = {key: "join" for key in plan.fifo_depths}
    for key, depth in _rate_buffers(plan).items():
        if depth > plan.fifo_depths.get(key, 0):
            plan.fifo_depths[key], plan.fifo_reasons[key] = depth, "rate"

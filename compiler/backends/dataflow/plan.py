"""The dataflow plan: every layer its own chain of cores, all layers at once.

:func:`make_plan` asks each node's op for its stage (``op.dataflow(node,
builder)``, :mod:`compiler.ops`), gives every MAC stage a weight placement and
a folding within the board's budget (:func:`choose_folding`), and sizes the
FIFOs between stages (:mod:`.buffers` for the joins, a rate FIFO next to a
folded layer). Each stage's cycles and resources come from the stage itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import BuildError
from ...ops import op_of
from . import buffers, calibration
from .cost import TARGET_MHZ, Resources, fifo_cost, levels_per_stage, skid_cost
from .stage import lane_of
from .widths import check_signal_widths

if TYPE_CHECKING:
    from ...ir import Graph, Node
    from .cost import Fabric
    from .mvu import MvuStage
    from .stage import Stage

__all__ = ["Plan", "make_plan", "choose_folding", "check_budget", "PLACEMENTS", "Builder"]

PLACEMENTS = ("auto", "hardwired", "rom")
#: The deepest rate FIFO (beats): one image of a producer's beats, up to this.
MAX_RATE_FIFO = 1024
#: Share of the board budget the estimates may fill (they are estimates).
BUDGET_SHARE = 0.8


class Builder:
    """What an op's ``dataflow()`` needs to make its stage: the graph, streams, fusions."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.users = {n.name: [] for n in graph.nodes}
        for n in graph.nodes:
            for src in n.inputs:
                self.users[src].append(n)
        self.stage_of = {}          # node name -> name of the stage that outputs its value
        self.fused = set()          # nodes a stage already implements
        self.codes = set()          # pow2 decodes taken over by the MACs that read them

    def op(self, node):
        return op_of(node)

    def consumers(self, node: Node) -> list[Node]:
        return self.users[node.name]

    def alias(self, node: Node, src: str) -> None:
        """``node`` needs no hardware: its value is that of ``src``."""
        self.stage_of[node.name] = self.stage_of[src]
        if self.op(node).internal:
            self.codes.add(node.name)
        return None

    def fuse_threshold(self, node: Node) -> Node:
        """The threshold node that is ``node``'s only consumer (now fused), else ``node``."""
        users = self.users[node.name]
        if len(users) == 1 and self.op(users[0]).engine_role == "threshold":
            self.fused.add(users[0].name)
            return users[0]
        return node

    def takes_codes(self, node: Node) -> bool:
        """``node`` reads pow2 codes, its decode fused into it."""
        return bool(node.inputs) and node.inputs[0] in self.codes

    def streams(self, node: Node, out: Node | None = None) -> dict[str, Any]:
        """The stream fields of a stage implementing ``node`` (and a fused ``out``)."""
        out = out or node
        g = self.graph
        srcs = [g[s] for s in node.inputs]
        lanes = [lane_of(g[g[s].inputs[0]]) if s in self.codes else lane_of(g[s])
                 for s in node.inputs]
        src = srcs[0]
        return dict(inputs=[self.stage_of[s] for s in node.inputs], in_lanes=lanes,
                    out_lane=lane_of(out), in_channels=src.channels,
                    out_channels=out.shape[0], in_beats=src.beats, out_beats=out.beats)

    def stages(self) -> list[Stage]:
        stages = []
        for node in self.graph.nodes:
            if node.name in self.fused:
                continue
            stage = self.op(node).dataflow(node, self)
            if stage is None:
                continue
            for name in stage.nodes:
                self.stage_of[name] = stage.name
            stages.append(stage)
        out = self.stage_of[self.graph.outputs[0]]
        if out == stages[0].name:
            raise BuildError(f"the output '{self.graph.outputs[0]}' is the input itself: the "
                             "model computes nothing to build hardware for")
        if stages[-1].name != out:
            raise BuildError(f"the output node '{self.graph.outputs[0]}' must be the last stage")
        return stages


@dataclass
class Plan:
    graph: Graph
    stages: list[Stage]
    fabric: Fabric
    fifo_depths: dict[tuple[str, int], int]   # (stage, input index) -> depth of the FIFO before it
    fifo_reasons: dict[tuple[str, int], str] = field(default_factory=dict)  # -> "join" or "rate"
    budget: dict[str, int] | None = None
    placement: str = "auto"
    target_cycles: int | None = None
    warnings: list[str] = field(default_factory=list)  # things the user should know, one line each
    clock_mhz: float | None = None    # the clock the stages are pipelined for; None: TARGET_MHZ

    @property
    def target_mhz(self) -> float:
        return self.clock_mhz or TARGET_MHZ[self.fabric.name]

    def __getitem__(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def consumers(self, name: str) -> list[tuple[Stage, int]]:
        return [(s, i) for s in self.stages for i, src in enumerate(s.inputs) if src == name]

    @property
    def mvus(self) -> list[MvuStage]:
        return [s for s in self.stages if s.is_mvu]

    @property
    def input_stage(self) -> Stage:
        return self.stages[0]

    @property
    def output_stage(self) -> Stage:
        return self.stages[-1]

    @property
    def cycles(self) -> int:
        """Cycles per inference in steady state: the slowest stage."""
        return max(s.cycles for s in self.stages)

    @property
    def bottleneck(self) -> Stage:
        return max(self.stages, key=lambda s: s.cycles)

    @property
    def resources(self) -> Resources:
        """The design's estimate: each part's count scaled by the family's calibration."""
        total = Resources()
        for part, res in self.parts().items():
            total += calibration.scale(self.fabric.name, part, res)
        return total

    def estimate(self, stage) -> Resources:
        """One stage's estimate, calibrated as :attr:`resources` is."""
        return calibration.scale(self.fabric.name, calibration.part_of(stage), stage.resources)

    def parts(self) -> dict:
        """The raw counts of the cost model per part (``calibration.PARTS``): MAC stages
        by placement; the other stages, FIFOs and skid buffers."""
        parts = {p: Resources() for p in calibration.PARTS}
        for s in self.stages:
            parts[calibration.part_of(s)] += s.resources
        other = parts["other"]
        for (name, i), depth in self.fifo_depths.items():
            other += fifo_cost(self.fabric, self[name].in_lanes[i], self[name].in_channels, depth)
        for name, i in self.skids:
            other += skid_cost(self.fabric, self[name].in_lanes[i], self[name].in_channels)
        return parts

    @property
    def skids(self) -> list[tuple[str, int]]:
        """The skid buffers ``lower.py`` puts in, ``(stage, input index)`` before an input
        (``Stage.skid_before``), behind the FIFO if one is there: a FIFO's ``ready``
        comes from a register, but the ``ready`` it is given moves its level counter,
        so without the skid that path runs on from the stage into the counter's carry.
        None below a 100 MHz clock (the iCE40's 50 MHz): a 20 ns period holds the
        ``ready`` path of several stages, and the small device needs the LUTs."""
        if self.target_mhz < 100:
            return []
        return [(s.name, i) for s in self.stages[1:] if s.skid_before
                for i, _ in enumerate(s.inputs)]


# --- folding ------------------------------------------------------------------------------

def _fits(res, budget, share=1.0):
    return (budget is None
            or (res.luts <= share * budget["luts"] and res.ffs <= share * budget["ffs"]
                and res.brams <= share * budget["brams"]))


def _overrides(mvus, requested):
    out = {}
    for name, (pe, simd) in dict(requested or {}).items():
        stage = next((s for s in mvus if s.name == name or name in s.nodes), None)
        if stage is None:
            raise BuildError(f"--fold {name}: no convolution or dense layer of that name; "
                             f"layers: {', '.join(s.nodes[0] for s in mvus)}")
        if stage.n % pe or stage.k % simd:
            raise BuildError(f"--fold {name}={pe}x{simd}: PE must divide the {stage.n} "
                             f"outputs and SIMD the {stage.k} inputs of the layer")
        if stage.name in out:
            raise BuildError(f"--fold {name}: layer '{stage.nodes[0]}' is folded twice; give "
                             "one --fold per layer")
        out[stage.name] = (pe, simd)
    return out


def choose_folding(plan: Plan, *, placement: str = "auto", target_cycles: int | None = None,
                   overrides: dict[str, tuple[int, int]] | None = None,
                   share: float = BUDGET_SHARE) -> Plan:
    """Give every MVU stage a placement and parallelism.

    ``hardwired`` puts every layer's weights in wiring. ``rom`` folds every
    layer: with ``target_cycles`` each layer gets the least parallelism that
    meets it; without, the fastest design whose estimate fits within ``share``
    of the budget. ``auto`` takes ``hardwired`` if that fits, then folds every
    layer that would idle at the design's rate where that saves LUTs
    (:func:`_balance`), else ``rom``.
    ``overrides`` maps a layer name to ``(pe, simd)``.
    """
    mvus = plan.mvus
    fixed = _overrides(mvus, overrides)

    def apply(kind, cycles=None, queues=True):
        for s in mvus:
            if s.name in fixed:
                s.fold("rom", *fixed[s.name])
            elif kind == "hardwired":
                s.fold("hardwired")
            else:
                s.fold("rom", *(s.fold_for(cycles) or (s.n, s.k)))
            _cost(plan, s, goal=cycles, queues=queues)
        _plan_buffers(plan)          # their size depends on the folding, and they cost too
        _place_roms(plan, share)

    if placement == "hardwired" or (placement == "auto" and target_cycles is None):
        apply("hardwired")
        if placement == "hardwired":
            return plan
        if _fits(plan.resources, plan.budget, share):
            _balance(plan, fixed, share)
            return plan
    if target_cycles is not None:
        apply("rom", target_cycles)
        return plan
    # The fastest folded design that fits: try every cycle count some layer can hit, each
    # with window queues that let the folding reach it and without (slower, smaller).
    # No design is faster than its stages that are not folded here (the --fold
    # overrides among them): folding a layer to run faster than those buys nothing.
    for s in mvus:
        if s.name in fixed:
            s.fold("rom", *fixed[s.name])
            _cost(plan, s)
    floor = max((s.cycles for s in plan.stages if not s.is_mvu or s.name in fixed),
                default=1)
    candidates = sorted({c for s in mvus for c in s.rate_candidates() if c >= floor} | {floor})
    # Folding more never costs more, so if the most folded design does not fit, nothing
    # will: stop there (check_budget() says why) instead of trying every rate.
    apply("rom", candidates[-1], False)
    if not _fits(plan.resources, plan.budget, share):
        return plan
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


def _balance(plan: Plan, fixed: dict, share: float) -> None:
    """Fold the hard-wired MAC stages that would idle: no stage need run faster than the
    slowest one. Largest first, each gets the least parallelism that keeps the plan's
    rate (its weights in ROM, its adders shared across cycles) where that costs fewer
    LUTs and still fits."""
    rate = plan.cycles
    for s in sorted(plan.mvus, key=lambda s: (-s.resources.luts, s.name)):
        if s.name in fixed or s.cycles >= rate:
            continue
        fold = s.fold_for(rate)
        if fold is None or fold == (s.n, s.k):
            continue
        luts = plan.resources.luts
        s.fold("rom", *fold)
        _cost(plan, s, goal=rate)
        _plan_buffers(plan)
        _place_roms(plan, share)
        if plan.cycles > rate or plan.resources.luts >= luts or not _fits(
                plan.resources, plan.budget, share):
            s.fold("hardwired")
            _cost(plan, s)
            _plan_buffers(plan)
            _place_roms(plan, share)


def _cost(plan: Plan, s, **kw) -> None:
    """Cost stage ``s`` for ``plan``, remembering how (``_place_roms`` costs it again)."""
    if s.is_mvu:
        s.rom_style = None
    s.cost(plan.fabric, **kw)
    s.cost_options = kw


def _place_roms(plan: Plan, share: float) -> None:
    """Put the weight ROMs of folded MAC stages in block RAM while the board has block
    RAM to spare, the stages whose ROMs take the most LUTs per block RAM first.

    Synthesis makes a shallow ROM logic (a LUT per bit of its word for every 64 words
    on Artix-7, every 16 on ECP5) however many block RAMs stand idle: the weights of a
    small folded network are mostly such ROMs. In block RAM the word register after
    the ROM becomes the block RAM's own output register; the threshold ROMs stay
    logic (``MvuStage.rom_cost``)."""
    folded = [s for s in plan.mvus if s.placement == "rom"]
    for s in folded:
        if s.rom_style is not None:
            _cost(plan, s, **s.cost_options)
    if plan.budget is None:
        return
    gains = []
    for s in folded:
        logic, block = s.rom_cost(plan.fabric), s.rom_cost(plan.fabric, "block")
        if logic.luts > block.luts and block.brams > logic.brams:
            gains.append(((logic.luts - block.luts) / (block.brams - logic.brams), s.name, s))
    for _, _, s in sorted(gains, key=lambda g: (-g[0], g[1])):
        options = s.cost_options
        s.rom_style = "block"
        s.cost(plan.fabric, **options)
        if plan.resources.brams > share * plan.budget["brams"]:
            _cost(plan, s, **options)


def why_floor(plan: Plan) -> str:
    """Why the plan cannot go faster: its slowest stage, and what bounds that stage."""
    s = plan.bottleneck
    if s.is_mvu and (s.placement == "hardwired" or s.pe * s.simd == s.n * s.k):
        return (f"layer '{s.name}' is fully parallel and {s.floor_reason()} "
                f"({s.cycles:,} cycles)")
    if s.is_mvu:
        return f"layer '{s.name}' needs {s.cycles:,} cycles"
    return (f"stage '{s.name}' ({s.kind}) moves one pixel per cycle and handles "
            f"{s.cycles:,} per inference")


def check_budget(plan: Plan, board_name: str) -> None:
    """Refuse a plan whose estimate exceeds the board, naming the numbers and the remedy."""
    if plan.budget is None:
        return
    res, b = plan.resources, plan.budget
    over = [(what, need, b[what]) for what, need in
            (("luts", res.luts), ("ffs", res.ffs), ("brams", res.brams)) if need > b[what]]
    if not over:
        return
    numbers = "; ".join(f"{what}: needs ~{need}, {board_name} has {have}"
                        for what, need, have in over)
    weight_bits = sum(s.weight_storage_bits for s in plan.mvus)
    bram_bits = b.get("bram_bits")
    if bram_bits and weight_bits > b["brams"] * bram_bits:
        # Every weight is on chip in this back end: no folding can make room for them.
        raise BuildError(
            f"the model does not fit {board_name}: its weights alone need "
            f"{weight_bits / 1e6:,.1f} Mbit of on-chip ROM, and {board_name} has "
            f"{b['brams'] * bram_bits / 1e6:,.1f} Mbit of block RAM ({numbers}). The dataflow "
            "back end keeps every weight on chip, so no folding changes that; the layer "
            "engine streams the weights from flash (--engine layer).")
    worst = max((s for s in plan.stages), key=lambda s: plan.estimate(s).luts)
    hint = ("fold the layers onto fewer lanes (--weights rom, a larger --target-cycles, or "
            "--fold LAYER=PExSIMD)" if plan.placement != "rom" or plan.target_cycles is None
            else "allow more cycles per inference (--target-cycles)")
    raise BuildError(f"the model does not fit {board_name}: {numbers}. The largest stage is "
                     f"'{worst.name}' (~{plan.estimate(worst).luts} LUTs). To fit, {hint}, "
                     "use fewer "
                     "channels or weight bits, or choose a larger board.")


# --- buffers ------------------------------------------------------------------------------

def _join_buffers(plan):
    """FIFO depth before each input of every join (see :mod:`.buffers`)."""
    by_name = {s.name: s for s in plan.stages}
    order = {s.name: i for i, s in enumerate(plan.stages)}

    def ancestors(name):
        seen, todo = set(), [name]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(by_name[n].inputs)
        return seen

    depths = {}
    for s in plan.stages:
        if not s.is_join:
            continue
        a, b = s.inputs
        up_a, up_b = ancestors(a), ancestors(b)
        # The nearest common ancestor: the latest stage in topological order.
        fork = max(up_a & up_b, key=order.get)
        # Need functions in beats of the fork's output, filled in topological order (a
        # chain of a thousand stages must not recurse a thousand deep).
        needs = {fork: buffers.one_to_one_need(by_name[fork].out_beats)}
        for st in plan.stages[order[fork] + 1:]:
            if st.name not in up_a | up_b or not all(i in needs for i in st.inputs):
                continue
            if st.is_join:
                needs[st.name] = st.join_need(*(needs[i] for i in st.inputs))
            else:
                needs[st.name] = buffers.compose(st.need(), needs[st.inputs[0]])
        # The beat counts are timing-free; while a beat crosses the other branch's
        # registers the fork goes on (at most a beat a cycle), so each buffer also
        # holds the other branch's latency: else the fork waits and the rate drops.
        # No branch lags by more than an image of the fork's beats (its latency is far
        # below an image's cycles), so that much is always enough.
        per_image = by_name[fork].out_beats
        late_a = min(sum(by_name[n].latency_bound for n in up_a - up_b), per_image)
        late_b = min(sum(by_name[n].latency_bound for n in up_b - up_a), per_image)
        slack = (late_b, late_a)
        for i, d in enumerate(buffers.join_depths(needs[a], needs[b])):
            d = d + slack[i] if d > 0 or slack[i] else 0
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


#: Stages one combinational ``ready`` path may cross before it reaches a register: on
#: the ECP5-85F a hop is a LUT and about 2 ns of wire, and the path ends in the enable
#: of a whole beat's register (the digits CNN at 100 MHz: gap, pool, requantizer and
#: add, 10.6 ns).
READY_CHAIN = 3


def _break_ready_chains(plan):
    """Mark the stages that need a skid before them (``Stage.ready_skid``) so that no
    ``ready`` path crosses more than :data:`READY_CHAIN` stages: walking from the
    outputs up, the stages a stage's ``ready`` waits on are counted until a skid.
    FIFOs do not count as an end: the ``ready`` they are given moves their level."""
    chain = {}
    for s in plan.stages:
        s.ready_skid = False
    for s in reversed(plan.stages[1:]):
        longest = 0
        for c, _ in plan.consumers(s.name):
            if c.skid_before:
                continue
            if chain[c.name] + 1 > READY_CHAIN:
                c.ready_skid = True
            else:
                longest = max(longest, chain[c.name])
        chain[s.name] = 1 + longest


def _plan_buffers(plan):
    """Set the FIFOs before stage inputs: join FIFOs, widened to rate FIFOs where needed."""
    _break_ready_chains(plan)        # their skids add to the branches' latency
    plan.fifo_depths = _join_buffers(plan)
    plan.fifo_reasons = {key: "join" for key in plan.fifo_depths}
    for key, depth in _rate_buffers(plan).items():
        if depth > plan.fifo_depths.get(key, 0):
            plan.fifo_depths[key], plan.fifo_reasons[key] = depth, "rate"


def make_plan(graph: Graph, fabric: Fabric, *, budget: dict[str, int] | None = None,
              placement: str = "auto", target_cycles: int | None = None,
              overrides: dict[str, tuple[int, int]] | None = None,
              clock_mhz: float | None = None) -> Plan:
    """Plan the hardware for a prepared graph on a fabric within a budget, pipelined
    for a ``clock_mhz`` clock (default: the family's ``TARGET_MHZ``)."""
    if placement not in PLACEMENTS:
        raise BuildError(f"unknown weight placement '{placement}'; choose one of "
                         f"{', '.join(PLACEMENTS)}")
    if target_cycles is not None and target_cycles < 1:
        raise BuildError("--target-cycles must be a positive number of cycles")
    stages = Builder(graph).stages()
    for s in stages:
        if s.is_mvu:
            s.levels_per_stage = levels_per_stage(fabric, clock_mhz)
    plan = Plan(graph, stages, fabric, {}, budget=budget, placement=placement,
                target_cycles=target_cycles, clock_mhz=clock_mhz)
    for s in stages:
        _cost(plan, s)
    choose_folding(plan, placement=placement, target_cycles=target_cycles, overrides=overrides)
    _plan_buffers(plan)
    check_signal_widths(plan)
    if target_cycles is not None and plan.cycles > target_cycles:
        unit = "cycle" if target_cycles == 1 else "cycles"
        plan.warnings.append(f"target {target_cycles:,} {unit} per inference not reachable; "
                             f"best is {plan.cycles:,} because {why_floor(plan)}")
    return plan


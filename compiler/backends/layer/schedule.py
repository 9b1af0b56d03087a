"""The layer engine's schedule: a prepared graph as a list of steps on one MAC bank.

A step is one pass of the bank over the output channels of a layer, group by
group. The engine fuses what the graph does around a convolution into that
pass, so that little is stored:

* ``conv -> threshold``: requantized in the epilogue (mode ``Q``);
* ``conv -> threshold -> add(x) -> threshold``: the residual add with the
  identity shortcut ``x`` read in the same pass, its result written over ``x``
  (mode ``QS``);
* ``add(threshold(conv), threshold(conv'))``: a block with a projection
  shortcut, both convolutions accumulated side by side in one pass (mode ``QQ``);
* ``gap -> flatten -> dense``: the dense layer's weights reused at every pixel,
  which sums the map on the way (``sum_p W x_p = W sum_p x_p``, exactly);
* ``flatten -> dense``: a convolution whose kernel is the whole map;
* the first convolution with its threshold and a following max pool: the
  stem, computed as the input streams in.

What does not fit these patterns is refused with the node and the reason.
"""

from dataclasses import dataclass, field

import numpy as np

from sim import golden

from ...errors import BuildError
from ...ops import op_of

__all__ = ["Map", "Segment", "Step", "schedule", "allocate"]


@dataclass
class Map:
    """A feature map the engine stores: ``cw`` words of ``simd`` channels per pixel."""
    name: str
    channels: int
    height: int
    width: int
    cw: int
    base: int = None

    @property
    def words(self):
        return self.height * self.width * self.cw


@dataclass
class Segment:
    """One convolution a step accumulates: its weights and the map its window walks."""
    node: str
    src: Map
    weights: np.ndarray           # (N, k*k*C) in window lane order (ky, kx, c)
    kernel: int
    stride: int
    pad: int
    acc: int = 0
    reuse: bool = False           # the same weights at every kernel position (gap + dense)

    @property
    def chunks(self):
        """Weight words per group: kernel positions times words per pixel."""
        return (1 if self.reuse else self.kernel ** 2) * self.src.cw


@dataclass
class Step:
    name: str
    kind: str                     # "stem" or "conv"
    nodes: list
    segments: list
    out_channels: int
    out_h: int
    out_w: int
    mode: str = "Q"               # RAW, Q, QS, QQ
    sets: list = field(default_factory=lambda: [None, None, None])   # (N, L) thresholds
    lows: list = field(default_factory=lambda: [0, 0, 0])
    skip: Map = None
    dst: Map = None               # None: the results leave the engine
    bias: np.ndarray = None       # RAW only: (N,)
    pool: dict = None             # stem only: the max pool after it
    stem_in: dict = None          # stem only: the input's geometry
    out_node: str = None          # the node whose value the step writes
    frees: list = field(default_factory=list)    # maps not needed after this step


def _consumers(graph):
    out = {n.name: [] for n in graph.nodes}
    for n in graph.nodes:
        for src in n.inputs:
            out[src].append(n)
    return out


def _window_matrix(weight):
    """(O, C, k, k) -> (O, k*k*C) in the window lane order (ky, kx, c)."""
    w = weight.astype(np.int64)
    return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)


def _folded_thresholds(th_node, bias):
    """Thresholds of a threshold node, with the producing conv's bias folded in."""
    t = th_node.tensors["thresholds"].astype(np.int64)
    if bias is not None:
        t = t - bias.astype(np.int64)[:, None]
    return t


def _low(node):
    return golden.int_range(node.attrs["bits"], node.attrs["signed"])[0]


class _Scheduler:
    def __init__(self, graph, simd):
        self.graph, self.simd = graph, simd
        self.users = _consumers(graph)
        self.maps = {}                      # node name -> Map holding its value
        self.steps = []
        self.done = set()

    def fail(self, node, message):
        raise BuildError(f"layer engine: node '{node.name}' ({node.op}): {message}; the "
                         "dataflow back end (--engine dataflow) may build it")

    def only_user(self, node, op=None):
        users = self.users[node.name]
        if len(users) == 1 and (op is None or op_of(users[0]).engine_role == op):
            return users[0]
        return None

    def new_map(self, node, shape=None):
        c, h, w = shape or node.shape
        if c % self.simd:
            self.fail(node, f"{c} channels are not a multiple of the bank's {self.simd} lanes")
        m = Map(node.name, c, h, w, c // self.simd)
        self.maps[node.name] = m
        return m

    def map_of(self, name, user):
        if name not in self.maps:
            self.fail(user, f"its input '{name}' is not a stored feature map")
        return self.maps[name]

    def run(self):
        g = self.graph
        order = [n for n in g.nodes if not op_of(n).is_input]
        stem = order[0]
        if op_of(stem).engine_role != "conv" or stem.inputs != [g.input.name]:
            self.fail(stem, "the layer engine starts with a convolution of the input")
        self.stem(stem)
        for node in order:
            if node.name in self.done:
                continue
            step = {"conv": self.conv, "gap": self.gap_dense,
                    "flatten": self.flatten_dense}.get(op_of(node).engine_role)
            if step is None:
                self.fail(node, "this op has no place in the layer engine's steps")
            step(node)
        return self.steps

    # -- patterns -------------------------------------------------------------------------

    def stem(self, conv):
        a = conv.attrs
        th = self.only_user(conv, "threshold")
        if th is None:
            self.fail(conv, "the first convolution must be requantized (a threshold after it)")
        c, h, w = self.graph[conv.inputs[0]].shape
        nodes, tail, pool = [conv.name, th.name], th, None
        mp = self.only_user(th, "pool")
        if mp is not None:
            pool = {"kernel": mp.attrs["kernel"], "stride": mp.attrs["stride"],
                    "pad": mp.attrs["padding"]}
            nodes.append(mp.name)
            tail = mp
        self.done.update(nodes)
        out = self.new_map(tail)
        self.steps.append(Step(
            name=conv.name, kind="stem", nodes=nodes,
            segments=[Segment(conv.name, None, _window_matrix(conv.tensors["weight"]),
                              a["kernel"], a["stride"], a["padding"])],
            out_channels=conv.shape[0], out_h=conv.shape[1], out_w=conv.shape[2], mode="Q",
            sets=[_folded_thresholds(th, conv.tensors.get("bias")), None, None],
            lows=[_low(th), 0, 0], dst=out, pool=pool,
            stem_in={"channels": c, "height": h, "width": w}, out_node=tail.name))

    def segment(self, conv, acc=0):
        a = conv.attrs
        return Segment(conv.name, self.map_of(conv.inputs[0], conv),
                       _window_matrix(conv.tensors["weight"]), a["kernel"], a["stride"],
                       a["padding"], acc)

    def conv(self, conv):
        th = self.only_user(conv, "threshold")
        if th is None:
            return self.raw(conv, [self.segment(conv)], conv.tensors.get("bias"))
        add = self.only_user(th, "add")
        if add is None:
            self.done.update([conv.name, th.name])
            self.steps.append(Step(conv.name, "conv", [conv.name, th.name], [self.segment(conv)],
                                   *conv.shape, mode="Q",
                                   sets=[_folded_thresholds(th, conv.tensors.get("bias")),
                                         None, None],
                                   lows=[_low(th), 0, 0], dst=self.new_map(th),
                                   out_node=th.name))
            return
        out = self.only_user(add, "threshold")
        if out is None:
            self.fail(add, "a residual add must be requantized (a threshold after it)")
        other = self.graph[add.inputs[1] if add.inputs[0] == th.name else add.inputs[0]]
        sets = [_folded_thresholds(th, conv.tensors.get("bias")), None,
                out.tensors["thresholds"].astype(np.int64)]
        lows = [_low(th), 0, _low(out)]
        nodes = [conv.name, th.name, add.name, out.name]
        if other.name in self.maps:
            # The identity shortcut: read at the output position, overwritten by the result.
            skip = self.maps[other.name]
            if (skip.channels, skip.height, skip.width) != tuple(conv.shape):
                self.fail(add, "the shortcut and the branch differ in shape")
            self.done.update(nodes)
            self.steps.append(Step(conv.name, "conv", nodes, [self.segment(conv)], *conv.shape,
                                   mode="QS", sets=sets, lows=lows, skip=skip,
                                   dst=self.alias(out, skip), out_node=out.name))
            return
        proj = self.graph[other.inputs[0]] if op_of(other).engine_role == "threshold" else None
        if (proj is None or op_of(proj).engine_role != "conv"
                or self.only_user(proj, "threshold") is None):
            self.fail(add, "a residual add needs a stored shortcut or a requantized "
                           "projection convolution")
        sets[1] = _folded_thresholds(other, proj.tensors.get("bias"))
        lows[1] = _low(other)
        nodes += [proj.name, other.name]
        self.done.update(nodes)
        self.steps.append(Step(conv.name, "conv", nodes,
                               [self.segment(conv, 0), self.segment(proj, 1)], *conv.shape,
                               mode="QQ", sets=sets, lows=lows, dst=self.new_map(out),
                               out_node=out.name))

    def alias(self, node, m):
        """``node``'s value lives where ``m`` was (written in place)."""
        self.maps[node.name] = m
        return m

    def raw(self, conv, segments, bias, nodes=None):
        nodes = nodes or [conv.name]
        if conv.name not in self.graph.outputs:
            self.fail(conv, "an output that is not requantized must be the network's output")
        self.done.update(nodes)
        self.steps.append(Step(conv.name, "conv", nodes, segments, conv.shape[0],
                               *(conv.shape[1:] if len(conv.shape) == 3 else (1, 1)),
                               mode="RAW", bias=None if bias is None else bias.astype(np.int64),
                               out_node=conv.name))

    def dense(self, dense, segment, nodes):
        th = self.only_user(dense, "threshold")
        bias = dense.tensors.get("bias")
        if th is None:
            return self.raw(dense, [segment], bias, nodes)
        nodes = nodes + [th.name]
        self.done.update(nodes)
        last = th.name in self.graph.outputs
        self.steps.append(Step(dense.name, "conv", nodes, [segment], dense.shape[0], 1, 1,
                               mode="Q", sets=[_folded_thresholds(th, bias), None, None],
                               lows=[_low(th), 0, 0],
                               dst=None if last else self.new_map(th, (dense.shape[0], 1, 1)),
                               out_node=th.name))

    def gap_dense(self, gap):
        flat = self.only_user(gap, "flatten")
        dense = self.only_user(flat, "dense") if flat is not None else None
        if dense is None:
            self.fail(gap, "a global average pool must feed a dense layer (through flatten)")
        src = self.map_of(gap.inputs[0], gap)
        if src.height != src.width:
            self.fail(gap, "the engine pools square maps")
        w = dense.tensors["weight"].astype(np.int64)            # (N, C)
        seg = Segment(dense.name, src, w, src.height, 1, 0, reuse=True)
        self.dense(dense, seg, [gap.name, flat.name, dense.name])

    def flatten_dense(self, flat):
        dense = self.only_user(flat, "dense")
        if dense is None:
            self.fail(flat, "a flatten must feed a dense layer")
        src = self.map_of(flat.inputs[0], flat)
        if src.height != src.width:
            self.fail(flat, "the engine flattens square maps")
        c, h, w = src.channels, src.height, src.width
        weight = dense.tensors["weight"].astype(np.int64).reshape(-1, c, h, w)
        seg = Segment(dense.name, src, _window_matrix(weight), h, 1, 0)
        self.dense(dense, seg, [flat.name, dense.name])


def schedule(graph, simd):
    """The steps of a prepared graph (:func:`compiler.passes.prepare` without weight forms)."""
    steps = _Scheduler(graph, simd).run()
    _lifetimes(steps)
    return steps


def _lifetimes(steps):
    """Record after which step each stored map is no longer read."""
    last = {}
    for i, s in enumerate(steps):
        for seg in s.segments:
            if seg.src is not None:
                last[id(seg.src)] = (i, seg.src)
        if s.skip is not None:
            last[id(s.skip)] = (i, s.skip)
    for i, m in last.values():
        if steps[i].dst is not m:
            steps[i].frees.append(m)


def allocate(steps):
    """Give every stored map a base address; returns the words the memory needs.

    First fit over the steps in order: a map is placed when its step writes it
    and its words are free again after the last step that reads it. A result
    written over its shortcut shares the shortcut's place.
    """
    free = [(0, 1 << 62)]          # (start, end) of free ranges, sorted
    peak = 0

    def take(words):
        nonlocal peak
        for i, (a, b) in enumerate(free):
            if b - a >= words:
                free[i] = (a + words, b)
                peak = max(peak, a + words)
                return a
        raise AssertionError("unbounded free list exhausted")

    def give(a, words):
        free.append((a, a + words))
        free.sort()
        merged = []
        for s, e in free:
            if merged and merged[-1][1] == s:
                merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        free[:] = merged

    for s in steps:
        if s.dst is not None and s.dst.base is None:
            s.dst.base = take(s.dst.words)
        for m in s.frees:
            give(m.base, m.words)
    return peak

"""Lowering: a :class:`~compiler.plan.Plan` becomes one Amaranth component.

:class:`Accelerator` instantiates the cores of every stage, forks streams that
feed several stages, puts the planned FIFOs before joins and wires it all with
:func:`amaranth.lib.wiring.connect`. Its own ports are the network's input
stream ``i`` (pixels of the input image) and output stream ``o``.
"""

import sys
from contextlib import contextmanager

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.elementwise import Pow2Decode, ReLU, Thresholds
from hw.fifo import StreamFIFO
from hw.flatten import Flatten
from hw.join import AddJoin, Fork
from hw.lanes import lanes
from hw.mvu import ConstantMVU, RomMVU
from hw.pad import Pad
from hw.pool import GlobalSum, WindowMax
from hw.window import SlidingWindow

__all__ = ["Accelerator", "stage_cores", "deep_recursion"]

#: Python frames Amaranth may need: its netlist checks walk combinational paths
#: recursively, a few frames per cell, and a chain of stages passes ``ready``
#: combinationally through every one (1,024 nodes of a few cells each).
RECURSION_LIMIT = 100_000


@contextmanager
def deep_recursion(limit=RECURSION_LIMIT):
    """Raise Python's recursion limit while Amaranth converts a deep design.

    Since Python 3.11 a call between Python functions takes no C stack, so the
    limit only bounds the interpreter's frame memory (about a KB a frame).
    """
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _mvu(stage):
    kw = dict(in_shape=stage.in_lanes[0], acc_width=stage.acc_width, bias=stage.bias,
              thresholds=stage.thresholds, out_shape=stage.out_lane, out_lo=stage.out_lo,
              in_pow2=stage.in_pow2)
    if stage.placement == "hardwired":
        return ConstantMVU(stage.weights, **kw)
    return RomMVU(stage.weights, pe=stage.pe, simd=stage.simd, **kw)


def stage_cores(stage):
    """The chain of cores that implements ``stage``, first to last, as ``[(name, core)]``."""
    lane = stage.in_lanes[0] if stage.in_lanes else None
    g = stage.geometry
    c = stage.in_channels
    if stage.kind in ("conv", "maxpool"):
        chain = []
        h, w = g["height"], g["width"]
        if g["padding"]:
            chain.append(("pad", Pad(lane, c, h, w, g["padding"])))
            h, w = h + 2 * g["padding"], w + 2 * g["padding"]
        chain.append(("window", SlidingWindow(lane, c, h, w, g["kernel"], g["stride"])))
        if stage.kind == "conv":
            if stage.queue:
                # Absorbs the window's bursts so that the folded MVU never waits
                # (compiler.rate explains the depth).
                chain.append(("queue", StreamFIFO(lanes(lane, g["kernel"] ** 2 * c),
                                                  stage.queue)))
            chain.append(("mvu", _mvu(stage)))
        else:
            chain.append(("max", WindowMax(lane, c, g["kernel"] ** 2)))
        return chain
    if stage.kind == "dense":
        return [("mvu", _mvu(stage))]
    if stage.kind == "threshold":
        return [("thresholds", Thresholds(lane, stage.out_lane, stage.thresholds, stage.out_lo))]
    if stage.kind == "relu":
        return [("relu", ReLU(lane, stage.out_lane, c))]
    if stage.kind == "pow2_decode":
        return [("decode", Pow2Decode(lane, stage.out_lane, c))]
    if stage.kind == "gap":
        return [("sum", GlobalSum(lane, stage.out_lane, c, g["pixels"]))]
    if stage.kind == "flatten":
        return [("flatten", Flatten(lane, c, g["pixels"]))]
    if stage.kind == "add":
        return [("add", AddJoin(stage.in_lanes[0], stage.in_lanes[1], stage.out_lane,
                                stage.out_channels))]
    raise AssertionError(stage.kind)


class Accelerator(wiring.Component):
    """The whole network as one streaming core.

    Members
    -------
    i : In(stream.Signature(lanes(input lane, C)))
        Input pixels in raster order (a vector input is one beat).
    o : Out(stream.Signature(lanes(output lane, N)))
        The output, one beat per inference for a vector output.
    """

    def __init__(self, plan):
        self.plan = plan
        first, last = plan.input_stage, plan.output_stage
        super().__init__({
            "i": In(stream.Signature(lanes(first.out_lane, first.out_channels))),
            "o": Out(stream.Signature(lanes(last.out_lane, last.out_channels))),
        })

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        outputs = {}     # stage name -> its output stream, before any fork
        inputs = {}      # stage name -> its input streams, in the stage's input order
        for stage in plan.stages[1:]:
            chain = stage_cores(stage)
            for name, core in chain:
                m.submodules[f"{stage.name}_{name}"] = core
            for (_, a), (_, b) in zip(chain, chain[1:]):
                wiring.connect(m, a.o, b.i)
            head = chain[0][1]
            outputs[stage.name] = chain[-1][1].o
            inputs[stage.name] = [head.a, head.b] if stage.kind == "add" else [head.i]
        outputs[plan.input_stage.name] = wiring.flipped(self.i)

        for name, source in outputs.items():
            consumers = plan.consumers(name)
            if name == plan.output_stage.name:
                consumers = consumers + [(None, 0)]
            if len(consumers) > 1:
                fork = Fork(source.payload.shape(), len(consumers))
                m.submodules[f"{name}_fork"] = fork
                wiring.connect(m, source, fork.i)
                sources = [fork.o[j] for j in range(len(consumers))]
            else:
                sources = [source]
            for src, (stage, index) in zip(sources, consumers):
                if stage is None:
                    wiring.connect(m, src, wiring.flipped(self.o))
                    continue
                depth = plan.fifo_depths.get((stage.name, index))
                if depth:
                    fifo = StreamFIFO(src.payload.shape(), depth)
                    m.submodules[f"{stage.name}_fifo{index}"] = fifo
                    wiring.connect(m, src, fifo.i)
                    src = fifo.o
                wiring.connect(m, src, inputs[stage.name][index])
        return m

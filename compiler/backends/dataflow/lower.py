"""Lowering: a dataflow :class:`~.plan.Plan` becomes one Amaranth component.

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

from hw.fifo import StreamFIFO
from hw.join import Fork
from hw.lanes import lanes
from hw.skid import SkidBuffer

__all__ = ["Accelerator", "deep_recursion"]

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


class Accelerator(wiring.Component):
    """The whole network as one streaming core.

    Members
    -------
    i : In(stream.Signature(lanes(input lane, C)))
        Input pixels in raster order (a vector input is one beat).
    o : Out(stream.Signature(lanes(output lane, N)))
        The output, one beat per inference for a vector output.

    The inputs of MAC stages and joins get a FIFO (a join or rate buffer of the
    plan) or else a skid buffer (``Plan.skids``): both register ``ready``, and a
    MAC stage's own output queue (``hw.mvu``) registers ``valid``, so the
    combinational handshake paths span the cores of one stage and a few lane-wise
    stages, never the network.
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
        skids = set(plan.skids)
        for stage in plan.stages[1:]:
            chain = stage.cores()
            for name, core in chain:
                m.submodules[f"{stage.name}_{name}"] = core
            for (_, a), (_, b) in zip(chain, chain[1:]):
                wiring.connect(m, a.o, b.i)
            head = chain[0][1]
            outputs[stage.name] = chain[-1][1].o
            inputs[stage.name] = [head.a, head.b] if stage.is_join else [head.i]
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
                key = (stage and stage.name, index)
                bufs = []
                if key in plan.fifo_depths:
                    bufs.append(("fifo", StreamFIFO(src.payload.shape(), plan.fifo_depths[key])))
                if key in skids:
                    bufs.append(("skid", SkidBuffer(src.payload.shape())))
                for kind, buf in bufs:
                    m.submodules[f"{stage.name}_{kind}{index}"] = buf
                    wiring.connect(m, src, buf.i)
                    src = buf.o
                if stage is None:
                    wiring.connect(m, src, wiring.flipped(self.o))
                else:
                    wiring.connect(m, src, inputs[stage.name][index])
        return m

"""A stage of the dataflow back end: the chain of cores one or a few IR nodes become.

Every op (``compiler.ops``) makes its own stage class from :class:`Stage`; the
planner (``plan.py``) strings them together, folds the MAC layers, and sizes the
buffers between them; ``lower.py`` instantiates their cores. A stage knows:

* its streams: inputs, lanes, channels and beats per inference;
* :meth:`Stage.cost`: cycles per inference and the resources of its cores;
* :meth:`Stage.cores`: the cores, first to last;
* :meth:`Stage.need`: input beats needed before each output beat, for the
  buffer analysis of ``buffers.py``.

Geometry is typed: a :class:`Window` for everything that slides a window over
a map. Cost constants are named in ``cost.py``.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from hw.lanes import shape_for_range
from hw.skid import SkidBuffer

from . import buffers
from .cost import Resources, fifo_cost, window_cost

__all__ = ["Window", "Stage", "lane_of", "STAGE_REGISTERS"]

#: Registers a beat passes in any stage (pad, window, output and threshold registers);
#: an upper bound, so that a join buffer sized with it never stalls the fork.
STAGE_REGISTERS = 4


def lane_of(node):
    """The stream lane shape of a node's values (from its exact range)."""
    return shape_for_range(node.lo, node.hi)


@dataclass(frozen=True)
class Window:
    """A ``kernel`` x ``kernel`` window sliding by ``stride`` over a padded map."""
    height: int
    width: int
    kernel: int
    stride: int
    padding: int = 0
    pad_value: int = 0          # what the padding holds (0, or the lowest value for a max)

    @property
    def padded_height(self):
        return self.height + 2 * self.padding

    @property
    def padded_width(self):
        return self.width + 2 * self.padding

    @property
    def padded_pixels(self):
        return self.padded_height * self.padded_width

    @property
    def out_height(self):
        return (self.padded_height - self.kernel) // self.stride + 1

    @property
    def out_width(self):
        return (self.padded_width - self.kernel) // self.stride + 1

    def need(self):
        return buffers.window_need(self.height, self.width, self.kernel, self.stride,
                                   self.padding)

    def cores(self, lane, channels):
        """Pad (if any) and sliding window of ``channels`` lanes of ``lane``."""
        from hw.pad import Pad
        from hw.window import SlidingWindow
        chain = []
        if self.padding:
            chain.append(("pad", Pad(lane, channels, self.height, self.width, self.padding,
                                     value=self.pad_value)))
        chain.append(("window", SlidingWindow(lane, channels, self.padded_height,
                                              self.padded_width, self.kernel, self.stride)))
        return chain

    def cost(self, fabric, lane, channels):
        return window_cost(fabric, lane, channels, self)

    def signal(self, lane, channels):
        k = self.kernel
        return ("window", f"{k}x{k} pixels x {channels:,} channels x {lane.width} bits",
                k * k * channels * lane.width)


@dataclass(eq=False)
class Stage(ABC):
    """What every stage has; subclasses add their geometry and parameters."""
    name: str                 # the node whose value the stage outputs
    nodes: list               # IR nodes it implements
    inputs: list              # names of the stages feeding it
    in_lanes: list            # lane shape of each input
    out_lane: object          # lane shape of the output
    in_channels: int
    out_channels: int
    in_beats: int             # beats per inference on the (first) input
    out_beats: int
    cycles: int = 0
    resources: Resources = field(default=None)
    ready_skid: bool = False  # a skid before it ends a long ``ready`` path (``plan.py``)

    #: The name the report shows for the stage's cores.
    kind = "stage"
    #: A MAC stage: the planner folds it and places its weights.
    is_mvu = False
    #: A join of two streams (``join_need`` combines the needs of its two inputs).
    is_join = False

    @property
    def lane_in(self):
        return self.in_lanes[0] if self.in_lanes else self.out_lane

    @property
    def lanes_desc(self):
        return f"{self.out_channels} x {self.out_lane}"

    @abstractmethod
    def cost(self, fabric, goal=None, queues=True):
        """Set ``cycles`` and ``resources``; ``goal`` is the plan's rate (folded stages)."""

    @abstractmethod
    def cores(self):
        """The cores of the stage, first to last, as ``[(name, core)]``."""

    def need(self):
        """Input beats needed before each output beat (``buffers``)."""
        return buffers.one_to_one_need(self.out_beats)

    @property
    def latency_bound(self):
        """At least the cycles a beat spends in the stage's cores: the registers of pad,
        window, requantizer and handshakes (``STAGE_REGISTERS``) and the skid buffers
        before the stage if it has them (``skid_before``); a join's buffers hold beats
        for this long on top of what the beat counts ask (``plan.py``)."""
        return STAGE_REGISTERS + int(self.skid_before) * SkidBuffer.LATENCY

    @property
    def skid_before(self):
        """Its inputs pass a skid buffer, after the FIFO if one is planned (``lower.py``): a join,
        whose ``ready`` waits on the ``valid`` of both inputs, and a MAC stage, so that
        the ``ready`` of its window and pad does not run on through the lane-wise
        stages before it (pool, sum, requantizer) into their wide registers. The output
        of a MAC stage needs none: its queue (``hw.mvu``) gives ``valid`` from a
        register, and its pipeline does not stall. The planner adds one where ``ready``
        would cross more than ``plan.READY_CHAIN`` lane-wise stages (``ready_skid``)."""
        return self.is_join or self.is_mvu or self.ready_skid

    def report(self):
        """Fields the report adds for this kind of stage."""
        return {}

    def elaboration(self):
        """``(adder terms, comparisons, description)`` the stage's cores elaborate: what
        building it costs the compiler (``compiler.driver.compile_cost``)."""
        return 0, 0, f"stage '{self.name}'"

    def signals(self):
        """``[(what, how, bits)]``: the widest signals of the stage's cores."""
        out = [("output beat", f"{self.out_channels:,} lanes x {self.out_lane.width} bits",
                self.out_channels * self.out_lane.width)]
        if self.in_lanes:
            w = self.in_lanes[0].width
            out.append(("input beat", f"{self.in_channels:,} lanes x {w} bits",
                        self.in_channels * w))
        return out

    def fifo_cost(self, fabric, depth, index=0):
        return fifo_cost(fabric, self.in_lanes[index], self.in_channels, depth)

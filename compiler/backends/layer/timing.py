"""How long a layer engine takes per inference, step by step: compute or the weight stream.

For every load group the engine needs its compute time on the bank and the
time the flash takes to deliver the group's bytes. The loader runs up to two
groups ahead (the buffers are double), and the flash runs ahead of the loader
as far as the stream FIFO allows; :func:`step_timings` plays that out group by
group. The figures are the cores' own:

* the bank takes one beat per cycle: per output pixel, every weight word of
  every segment, plus one beat for a residual's shortcut;
* the epilogue takes ``Epilogue.cycles`` per result: one cycle to take the
  result, per threshold set it searches two per bit and two more (its first
  address, its code), one to hand it on; the bank waits for it when it is the
  slower of the two;
* the stem takes, per window of the input, ``groups * max(chunks, epilogue)``;
* the decoder takes ``StreamDecoder.cycles`` per command (an item every one, two
  or three cycles, by the engine's clock: ``plan.decode_cycles``): a group's bytes
  that wait in the stream FIFO drain at that pace;
* the flash delivers ``4 / divider`` bits per cycle of its own clock.

``compiler/backends/layer/lower.py`` makes the steps; the report puts these
figures next to the cycles measured in Verilator.
"""

from dataclasses import dataclass

from hw.engine.epilogue import Epilogue

__all__ = ["StepTiming", "step_timings", "epilogue_cycles", "FlashRate", "PIPELINE_CYCLES"]

#: Cycles a step spends starting and draining (sequencer, read stage, bank, epilogue).
PIPELINE_CYCLES = 24


@dataclass(frozen=True)
class FlashRate:
    """The weight stream's bandwidth in bits per engine cycle."""
    engine_hz: float
    flash_hz: float
    divider: int

    @property
    def bits_per_cycle(self):
        return 4 * self.flash_hz / self.divider / self.engine_hz


@dataclass
class StepTiming:
    name: str
    macs: int
    compute: int          # cycles on the bank
    stream: int           # cycles of the flash for the step's bytes
    cycles: int           # what the step costs: per group, the larger of the two
    stream_bytes: int

    @property
    def bound(self):
        return "stream" if self.stream > self.compute else "compute"

    @property
    def utilization(self):
        """MACs done per bank lane-cycle while the step runs."""
        return self.macs / max(self.cycles, 1)


def epilogue_cycles(step):
    """Cycles the epilogue spends on one result of ``step``."""
    return Epilogue.cycles([t.shape[1].bit_length() for t in step.sets if t is not None])


def _groups(build, rate):
    """Per load group: ``(step index, compute cycles, stream bytes, decoder cycles)``; and
    per step its :class:`StepTiming` fields but ``cycles``."""
    pe, simd = build.config.pe, build.config.simd
    groups, steps, g_index = [], [], 0
    bits = rate.bits_per_cycle
    for i, (step, n) in enumerate(zip(build.steps, build.groups)):
        group_bytes = build.stream.group_bytes[g_index:g_index + n]
        decode = build.stream.group_cycles[g_index:g_index + n]
        g_index += n
        epi = epilogue_cycles(step)
        macs = sum(int(seg.weights.size) for seg in step.segments)
        if step.kind == "stem":
            k = step.segments[0].weights.shape[1]
            chunks = -(-k // simd)
            g = -(-step.out_channels // pe)
            compute = step.out_h * step.out_w * g * max(chunks, epi)
            macs *= step.out_h * step.out_w
            groups.append((i, compute, group_bytes[0], decode[0]))
        else:
            pixels = step.out_h * step.out_w
            beats = sum(seg.chunks for seg in step.segments) + (step.skip is not None)
            macs *= pixels
            compute = 0
            for b, d in zip(group_bytes, decode):
                groups.append((i, pixels * max(beats, epi), b, d))
                compute += pixels * max(beats, epi)
        nbytes = sum(group_bytes)
        steps.append((step.name, macs, int(compute), int(round(nbytes * 8 / bits)), nbytes))
    return groups, steps


def step_timings(build, rate, fifo_bytes=None):
    """A :class:`StepTiming` per step of an :class:`~.lower.EngineBuild`.

    Group by group, as the engine runs: the flash delivers the stream at its rate
    into the stream FIFO (``fifo_bytes``, default the build's) and stops while it
    is full; the loader takes a group's bytes once one of the two weight-buffer
    halves is free (the group two before has been computed) and all of them have
    arrived, no sooner than the decoder gets through them; the bank computes a
    group once it is loaded and the group before is done. A FIFO larger than a
    group lets the flash run ahead through steps that compute longer than their
    weights take to arrive, so that the stream, not the sum of the slower of the
    two per group, bounds the inference.
    """
    c = build.config
    fifo = c.stream_fifo * c.word_bytes if fifo_bytes is None else fifo_bytes
    per_cycle = rate.bits_per_cycle / 8                # bytes per engine cycle
    groups, steps = _groups(build, rate)
    total = 0                                          # bytes of the groups so far
    ends = []                                          # cumulative bytes after each group
    arrived, taken, done = [], [], []
    first = 0                                          # first group whose end is > total-fifo
    step_end = {}
    for g, (i, compute, nbytes, decode) in enumerate(groups):
        total += nbytes
        ends.append(total)
        # The flash can hold the group's last byte once the bytes up to total - fifo
        # have been taken out of the FIFO.
        while first < g and ends[first] < total - fifo:
            first += 1
        room = taken[first] if first < g and total - fifo > 0 else 0.0
        free = done[g - 2] if g >= 2 else 0.0
        a = max((arrived[-1] if arrived else 0.0) + nbytes / per_cycle, room)
        if nbytes > fifo:
            # The FIFO holds the group's first ``fifo`` bytes until the loader starts on
            # it; the rest flows through at the flash's rate.
            a = max(a, max(free, taken[-1] if taken else 0.0) + (nbytes - fifo) / per_cycle)
        # The decoder starts on the group once a half is free and has its bytes when
        # the flash has delivered them, whichever is later (a backlog in the FIFO
        # drains at the decoder's pace).
        t = max(a, max(free, taken[-1] if taken else 0.0) + decode)
        start = max(t, done[-1] if done else 0.0)
        if g == 0 or groups[g - 1][0] != i:
            start += PIPELINE_CYCLES
        arrived.append(a)
        taken.append(t)
        done.append(start + compute)
        step_end[i] = done[-1]
    out, prev = [], 0.0
    for i, (name, macs, compute, stream, nbytes) in enumerate(steps):
        end = step_end.get(i, prev)
        out.append(StepTiming(name, macs, compute, stream, int(round(end - prev)), nbytes))
        prev = end
    return out

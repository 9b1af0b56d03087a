"""How long a layer engine takes per inference, step by step: compute or the weight stream.

For every load group the engine needs its compute time on the bank and the
time the flash takes to deliver the group's bytes. The loader runs up to two
groups ahead (the buffers are double), so a group costs the larger of the
two, and a step the sum over its groups. The figures are the cores' own:

* the bank takes one beat per cycle: per output pixel, every weight word of
  every segment, plus one beat for a residual's shortcut;
* the epilogue takes ``2 + steps`` cycles per result, ``steps`` the bits of
  every threshold set it searches (``Epilogue``: one cycle to take the result,
  one comparison per bit, one to hand it on); the bank waits for it when it
  is the slower of the two;
* the stem takes, per window of the input, ``groups * max(chunks, epilogue)``;
* the flash delivers ``4 / divider`` bits per cycle of its own clock.

``compiler/backends/layer/lower.py`` makes the steps; the report puts these
figures next to the cycles measured in Verilator.
"""

from dataclasses import dataclass

__all__ = ["StepTiming", "step_timings", "FlashRate", "PIPELINE_CYCLES"]

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


def _epilogue_cycles(step):
    sets = [t for t in step.sets if t is not None]
    return 2 + sum(t.shape[1].bit_length() for t in sets)


def step_timings(build, rate):
    """A :class:`StepTiming` per step of an :class:`~.lower.EngineBuild`."""
    pe, simd = build.config.pe, build.config.simd
    out, g_index = [], 0
    bits = rate.bits_per_cycle
    for step, groups in zip(build.steps, build.groups):
        group_bytes = build.stream.group_bytes[g_index:g_index + groups]
        g_index += groups
        epi = _epilogue_cycles(step)
        macs = sum(int(seg.weights.size) for seg in step.segments)
        if step.kind == "stem":
            k = step.segments[0].weights.shape[1]
            chunks = -(-k // simd)
            g = -(-step.out_channels // pe)
            windows = step.out_h * step.out_w
            compute = windows * g * max(chunks, epi)
            macs *= windows
            per_group = [(compute, group_bytes[0] * 8 / bits)]
        else:
            pixels = step.out_h * step.out_w
            beats = sum(seg.chunks for seg in step.segments) + (step.skip is not None)
            macs *= pixels
            compute_g = pixels * max(beats, epi)
            per_group = [(compute_g, b * 8 / bits) for b in group_bytes]
        compute = sum(c for c, _ in per_group)
        stream = sum(s for _, s in per_group)
        cycles = sum(max(c, s) for c, s in per_group) + PIPELINE_CYCLES
        out.append(StepTiming(step.name, macs, int(compute), int(round(stream)), int(cycles),
                              sum(group_bytes)))
    return out

"""A generic cocotb testbench for streaming designs.

It reads its job from the JSON file named by ``$SHIFTADD_TB_JOB`` (written by
:func:`sim.verilator.simulate`): packed input beats per input port, a count per
output port, a stall probability, a seed, a timeout and the clock periods. Every cycle it

1. drives each input: a pending beat with ``valid`` high, or, on a random
   fraction ``stall`` of the cycles before a beat is offered, ``valid`` low
   (once offered, a beat stays offered until it is taken);
2. drives each output's ``ready`` high or, with probability ``stall``, low;
3. waits until the values settle (``ReadOnly``) and records every transfer,
   ``valid & ready``, which the coming rising edge completes.

Results (output words, the cycle of every transfer) go to the JSON file the job
names; comparing them with the golden model is the caller's business.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer
from cocotb.simtime import get_sim_time

#: Cycles between the progress notes the bench leaves for its caller.
PROGRESS = 500_000


class _Port:
    """The payload/valid/ready handles of one stream port, and its transfer cycles."""

    def __init__(self, dut, spec):
        self.name = spec["prefix"]
        self.payload = getattr(dut, f"{self.name}__payload")
        self.valid = getattr(dut, f"{self.name}__valid")
        self.ready = getattr(dut, f"{self.name}__ready")
        self.cycles = []


class _Input(_Port):
    def __init__(self, dut, spec):
        super().__init__(dut, spec)
        self.beats = spec["beats"]
        self.next = 0
        self.offered = False


class _Output(_Port):
    def __init__(self, dut, spec):
        super().__init__(dut, spec)
        self.count = spec["count"]
        self.words = []
        self.ready_now = False


@cocotb.test()
async def stream_job(dut):
    with open(os.environ["SHIFTADD_TB_JOB"]) as f:
        job = json.load(f)
    rng = random.Random(job["seed"])
    stall = job["stall"]
    clk_ns = job["clk_period_ns"]
    ins = [_Input(dut, s) for s in job["inputs"]]
    outs = [_Output(dut, s) for s in job["outputs"]]

    cocotb.start_soon(Clock(dut.clk, clk_ns, unit="ns", impl="gpi").start())
    for name, period in job.get("clocks", {}).items():
        # Further clock domains (the flash's), free-running at their own period.
        cocotb.start_soon(Clock(getattr(dut, name), period, unit="ns", impl="gpi").start())
    dut.rst.value = 1
    for p in ins:
        p.valid.value = 0
    for p in outs:
        p.ready.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    start = get_sim_time(unit="ns")
    cycle = 0
    timeout = False
    shown = [0]

    def show(cycle):
        # For the caller's progress line: where the simulation is (every PROGRESS cycles).
        if job.get("progress") and cycle - shown[0] >= PROGRESS:
            shown[0] = cycle
            with open(job["progress"], "w") as f:
                json.dump({"cycles": cycle, "in": sum(p.next for p in ins),
                           "out": sum(len(p.words) for p in outs)}, f)

    idle = False               # no output was valid in the last cycle: may skip ahead
    while any(len(p.words) < p.count for p in outs):
        cycle = round((get_sim_time(unit="ns") - start) / clk_ns)
        if cycle >= job["timeout_cycles"]:
            timeout = True
            break
        if idle and all(p.next == len(p.beats) and not p.offered for p in ins):
            # Nothing to drive until an output has a beat: let the simulator run on its
            # own (a layer engine computes for millions of cycles between outputs).
            for p in outs:
                p.ready.value = 0
            await ReadOnly()
            while not any(int(p.valid.value) for p in outs):
                cycle = round((get_sim_time(unit="ns") - start) / clk_ns)
                left = job["timeout_cycles"] - cycle
                if left <= 0:
                    break
                show(cycle)
                await First(*(RisingEdge(p.valid) for p in outs),
                            Timer(min(left, PROGRESS) * clk_ns, unit="ns"))
                await ReadOnly()
            await RisingEdge(dut.clk)
            idle = False
            continue
        for p in ins:
            if p.next < len(p.beats) and not p.offered and rng.random() >= stall:
                p.payload.value = p.beats[p.next]
                p.valid.value = 1
                p.offered = True
            elif not p.offered:
                p.valid.value = 0
        for p in outs:
            p.ready_now = len(p.words) < p.count and rng.random() >= stall
            p.ready.value = int(p.ready_now)
        await ReadOnly()
        for p in ins:
            if p.offered and int(p.ready.value):
                p.cycles.append(cycle)
                p.next += 1
                p.offered = False
        for p in outs:
            if p.ready_now and int(p.valid.value):
                value = p.payload.value
                # A 1-bit payload reads as a Logic, which has no to_unsigned().
                p.words.append(value.to_unsigned() if hasattr(value, "to_unsigned")
                               else int(value))
                p.cycles.append(cycle)
        idle = job.get("skip_idle", False) and not any(int(p.valid.value) for p in outs)
        show(cycle)
        await RisingEdge(dut.clk)

    cycle = round((get_sim_time(unit="ns") - start) / clk_ns)
    with open(job["results"], "w") as f:
        json.dump({
            "outputs": {p.name: p.words for p in outs},
            "out_cycles": {p.name: p.cycles for p in outs},
            "in_cycles": {p.name: p.cycles for p in ins},
            "cycles": cycle, "timeout": timeout,
        }, f)
    assert not timeout, f"timed out after {cycle} cycles"

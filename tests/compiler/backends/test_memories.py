"""Block RAM counts of memories: the plans' model against what Yosys maps.

Each memory is synthesized alone (as far as Yosys's memory mapping) in the shapes
the layer engine uses for ResNet-18: deep and wide, wide and shallow, written in
granules, read-only, and marked for LUT RAM; and the shallow ROMs of a folded MAC
stage that the dataflow planner marks for block RAM.
"""

import re
import subprocess

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from boards.tools import require
from compiler.backends.dataflow.cost import FABRICS
from compiler.backends.memories import count_brams, design_memories

#: (width, depth, write granularity or None for a ROM, ram_style)
SHAPES = [
    (128, 2600, 128, None),      # activations (ResNet-18: 12,544 deep)
    (1024, 304, 1024, None),     # weight buffer, written whole (ResNet-18: 2048 wide)
    (256, 304, 16, None),        # ... written a decoder beat at a time
    (20, 282, 20, None),         # a threshold table
    (144, 230, 144, None),       # the stem's line buffer
    (512, 114, 512, "distributed"),  # the stem pool's line buffer
    (8, 6000, 8, None),          # stream FIFO
    (106, 577, None, None),      # loader commands (ROM)
    (352, 16, None, "block"),    # a folded MVU's threshold ROM, put in block RAM
    (288, 16, None, "block"),    # ... and its weight ROM
]

#: Yosys's block RAM cells per family, and how many 18 Kib blocks each is.
CELLS = {"ecp5": {"DP16KD": 1}, "xilinx": {"RAMB18E1": 1, "RAMB36E1": 2}}
SYNTH = {"ecp5": "synth_ecp5 -top top -run :map_ffram",
         "xilinx": "synth_xilinx -family xc7 -top top -run :map_ffram"}


class _OneMemory(wiring.Component):
    def __init__(self, width, depth, granularity, style):
        self.width, self.depth, self.granularity, self.style = width, depth, granularity, style
        rom = granularity is None
        super().__init__({"raddr": In(range(depth)), "rdata": Out(width),
                          **({} if rom else {"waddr": In(range(depth)), "wdata": In(width),
                                             "wen": In(width // granularity)})})

    def elaborate(self, platform):
        m = Module()
        rom = self.granularity is None
        init = []
        if rom:
            # Half the bits constant, as in the loader's commands.
            rng = np.random.default_rng(0)
            varying = (1 << (self.width // 2)) - 1
            init = [int(x) & varying for x in rng.integers(0, 1 << 62, self.depth)]
        m.submodules.mem = mem = Memory(shape=unsigned(self.width), depth=self.depth, init=init,
                                        attrs={"ram_style": self.style} if self.style else None)
        rd = mem.read_port(domain="sync")
        m.d.comb += [rd.addr.eq(self.raddr), self.rdata.eq(rd.data)]
        if not rom:
            wr = mem.write_port(granularity=self.granularity)
            m.d.comb += [wr.addr.eq(self.waddr), wr.data.eq(self.wdata), wr.en.eq(self.wen)]
        return m


def _yosys_blocks(family, design, tmp_path):
    (tmp_path / "top.v").write_text(verilog.convert(design, name="top", emit_src=False))
    subprocess.run([require("yosys"), "-q", "-p", f"read_verilog top.v; {SYNTH[family]}; "
                          "tee -o stat.txt stat"], cwd=tmp_path, capture_output=True, text=True,
                         check=True)
    stat = (tmp_path / "stat.txt").read_text()
    total = 0
    for cell, blocks in CELLS[family].items():
        found = re.search(rf"^\s*(\d+)\s+{cell}\s*$", stat, re.M) or \
            re.search(rf"^\s*{cell}\s+(\d+)\s*$", stat, re.M)
        total += blocks * int(found.group(1)) if found else 0
    return total


@pytest.mark.parametrize("family", ["ecp5", "xilinx"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}-{s[2]}-{s[3]}")
def test_block_ram_count_matches_yosys(family, shape, tmp_path):
    """The model counts what Yosys maps, never fewer and at most 5% more (Yosys packs
    the last partial block of a deep memory in narrower shapes)."""
    design = _OneMemory(*shape)
    [(_, brams, _)] = count_brams(FABRICS[family], design_memories(design))
    mapped = _yosys_blocks(family, _OneMemory(*shape), tmp_path)
    assert mapped <= brams <= mapped * 1.05 + 0.5, (mapped, brams)

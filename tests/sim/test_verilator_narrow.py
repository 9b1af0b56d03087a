"""The Verilator runner on a 1-bit stream: cocotb reads it as a Logic, not a LogicArray."""

import random

from amaranth.back import verilog
from amaranth.hdl import unsigned

from hw.fifo import StreamFIFO
from hw.lanes import lanes
from sim.verilator import StreamPort, simulate


def test_one_bit_payload(tmp_path):
    path = tmp_path / "fifo1.v"
    path.write_text(verilog.convert(StreamFIFO(lanes(unsigned(1), 1), 3), name="fifo1",
                                    emit_src=False))
    rng = random.Random(1)
    data = [[rng.randint(0, 1)] for _ in range(24)]
    res = simulate(path, "fifo1", {StreamPort("i", 1, False, 1): data},
                   {StreamPort("o", 1, False, 1): 24}, build_dir=tmp_path / "b", stall=0.3,
                   seed=2)
    assert res.outputs["o"] == data

"""The layer engine is multiplier-free in its own logic too: no multiplication in its Verilog."""

import subprocess

import numpy as np
from amaranth.back import verilog

from boards.tools import require
from compiler.backends.layer.lower import lower_engine
from compiler.passes import prepare
from graphs import engine_net
from hw.engine.engine import LayerEngine


def test_engine_has_no_multiplier(tmp_path):
    """The layer engine's Verilog has no multiplication left for synthesis to put on a
    DSP block: run-time indices select by multiplexers, counts multiply by shifted adds."""
    for kind, bits in (("ternary", 2), ("int", 4)):
        build = lower_engine(prepare(engine_net(np.random.default_rng(0), kind, bits),
                                     forms=False), pe=4, simd=8)
        _assert_no_mul(build, tmp_path / kind)


def _assert_no_mul(build, tmp_path):
    tmp_path.mkdir()
    (tmp_path / "e.v").write_text(verilog.convert(LayerEngine(build.config), name="engine",
                                                  emit_src=False))
    out = subprocess.run([require("yosys"), "-p", "read_verilog e.v; hierarchy -top engine; proc; "
                          "opt; wreduce; select -count t:$mul"], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert "0 objects" in out, out[-2000:]

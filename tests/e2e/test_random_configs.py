"""Twenty random small networks through the whole product path, each bit-exact in Verilator.

Each seed (:func:`bench.randnet.draw`) draws a network (op chains, residual
blocks, pools, a dense head), its quantization (ternary, pow2, int, lat2, kq;
linear or power-of-two activations) and its build options (board, placement,
--target-cycles, --fold). It is quantized with seeded random calibration
inputs, saved as a .qpk and built; the build verifies the Verilog on random
inputs without and with random valid/ready stalls against the golden model.
A configuration the compiler refuses with a user error (it does not fit, ...)
is not a failure. Many more: ``python -m bench.random_configs --n 1000``.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))     # the repository root

from bench import randnet  # noqa: E402
from bench.random_configs import repro_command  # noqa: E402

BASE_SEED = 5000
COUNT = 20


@pytest.mark.parametrize("seed", range(BASE_SEED, BASE_SEED + COUNT))
def test_random_configuration_is_bit_exact(seed, tmp_path):
    cfg = randnet.draw(seed)
    out = randnet.run(cfg, tmp_path)
    assert out.status in ("passed", "refused"), (
        f"\n{out.config}\n{out.status} ({out.stage}): {out.reason}\n"
        f"reproduce: {repro_command(seed)}\n{out.detail}")
    if out.status == "passed":
        assert out.planned > 0 and out.measured > 0

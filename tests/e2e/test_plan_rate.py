"""The plan's rate is the hardware's rate, for the layer that once ran a third slower.

A folded power-of-two residual block with a strided 1x1 projection was planned
at 324 cycles per inference and measured 436 in Verilator: its stride-2 window
emits in bursts and the folded MVU waited between them. The plan now models the
handshake (compiler/rate.py) and queues windows where that buys speed; measured
and planned cycles agree, and a build whose hardware runs slower than planned
says so.
"""

import io

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from compiler.driver.build import BuildOptions, build, rate_warning  # noqa: E402


class Block(nn.Module):
    def __init__(self, cin=4, cout=8):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.p, self.bp = nn.Conv2d(cin, cout, 1, 2, 0, bias=False), nn.BatchNorm2d(cout)
        self.fc = nn.Linear(cout, 10)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = torch.relu(self.b2(self.c2(y)) + self.bp(self.p(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


@pytest.fixture(scope="module")
def block_qpk(tmp_path_factory):
    from compiler.frontend import quantize
    from compiler.frontend.train import deterministic
    with deterministic(0):
        model = Block()
        x = torch.randn(64, 4, 16, 16)
        path = tmp_path_factory.mktemp("block") / "block.qpk"
        quantize(model, x, weights="pow2", act_bits=4, name="block").save(path)
    return path


def test_folded_pow2_block_runs_at_its_planned_rate(block_qpk, tmp_path):
    log = io.StringIO()
    result = build(block_qpk, BuildOptions(board="ulx3s", out=tmp_path / "b", weights="rom",
                                           verify=16, synth=False), stream=log)
    v = result.verification
    assert v["bit_exact"], log.getvalue()
    assert v["cycles_per_inference"] == result.plan.cycles, log.getvalue()
    assert "warning" not in log.getvalue()
    # The stride-2 layers got their window queues; without them the plan says what it costs.
    assert any(s.queue for s in result.plan.stages if s.kind == "conv")


def test_a_slower_measurement_is_a_warning():
    class Plan:
        cycles = 324

        class bottleneck:
            name = "c1"
    assert rate_warning(Plan, {"cycles_per_inference": 324}) is None
    assert rate_warning(Plan, {"cycles_per_inference": None}) is None
    text = rate_warning(Plan, {"cycles_per_inference": 436})
    assert "436" in text and "324" in text and "slower than the planned" in text

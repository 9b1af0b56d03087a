"""The ops ResNet-18 needs, end to end in the dataflow back end, bit-exact in Verilator.

A small torch network holds each of them once: the stem's 7x7 stride-2
convolution with padding 3, the stem's 3x3 stride-2 max pool with padding 1 (here
on signed values, before the ReLU, so that its padding must be the lane's lowest
value and not 0), a max pool whose stride differs from its kernel (2x2, stride 1,
on unsigned values) and a global average pool over a 7x7 map into a dense layer.
It is quantized from a seeded initialisation (no training: the arithmetic is
what is checked), built for the ULX3S without synthesis, and every build runs
the compiler's verification: 32 random inputs in Verilator without and with
random valid/ready stalls, each output compared with the golden model.
"""

import io

import numpy as np
import pytest
import torch
from torch import nn

from compiler import qpk
from compiler.driver.build import BuildOptions, build
from compiler.ir import interpret
from compiler.ops import Conv2d, Gap, MaxPool, is_op


class ResNetOps(nn.Module):
    """3x32x32 -> conv 7x7/2 p3 -> 16x16 -> bn -> maxpool 3/2 p1 -> 8x8 -> relu -> conv 3x3
    -> bn -> relu -> maxpool 2/1 -> 7x7 -> global average pool -> dense 6 -> 5."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.pool1 = nn.MaxPool2d(3, 2, 1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, stride=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = self.relu1(self.pool1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(self.flatten(self.gap(x)))


@pytest.fixture(scope="module")
def resnet_ops_qpk(tmp_path_factory):
    from compiler.frontend import quantize
    from compiler.frontend.train import deterministic
    with deterministic(3):
        model = ResNetOps()
        for bn in (model.bn1, model.bn2):     # statistics that leave some values negative
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.5, 0.5)
        model.eval()
        x = torch.randn(64, 3, 32, 32)
        result = quantize(model, x, weights="ternary", act_bits=4, name="resnet_ops")
    assert result.report.exact and result.report.max_steps == 0, result.report
    path = tmp_path_factory.mktemp("resnet_ops") / "resnet_ops.qpk"
    result.save(path)
    return path


def test_the_graph_holds_the_resnet_ops(resnet_ops_qpk):
    graph = qpk.load(resnet_ops_qpk)
    convs = [n for n in graph.nodes if is_op(n, Conv2d)]
    assert {k: convs[0].attrs[k] for k in ("kernel", "stride", "padding")} == \
        {"kernel": 7, "stride": 2, "padding": 3}
    pools = [n for n in graph.nodes if is_op(n, MaxPool)]
    assert [(p.attrs["kernel"], p.attrs["stride"], p.attrs["padding"]) for p in pools] == \
        [(3, 2, 1), (2, 1, 0)]
    # The stem's pool sees signed values, the second one unsigned values.
    assert [graph[p.inputs[0]].attrs.get("signed") for p in pools] == [True, False]
    gap = next(n for n in graph.nodes if is_op(n, Gap))
    assert graph[gap.inputs[0]].shape[1:] == (7, 7)


def test_signed_max_pool_pads_with_the_lowest_value(resnet_ops_qpk):
    """Zero padding would win the border windows whose values are all negative."""
    graph = qpk.load(resnet_ops_qpk)
    pool = next(n for n in graph.nodes if is_op(n, MaxPool))
    rng = np.random.default_rng(0)
    inp = graph.input
    hi = 2 ** (inp.attrs["bits"] - 1) - 1
    x = rng.integers(-hi - 1, hi + 1, size=(16, *inp.attrs["shape"]))
    values = interpret.run_all(graph, x)
    before, after = values[pool.inputs[0]], values[pool.name]
    torch_max = nn.functional.max_pool2d(torch.from_numpy(before).double(), 3, 2, 1)
    assert np.array_equal(after, torch_max.numpy().astype(np.int64))
    assert (after[:, :, 0, :] < 0).any()       # a border window of negative values only


@pytest.mark.parametrize("weights, target", [("hardwired", None), ("rom", 4096)])
def test_resnet_ops_are_bit_exact_in_verilator(resnet_ops_qpk, tmp_path, weights, target):
    log = io.StringIO()
    result = build(resnet_ops_qpk, BuildOptions(board="ulx3s", weights=weights,
                                                target_cycles=target, verify=32, synth=False,
                                                out=tmp_path / "b"), stream=log)
    v = result.verification
    assert v["inputs"] == 32 and v["mismatches"] == 0 and v["bit_exact"], log.getvalue()
    assert {s.placement for s in result.plan.stages if s.is_mvu} == {weights}
    assert v["cycles_per_inference"] == result.plan.cycles, log.getvalue()

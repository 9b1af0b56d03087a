"""Tracing with torch.fx, batch-norm folding, and the errors for unsupported ops."""

import pytest
import torch
import torch.nn.functional as F
from float_models import MODELS, make
from torch import nn

from compiler.errors import QuantizeError, UserError
from compiler.frontend.trace import run_float, trace


@pytest.mark.parametrize("name", sorted(MODELS))
def test_folded_float_graph_equals_the_module(name):
    model, x = make(name)
    graph = trace(model, x)
    with torch.no_grad():
        assert torch.allclose(run_float(graph, x), model(x), atol=1e-5, rtol=1e-5)
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert sum(len(layer.folded) for layer in graph.layers) == len(bns)


def test_digits_cnn_layers():
    model, x = make("digits_cnn")
    graph = trace(model, x)
    ops = [(layer.name, layer.op) for layer in graph.layers]
    assert ops == [("x", "input"), ("conv1", "conv2d"), ("relu1", "relu"), ("conv2", "conv2d"),
                   ("relu2", "relu"), ("block_conv1", "conv2d"), ("block_relu1", "relu"),
                   ("block_conv2", "conv2d"), ("add", "add"), ("block_relu2", "relu"),
                   ("pool", "maxpool"), ("gap", "gap"), ("flatten", "flatten"), ("fc", "dense")]
    assert graph["add"].inputs == ["block_conv2", "relu2"]
    assert graph["conv1"].folded == ["bn1"]
    assert graph["conv2"].attrs == {"kernel": 3, "stride": 2, "padding": 1}
    assert graph["gap"].shape == (16,) and graph["gap"].attrs["pixels"] == 4
    assert graph.output == "fc"


def test_bn_fold_arithmetic():
    conv = nn.Conv2d(1, 2, 1, bias=True)
    bn = nn.BatchNorm2d(2).eval()
    with torch.no_grad():
        conv.bias.copy_(torch.tensor([0.5, -1.0]))
        bn.running_mean.copy_(torch.tensor([1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25]))
        bn.weight.copy_(torch.tensor([2.0, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2]))
    graph = trace(nn.Sequential(conv, bn), torch.zeros(2, 1, 3, 3))
    layer = graph["_0"]
    g = torch.tensor([2.0, -1.0]) / torch.sqrt(torch.tensor([4.0, 0.25]) + bn.eps)
    assert torch.allclose(layer.scale, g)
    assert torch.allclose(layer.shift, torch.tensor([0.5, -1.0]) * g
                          + torch.tensor([0.1, 0.2]) - torch.tensor([1.0, 2.0]) * g)


def test_trace_restores_training_mode_and_leaves_statistics_alone():
    model, x = make("digits_cnn")
    model.train()
    before = model.bn1.running_mean.clone()
    trace(model, x)
    assert model.training
    assert torch.equal(model.bn1.running_mean, before)


class Sigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.act2 = nn.Sigmoid()

    def forward(self, x):
        return self.act2(self.conv(x))


class Wrap(nn.Module):
    def __init__(self, body, fn=None):
        super().__init__()
        self.body = body
        self.fn = fn

    def forward(self, x):
        x = self.body(x)
        return self.fn(x) if self.fn else x


def _error(model, shape=(1, 8, 8)):
    with pytest.raises(QuantizeError) as info:
        trace(model, torch.zeros(2, *shape))
    assert isinstance(info.value, UserError)
    return str(info.value)


def test_unsupported_module_names_node_and_op():
    msg = _error(Sigmoid())
    assert msg.startswith("node 'act2' (nn.Sigmoid): unsupported op; supported:")
    assert "nn.Conv2d" in msg


def test_unsupported_function_names_node_and_op():
    msg = _error(Wrap(nn.Conv2d(1, 2, 3), torch.sigmoid))
    assert msg.startswith("node 'sigmoid' (torch.sigmoid): unsupported op")
    msg = _error(Wrap(nn.Conv2d(1, 2, 3), F.gelu))
    assert "(F.gelu): unsupported op" in msg


@pytest.mark.parametrize("conv, words", [
    (nn.Conv2d(1, 2, 3, groups=1, dilation=2), "dilation (2, 2)"),
    (nn.Conv2d(2, 2, 3, groups=2), "groups=2"),
    (nn.Conv2d(1, 2, (3, 1)), "non-square kernel (3, 1)"),
    (nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
    (nn.Conv2d(1, 2, 3, stride=(1, 2)), "unequal strides"),
])
def test_unsupported_convolutions(conv, words):
    msg = _error(nn.Sequential(conv), shape=(conv.in_channels, 8, 8))
    assert msg.startswith("node '_0' (nn.Conv2d): unsupported convolution")
    assert words in msg


@pytest.mark.parametrize("model, words", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2)),
     "node '_2' (nn.BatchNorm2d): batch norm must directly follow a conv or linear"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2)), "node '_1' (nn.AvgPool2d): unsupported"),
    (nn.Sequential(nn.MaxPool2d(3, ceil_mode=True)),
     "node '_0' (nn.MaxPool2d): unsupported max pool"),
    (nn.Sequential(nn.AdaptiveAvgPool2d(2)), "output_size 2"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(6, 2)), "node '_1' (nn.Linear): needs a vector"),
    (Wrap(nn.Conv2d(1, 2, 3), lambda x: x.view(2, -1)), "only flattening to (batch, -1)"),
    (Wrap(nn.Conv2d(1, 2, 3), lambda x: x + 1.0), "is a constant"),
    (Wrap(nn.Conv2d(1, 2, 3), lambda x: (x, x)), "must return one tensor"),
    (Wrap(nn.Conv2d(1, 2, 3), lambda x: torch.cat([x, x], 1)), "(torch.cat): unsupported op"),
])
def test_unsupported_structures(model, words):
    assert words in _error(model)


def test_bn_after_a_shared_conv_output_is_refused():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    assert "the output of 'conv' is used by 2 nodes" in _error(Shared())


def test_untraceable_model():
    class Dynamic(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    assert "torch.fx cannot trace the model" in _error(Dynamic())


def test_not_a_module():
    with pytest.raises(QuantizeError, match="expected a torch.nn.Module"):
        trace(lambda x: x, torch.zeros(2, 3))


def test_unused_layers_are_pruned():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 3)
            self.b = nn.Linear(4, 3)

        def forward(self, x):
            self.b(x)
            return self.a(x)

    graph = trace(Unused(), torch.zeros(2, 4))
    assert [layer.name for layer in graph.layers] == ["x", "a"]

"""Small float models for the quantization front end's tests (importable as `float_models`)."""

import torch
from torch import nn

from compiler.zoo.models import BasicBlock, digits_cnn


def randomize_bn(model, seed=0):
    """Give every batch norm random statistics and affine parameters, some gammas negative."""
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = mod.num_features
            mod.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
            mod.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            mod.weight.data.copy_(torch.rand(n, generator=gen) * 2.5 - 1)
            mod.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return model.eval()


class ConvBnRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 3 * 3, 5)

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(torch.flatten(x, 1))


class Downsample(nn.Module):
    """A basic block with a 1x1 conv + bn shortcut, then mean pooling and a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = BasicBlock(4, 8, stride=2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.block(torch.relu(self.stem(x)))
        return self.fc(x.mean((2, 3)))


class PoolNoRelu(nn.Module):
    """conv-bn-maxpool-relu (an accumulator feeding a pool), two relus added, view flatten."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.bna = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4 * 4 * 4, 3, bias=False)

    def forward(self, x):
        x = torch.relu(self.pool(self.bna(self.a(x))))
        y = torch.relu(self.b(x)) + torch.relu(self.c(x))
        y = torch.relu(y)
        return self.fc(y.view(y.size(0), -1))


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Dropout(0.1), nn.Linear(16, 10))


MODELS = {
    "digits_cnn": (digits_cnn, (1, 8, 8)),
    "conv_bn_relu": (ConvBnRelu, (2, 7, 7)),
    "downsample": (Downsample, (1, 8, 8)),
    "pool_no_relu": (PoolNoRelu, (1, 8, 8)),
    "mlp": (mlp, (1, 8, 8)),
}


def make(name, seed=0):
    """``(model, x)``: model ``name`` with random weights and batch norms, and 64 inputs."""
    factory, shape = MODELS[name]
    torch.manual_seed(seed)
    model = randomize_bn(factory(), seed)
    x = torch.randn(64, *shape, generator=torch.Generator().manual_seed(seed + 1))
    return model, x


def assert_nodes_agree(res, x):
    """Every node of the exported package, on the golden model, equals the fake-quant model.

    The golden model carries pow2 activation codes where the fake-quant model carries
    their values. Returns the package read back and the integer inputs.
    """
    import numpy as np

    from compiler import qpk
    from compiler.ir import interpret
    from compiler.ir import encodings
    from compiler.frontend.agreement import input_to_int
    from sim.golden import pow2_value
    back = qpk.from_bytes(res.to_bytes())
    x_int = input_to_int(back, x)
    golden = interpret.run_all(back, x_int)
    fake = res.model.run_exact(x, all_values=True)
    enc = encodings(back)
    for key, value in golden.items():
        if enc[key] == "pow2":
            if back[key].op == "requant":
                assert value.min() >= 0 and value.max() < 2 ** back[key].attrs["bits"], key
            value = pow2_value(value)
        assert np.array_equal(value, fake[key].numpy()), key
    return back, x_int

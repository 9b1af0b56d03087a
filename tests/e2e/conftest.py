"""The small CNN of the end-to-end tests, trained briefly on digits and quantized once."""

import pytest
import torch
from torch import nn

from compiler.zoo.models import BasicBlock


class SmallCNN(nn.Module):
    """Two 3x3 convs (the second with stride 2), a residual basic block, max pool,
    global average pool and a dense classifier: 1x8x8 -> 4x8x8 -> 8x4x4 -> 8x2x2 -> 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.block = BasicBlock(8, 8)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = self.pool(self.block(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@pytest.fixture(scope="session")
def digits_data():
    from compiler.quantize.data import digits
    return digits()


@pytest.fixture(scope="session")
def small_cnn_qpk(tmp_path_factory, digits_data):
    """``{kind: path of the .qpk}`` for ternary and power-of-two weights."""
    from compiler.quantize import Finetune, quantize
    from compiler.quantize.train import deterministic, fit
    train, _ = digits_data
    out = tmp_path_factory.mktemp("small_cnn")
    paths = {}
    with deterministic(0):
        model = fit(SmallCNN(), train.x, train.y, epochs=10, lr=1e-2, log=None)
        for kind in ("ternary", "pow2"):
            result = quantize(model, train.x[:256], weights=kind, act_bits=4,
                              name=f"small_cnn_{kind}",
                              finetune=Finetune(train.x, train.y, epochs=6, lr=2e-3, log=None))
            paths[kind] = out / f"small_cnn_{kind}.qpk"
            result.save(paths[kind])
    return paths

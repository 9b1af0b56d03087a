"""Built-in float models (torch). Their quantized ``.qpk`` files are built by ``build.py``.

``FACTORIES`` maps a model name (as accepted by ``python -m compiler quantize``)
to a function returning an untrained ``nn.Module``; ``DATASETS`` names the
dataset it trains on (:mod:`compiler.quantize.data`).
"""

from torch import nn

__all__ = ["BasicBlock", "DigitsCNN", "digits_cnn", "small_cnn", "FACTORIES", "DATASETS"]


class BasicBlock(nn.Module):
    """ResNet basic block: conv-bn-relu, conv-bn, + shortcut, relu.

    The shortcut is the identity, or a 1x1 conv + bn when the shape changes.
    """

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + skip)


class DigitsCNN(nn.Module):
    """A small CNN for 1x8x8 digits (8x8 -> 4x4 -> 2x2 -> c2 -> 10), ``channels = (c1, c2)``."""

    def __init__(self, classes=10, channels=(8, 16)):
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.relu2 = nn.ReLU()
        self.block = BasicBlock(c2, c2)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c2, classes)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.block(x)
        return self.fc(self.flatten(self.gap(self.pool(x))))


def digits_cnn():
    """conv3x3(1->8)-bn-relu, conv3x3(8->16, stride 2)-bn-relu, a 16-channel residual
    basic block, maxpool 2x2, global average pool, linear 16->10."""
    return DigitsCNN()


def small_cnn():
    """Half the channels of digits_cnn (4 and 8): the network of the end-to-end tests."""
    return DigitsCNN(channels=(4, 8))


FACTORIES = {"digits_cnn": digits_cnn, "small_cnn": small_cnn}
DATASETS = {"digits_cnn": "digits", "small_cnn": "digits"}

"""Built-in float models (torch). Their quantized ``.qpk`` files are built by ``build.py``.

``FACTORIES`` maps a model name (as accepted by ``python -m compiler quantize``)
to a function returning an untrained ``nn.Module``; ``DATASETS`` names the
dataset it trains on (:mod:`compiler.quantize.data`).
"""

from torch import nn

__all__ = ["BasicBlock", "DigitsCNN", "SmallCNN", "digits_cnn", "small_cnn", "FACTORIES",
           "DATASETS"]


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
    """A small CNN for 1x8x8 digits (8x8 -> 4x4 -> 2x2 -> 16 -> 10)."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU()
        self.block = BasicBlock(16, 16)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.block(x)
        return self.fc(self.flatten(self.gap(self.pool(x))))


def digits_cnn():
    """conv3x3(1->8)-bn-relu, conv3x3(8->16, stride 2)-bn-relu, a 16-channel residual
    basic block, maxpool 2x2, global average pool, linear 16->10."""
    return DigitsCNN()


class SmallCNN(nn.Module):
    """The end-to-end tests' CNN: two 3x3 convs (the second with stride 2), a residual
    basic block, max pool, global average pool and a dense classifier:
    1x8x8 -> 4x8x8 -> 8x4x4 -> 8x2x2 -> 10."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu2 = nn.ReLU()
        self.block = BasicBlock(8, 8)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.pool(self.block(x))
        return self.fc(self.flatten(self.gap(x)))


def small_cnn():
    """Half the channels of digits_cnn (4 and 8): the network of the end-to-end tests."""
    return SmallCNN()


FACTORIES = {"digits_cnn": digits_cnn, "small_cnn": small_cnn}
DATASETS = {"digits_cnn": "digits", "small_cnn": "digits"}

"""Built-in float models (torch). Their quantized ``.qpk`` files are built by ``build.py``.

``FACTORIES`` maps a model name (as accepted by ``python -m compiler quantize``)
to a function returning an untrained ``nn.Module``; ``DATASETS`` names the
dataset it trains on (:mod:`compiler.frontend.data`).
"""

import torch
from torch import nn

__all__ = ["BasicBlock", "DigitsCNN", "digits_cnn", "small_cnn", "ResNet", "TorchvisionBlock",
           "resnet18", "resnet18_cifar", "FACTORIES", "DATASETS", "INPUT_SHAPES"]


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


class TorchvisionBlock(nn.Module):
    """torchvision's ``BasicBlock``, attribute for attribute, so its ``state_dict`` loads."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ``ResNet`` with basic blocks: same modules, names and forward.

    ``stem="imagenet"`` is torchvision's (7x7 stride-2 convolution, 3x3 stride-2
    max pool, for 224x224 inputs); ``stem="cifar"`` the usual 32x32 variant (a
    3x3 convolution and no pool). ``width`` scales every channel count (64 is
    ResNet-18 itself; the tests use 8).
    """

    def __init__(self, layers=(2, 2, 2, 2), num_classes=1000, *, stem="imagenet", width=64):
        super().__init__()
        self.inplanes = width
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width, num_classes)
        for m in self.modules():                         # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride=stride,
                                                 bias=False), nn.BatchNorm2d(planes))
        layers = [TorchvisionBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [TorchvisionBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet18():
    """ResNet-18 in torchvision's exact layout (224x224 RGB, 1,000 classes)."""
    return ResNet()


def resnet18_cifar():
    """ResNet-18 for 32x32 RGB inputs and 10 classes (3x3 stem, no max pool)."""
    return ResNet(num_classes=10, stem="cifar")


FACTORIES = {"digits_cnn": digits_cnn, "small_cnn": small_cnn, "resnet18": resnet18,
             "resnet18_cifar": resnet18_cifar}
#: What each model learns from: a real dataset, or seeded synthetic images (no download here).
DATASETS = {"digits_cnn": "digits", "small_cnn": "digits", "resnet18": "synthetic",
            "resnet18_cifar": "synthetic"}
#: The input of one sample, for synthetic calibration images.
INPUT_SHAPES = {"resnet18": (3, 224, 224), "resnet18_cifar": (3, 32, 32)}

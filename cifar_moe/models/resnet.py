"""Control: ResNet-18 adapted to 32x32 inputs."""

import torchvision
from torch import nn


class CifarResNet18(nn.Module):
    """torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool (the CIFAR variant).

    Args:
        num_classes: number of output logits (linked from the data module by the CLI).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        net = torchvision.models.resnet18(num_classes=num_classes)
        net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
        self.net = net

    def forward(self, x):
        return self.net(x)

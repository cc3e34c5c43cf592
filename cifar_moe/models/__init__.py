"""Plain nn.Modules (no Lightning): router, expert conv, blocks, network, controls."""

from cifar_moe.models.blocks import PlainExpertBlock, ResidualExpertBlock
from cifar_moe.models.classifier import Classifier
from cifar_moe.models.expert_conv import ExpertConv2d
from cifar_moe.models.network import MoENet
from cifar_moe.models.presets import build_net
from cifar_moe.models.resnet import CifarResNet18
from cifar_moe.models.router import Router
from cifar_moe.models.stem import Stem

__all__ = [
    "CifarResNet18",
    "Classifier",
    "ExpertConv2d",
    "MoENet",
    "PlainExpertBlock",
    "ResidualExpertBlock",
    "Router",
    "Stem",
    "build_net",
]

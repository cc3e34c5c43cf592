"""The one CIFAR-10 normalisation: every path (loader, device batches, classify, export, plots)
calls these, so training and inference see the same tensor for the same image."""

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as F

from cifar_moe.core.constants import CIFAR10_MEAN, CIFAR10_STD


def normalize(images: Tensor) -> Tensor:
    """Float images in [0, 1], (..., 3, H, W) -> CIFAR-10-normalised (a new tensor)."""
    return F.normalize(images, list(CIFAR10_MEAN), list(CIFAR10_STD))


def to_unit_float(images: Tensor) -> Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1] (the scaling every path shares)."""
    return F.to_dtype(images, torch.float32, scale=True)


def normalize_uint8(images: Tensor) -> Tensor:
    """uint8 images in [0, 255], (..., 3, H, W) -> float32, scaled to [0, 1], normalised."""
    return normalize(to_unit_float(images))


def denormalize(images: Tensor) -> Tensor:
    """Normalised (B, 3, H, W) images back to [0, 1] on the CPU, for display."""
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)  # (1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return (images.detach().cpu() * std + mean).clamp(0, 1)

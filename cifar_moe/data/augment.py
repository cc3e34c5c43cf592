"""Per-image augmentation with torchvision.transforms.v2 on uint8 tensors (no PIL round trip)."""

import torch
from torchvision.transforms import v2

from cifar_moe.constants import CIFAR10_MEAN, CIFAR10_STD, IMAGE_SHAPE

AUGMENT_SETTINGS = (
    "flip_p", "crop_padding", "brightness", "contrast", "saturation", "hue", "rotation_degrees"
)
"""The training-augmentation settings, shared by the per-image and the whole-batch paths."""


def _to_normalized_float() -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(CIFAR10_MEAN, CIFAR10_STD)]


def build_train_transform(
    flip_p: float = 0.5,
    crop_padding: int = 4,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    hue: float = 0.0,
    rotation_degrees: float = 0.0,
) -> v2.Compose:
    """Flip, padded random crop, colour jitter, rotation (each off at 0), then normalise."""
    steps = []
    if flip_p > 0:
        steps.append(v2.RandomHorizontalFlip(p=flip_p))
    if crop_padding > 0:
        steps.append(v2.RandomCrop(IMAGE_SHAPE[1], padding=crop_padding))
    if any((brightness, contrast, saturation, hue)):
        steps.append(v2.ColorJitter(brightness, contrast, saturation, hue))
    if rotation_degrees > 0:
        steps.append(v2.RandomRotation(rotation_degrees))
    return v2.Compose(steps + _to_normalized_float())


def build_eval_transform() -> v2.Compose:
    """Normalisation only: evaluation is deterministic."""
    return v2.Compose(_to_normalized_float())

"""Per-image augmentation with torchvision.transforms.v2 on uint8 tensors (no PIL round trip)."""

import torch
from torchvision.transforms import v2

from cifar_moe.constants import CIFAR10_MEAN, CIFAR10_STD, IMAGE_SHAPE
from cifar_moe.data.augment_settings import DEFAULT_AUGMENT, AugmentSettings


def _to_normalized_float() -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(CIFAR10_MEAN, CIFAR10_STD)]


def build_train_transform(settings: AugmentSettings = DEFAULT_AUGMENT) -> v2.Compose:
    """Flip, padded random crop, colour jitter, rotation (each off at 0), then normalise."""
    steps = []
    if settings.flip_p > 0:
        steps.append(v2.RandomHorizontalFlip(p=settings.flip_p))
    if settings.crop_padding > 0:
        steps.append(v2.RandomCrop(IMAGE_SHAPE[1], padding=settings.crop_padding))
    if any(settings.jitter):
        steps.append(v2.ColorJitter(*settings.jitter))
    if settings.rotation_degrees > 0:
        steps.append(v2.RandomRotation(settings.rotation_degrees))
    return v2.Compose(steps + _to_normalized_float())


def build_eval_transform() -> v2.Compose:
    """Normalisation only: evaluation is deterministic."""
    return v2.Compose(_to_normalized_float())

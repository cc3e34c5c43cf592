"""Per-image augmentation with torchvision.transforms.v2 on uint8 tensors (no PIL round trip)."""

import torch
from torchvision.transforms import v2

from cifar_moe.core.constants import IMAGE_SHAPE
from cifar_moe.core.normalization import normalize_uint8
from cifar_moe.data.augment_settings import DEFAULT_AUGMENT, AugmentSettings


def _to_normalized_float() -> list:
    # The one normalisation (core.normalization), as classify and the device path use it.
    return [v2.Lambda(normalize_uint8)]


class Cutout(torch.nn.Module):
    """One ``size`` x ``size`` square of a normalised (3, H, W) image set to 0 (the mean
    colour), centred uniformly over the image, clipped at its border (DeVries & Taylor)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        cy, cx = int(torch.randint(0, h, ())), int(torch.randint(0, w, ()))
        top, left = max(cy - self.size // 2, 0), max(cx - self.size // 2, 0)
        image = image.clone()
        image[..., top:cy - self.size // 2 + self.size, left:cx - self.size // 2 + self.size] = 0
        return image


def build_train_transform(settings: AugmentSettings = DEFAULT_AUGMENT) -> v2.Compose:
    """TrivialAugment, flip, padded random crop, colour jitter, rotation (each off at 0),
    normalise, then cutout."""
    steps = [v2.TrivialAugmentWide()] if settings.trivial_augment else []
    if settings.flip_p > 0:
        steps.append(v2.RandomHorizontalFlip(p=settings.flip_p))
    if settings.crop_padding > 0:
        fill = "reflect" if settings.crop_reflect else "constant"
        steps.append(v2.RandomCrop(IMAGE_SHAPE[1], padding=settings.crop_padding,
                                   padding_mode=fill))
    if any(settings.jitter):
        steps.append(v2.ColorJitter(*settings.jitter))
    if settings.rotation_degrees > 0:
        steps.append(v2.RandomRotation(settings.rotation_degrees))
    tail = [Cutout(settings.cutout)] if settings.cutout > 0 else []
    return v2.Compose(steps + _to_normalized_float() + tail)


def build_eval_transform() -> v2.Compose:
    """Normalisation only: evaluation is deterministic."""
    return v2.Compose(_to_normalized_float())

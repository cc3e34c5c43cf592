"""Whole-batch augmentation on any device: each image its own flip, crop, jitter, rotation.

The same :class:`~cifar_moe.data.augment_settings.AugmentSettings` as
:mod:`cifar_moe.data.augment` (per-image torchvision v2) and the same
distributions of each random parameter: flip with probability p; crop offsets uniform in
[0, 2 * padding]; brightness, contrast and saturation factors uniform in
[max(0, 1 - s), 1 + s]; hue shift uniform in [-h, h]; angle uniform in [-d, d], nearest
interpolation, zero fill. One difference: torchvision applies the four jitter operations
in a random order per image, this module in the fixed order brightness, contrast,
saturation, hue. No per-image Python: every step is a few tensor ops over the batch.
"""

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

from cifar_moe.core.normalization import normalize, to_unit_float
from cifar_moe.data.augment_settings import DEFAULT_AUGMENT, AugmentSettings

GRAY = (0.2989, 0.587, 0.114)  # the luma weights torchvision uses


def _uniform(b: int, low: float, high: float, device) -> Tensor:
    return torch.empty(b, 1, 1, 1, device=device).uniform_(low, high)  # (B, 1, 1, 1)


def _gray(x: Tensor) -> Tensor:
    w = torch.tensor(GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)  # (B, 1, H, W)


def flip_and_crop(x: Tensor, flip_p: float, padding: int, reflect: bool = False) -> Tensor:
    """Per image: mirror with probability ``flip_p``, then pad by ``padding`` (zeros, or the
    reflected border) and cut a window at a random offset. Both are one gather, so the batch
    is read once."""
    b, c, h, w = x.shape
    mode = "reflect" if reflect else "constant"
    padded = F.pad(x, (padding,) * 4, mode=mode) if padding else x
    span = 2 * padding + 1
    dy = torch.randint(0, span, (b, 1), device=x.device)
    dx = torch.randint(0, span, (b, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device)).view(b, 1, h, 1)  # (B, 1, H, 1)
    cols = dx + torch.arange(w, device=x.device)  # (B, W)
    flip = (torch.rand(b, 1, device=x.device) < flip_p) if flip_p > 0 else None
    if flip is not None:
        # Cropping the mirrored image at dx = reading the original mirrored about its centre.
        cols = torch.where(flip, padded.shape[-1] - 1 - cols, cols)
    flat = rows * padded.shape[-1] + cols.view(b, 1, 1, w)  # (B, 1, H, W) plane indices
    planes = padded.flatten(2)  # (B, C, (H + 2p) * (W + 2p))
    picked = planes.gather(2, flat.flatten(2).expand(-1, c, -1))  # (B, C, H * W)
    return picked.view_as(x)  # (B, C, H, W)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by ``shift`` (B, 1, 1, 1) turns, on [0, 1] RGB, via HSV."""
    r, g, b_ = x.unbind(dim=1)  # each (B, H, W)
    maxc, minc = x.max(dim=1).values, x.min(dim=1).values  # (B, H, W)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, (g - b_) / safe % 6, torch.where(maxc == g, (b_ - r) / safe + 2,
                                                                   (r - g) / safe + 4))
    h = torch.where(delta > 0, h / 6, torch.zeros_like(h))
    h = (h + shift.view(-1, 1, 1)) % 1.0  # (B, H, W)
    s = delta / maxc.clamp_min(1e-12)  # saturation; 0 for black pixels since delta is 0
    offsets = torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1)  # R, G, B
    k = (offsets + 6 * h.unsqueeze(1)) % 6  # (B, 3, H, W)
    ramp = torch.clamp(torch.minimum(k, 4 - k), 0, 1)  # (B, 3, H, W)
    return maxc.unsqueeze(1) * (1 - s.unsqueeze(1) * ramp)  # (B, 1, H, W) x (B, 3, H, W)


def rotate(x: Tensor, degrees: float) -> Tensor:
    """Rotate each image by its own angle in [-degrees, degrees]; nearest, zero fill."""
    b = x.shape[0]
    angle = torch.empty(b, device=x.device).uniform_(-degrees, degrees).deg2rad()
    cos, sin = angle.cos(), angle.sin()
    zero = torch.zeros_like(cos)
    theta = torch.stack([cos, -sin, zero, sin, cos, zero], dim=1).view(b, 2, 3)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def color_jitter(x: Tensor, brightness: float, contrast: float, saturation: float,
                 hue: float) -> Tensor:
    """Per-image factors on [0, 1] float images, in the fixed order b, c, s, h (in place)."""
    b = x.shape[0]
    # In place where possible: each op is then one pass over the batch.
    if brightness:
        x.mul_(_uniform(b, max(0, 1 - brightness), 1 + brightness, x.device)).clamp_(0, 1)
    if contrast:
        mean = _gray(x).mean(dim=(2, 3), keepdim=True)  # (B, 1, 1, 1)
        f = _uniform(b, max(0, 1 - contrast), 1 + contrast, x.device)
        x.mul_(f).add_((1 - f) * mean).clamp_(0, 1)
    if saturation:
        f = _uniform(b, max(0, 1 - saturation), 1 + saturation, x.device)
        x.mul_(f).add_((1 - f) * _gray(x)).clamp_(0, 1)
    if hue:
        x = adjust_hue(x, _uniform(b, -hue, hue, x.device))
    return x


def cutout(x: Tensor, size: int) -> Tensor:
    """Per image, a ``size`` x ``size`` square of the normalised batch set to 0 (the mean
    colour), centred uniformly over the image and clipped at its border, as ``Cutout``."""
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b, 1, 1, 1), device=x.device)  # (B, 1, 1, 1)
    cx = torch.randint(0, w, (b, 1, 1, 1), device=x.device)
    top, left = cy - size // 2, cx - size // 2
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return x.masked_fill(inside, 0.0)  # (B, 1, H, W) mask over every channel


TRIVIAL = v2.TrivialAugmentWide()


def trivial_augment(x: Tensor) -> Tensor:
    """TrivialAugmentWide per image of a uint8 batch (torchvision's; one Python call per
    image: fine on a CPU, the only step of this module that is not whole-batch)."""
    return torch.stack([TRIVIAL(image) for image in x])


class BatchAugment:
    """uint8 (B, 3, 32, 32) batch -> augmented, normalised float32 batch, on its device."""

    def __init__(self, settings: AugmentSettings = DEFAULT_AUGMENT) -> None:
        self.settings = settings

    def __call__(self, images: Tensor) -> Tensor:
        s, x = self.settings, images
        if s.trivial_augment:
            x = trivial_augment(x)
        if s.flip_p > 0 or s.crop_padding > 0:
            x = flip_and_crop(x, s.flip_p, s.crop_padding, s.crop_reflect)
        x = to_unit_float(x)
        if any(s.jitter):
            x = color_jitter(x, *s.jitter)
        if s.rotation_degrees > 0:
            x = rotate(x, s.rotation_degrees)
        x = normalize(x)
        return cutout(x, s.cutout) if s.cutout > 0 else x


class DeviceBatches:
    """The device data path: the uint8 training set copied to the batches' device once, and
    each batch of indices made into an augmented ``(images, labels)`` batch there."""

    def __init__(self, settings: AugmentSettings = DEFAULT_AUGMENT) -> None:
        self.augment = BatchAugment(settings)
        self._resident: tuple[Tensor, Tensor] | None = None

    def __call__(self, images: Tensor, labels: Tensor, indices: Tensor) -> tuple[Tensor, Tensor]:
        """``images`` (N, 3, 32, 32) uint8 and ``labels`` (N,) of the whole training set;
        ``indices`` (B,) on the training device."""
        if self._resident is None or self._resident[0].device != indices.device:
            self._resident = (images.to(indices.device), labels.to(indices.device))
        images, labels = self._resident
        return self.augment(images[indices]), labels[indices]

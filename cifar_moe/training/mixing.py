"""Batch mixing (mixup / cutmix) with a switch-off epoch.

torchvision.transforms.v2's MixUp and CutMix do the pixel work: each pairs every image
with its neighbour in the (already shuffled) batch, and CutMix's lambda is corrected to
the true pasted-area fraction after the box is clipped at the border.
"""

import torch
from torch import Tensor
from torchvision.transforms import v2

from cifar_moe.errors import UserError


class BatchMixer:
    """Mixes a training batch with mixup or cutmix, chosen per batch.

    Args:
        num_classes: number of classes, for the soft targets.
        mixup_alpha: Beta(alpha, alpha) parameter of mixup; 0 turns mixup off.
        cutmix_alpha: Beta(alpha, alpha) parameter of cutmix; 0 turns cutmix off.
        cutmix_prob: probability of cutmix for a batch when both are on.
        until_epoch: mixing is applied in epochs [0, until_epoch); None = every epoch.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        cutmix_prob: float = 0.5,
        until_epoch: int | None = None,
    ) -> None:
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if value < 0:
                raise UserError(f"model.{name} is {value}; use 0 (off) or a positive alpha")
        if not 0.0 <= cutmix_prob <= 1.0:
            raise UserError(f"model.cutmix_prob is {cutmix_prob}; use a probability in [0, 1]")
        self.until_epoch = until_epoch
        self.cutmix_prob = cutmix_prob
        self._mixup = v2.MixUp(alpha=mixup_alpha, num_classes=num_classes) if mixup_alpha else None
        self._cutmix = (
            v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes) if cutmix_alpha else None
        )

    def active(self, epoch: int) -> bool:
        """Whether batches of this epoch are mixed."""
        has_mixer = self._mixup is not None or self._cutmix is not None
        return has_mixer and (self.until_epoch is None or epoch < self.until_epoch)

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) images and (B,) labels -> mixed images and (B, C) soft targets."""
        mixer = self._mixup or self._cutmix
        if self._mixup is not None and self._cutmix is not None:
            use_cutmix = torch.rand(()).item() < self.cutmix_prob
            mixer = self._cutmix if use_cutmix else self._mixup
        return mixer(images, labels)

"""Test-time augmentation: the mean of the logits of an image and of its horizontal mirror.

Logits, not probabilities, are averaged: the mean logit is still a logit, so the loss,
accuracy and softmax downstream stay exactly as without TTA, and an exported model keeps
one softmax at its end. (Averaged logits are the normalised geometric mean of the two
probability vectors; with two views it ranks classes almost always as the arithmetic mean.)
Training never uses it: the training pipeline already flips at random.

``flip_translate`` is airbench94's multi-crop TTA (its level 2): the flip average of the image,
averaged half-and-half with the flip averages of two copies shifted by one pixel (up-left and
down-right, reflected border): six forward passes, for small nets where eval is cheap.
"""

from collections.abc import Callable
from typing import Literal, get_args

import torch.nn.functional as F
from torch import Tensor

from cifar_moe.core.errors import UserError

TTAMode = Literal["none", "flip", "flip_translate"]
TTA_MODES: tuple[str, ...] = get_args(TTAMode)


def tta_logits(forward: Callable[[Tensor], Tensor], images: Tensor, mode: TTAMode) -> Tensor:
    """``forward(images)`` for ``none``; for ``flip`` the mean with ``forward(mirrored)``.

    The mirrored pass runs first, so routers that record their latest weights (routing
    analytics) hold those of the original images afterwards.
    """
    if mode not in TTA_MODES:
        raise UserError(f"model.tta is {mode!r}; use one of {', '.join(TTA_MODES)}")
    if mode == "none":
        return forward(images)
    if mode == "flip_translate":
        padded = F.pad(images, (1, 1, 1, 1), mode="reflect")  # (B, 3, H + 2, W + 2)
        h, w = images.shape[-2:]
        shifted = [padded[..., :h, :w], padded[..., 2:, 2:]]  # one pixel each way
        translated = sum(_flip_mean(forward, view) for view in shifted) / 2
        return (_flip_mean(forward, images) + translated) / 2
    return _flip_mean(forward, images)


def _flip_mean(forward: Callable[[Tensor], Tensor], images: Tensor) -> Tensor:
    mirrored = forward(images.flip(-1))  # (B, C): W is the last dim of (B, 3, H, W)
    return (forward(images) + mirrored) / 2

"""Test-time augmentation: the mean of the logits of an image and of its horizontal mirror.

Logits, not probabilities, are averaged: the mean logit is still a logit, so the loss,
accuracy and softmax downstream stay exactly as without TTA, and an exported model keeps
one softmax at its end. (Averaged logits are the normalised geometric mean of the two
probability vectors; with two views it ranks classes almost always as the arithmetic mean.)
Training never uses it: the training pipeline already flips at random.
"""

from collections.abc import Callable
from typing import Literal

from torch import Tensor

from cifar_moe.errors import UserError

TTAMode = Literal["none", "flip"]
TTA_MODES = ("none", "flip")


def tta_logits(forward: Callable[[Tensor], Tensor], images: Tensor, mode: TTAMode) -> Tensor:
    """``forward(images)`` for ``none``; for ``flip`` the mean with ``forward(mirrored)``.

    The mirrored pass runs first, so routers that record their latest weights (routing
    analytics) hold those of the original images afterwards.
    """
    if mode not in TTA_MODES:
        raise UserError(f"model.tta is {mode!r}; use one of {', '.join(TTA_MODES)}")
    if mode == "none":
        return forward(images)
    mirrored = forward(images.flip(-1))  # (B, C): W is the last dim of (B, 3, H, W)
    return (forward(images) + mirrored) / 2

"""``LitClassifier.classify``: uint8 tensors or PIL images in, class names and probabilities out.

One preprocessing for every path (``classify``, ``predict``, the exported model): any size is
squashed to 32x32 as uint8 (``to_model_size``), then scaled to [0, 1] and normalised with the
CIFAR-10 mean/std exactly as ``build_eval_transform`` does during training and testing.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import Tensor

from cifar_moe.core.errors import UserError
from cifar_moe.core.normalization import normalize_uint8
from cifar_moe.data.image_folder import pil_to_uint8, to_model_size
from cifar_moe.training.tta import tta_logits


@dataclass
class Classification:
    """What ``classify`` returns for B images (a single image counts as B = 1)."""

    names: list[str]  # predicted class name per image
    confidences: Tensor  # (B,) probability of the predicted class
    probs: Tensor  # (B, C) probability of every class, columns in ``class_names`` order
    class_names: list[str]


def as_uint8_batch(images) -> Tensor:
    """A uint8 (B, 3, 32, 32) batch from a uint8 (3, H, W) / (B, 3, H, W) tensor, a PIL image
    or a sequence of either (sizes may differ: each is resized on its own)."""
    if isinstance(images, Tensor):
        _check_tensor(images)
        batch = images.unsqueeze(0) if images.dim() == 3 else images
        return to_model_size(batch)
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        if not images:
            raise UserError("classify got an empty list; pass at least one image")
        return torch.cat([as_uint8_batch(image) for image in images])
    if isinstance(images, Image.Image):
        return as_uint8_batch(pil_to_uint8(images))
    raise UserError(f"classify got a {type(images).__name__}; pass uint8 tensors (3, H, W) or "
                    "(B, 3, H, W), PIL images, or a list of them")


def _check_tensor(images: Tensor) -> None:
    if images.dtype != torch.uint8:
        raise UserError(f"classify got a {images.dtype} tensor; pass uint8 images in [0, 255] "
                        "(e.g. (x * 255).round().to(torch.uint8) for floats in [0, 1])")
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise UserError(f"classify got shape {tuple(images.shape)}; pass (3, H, W) or "
                        "(B, 3, H, W) RGB images, channels first")
    if images.numel() == 0:  # torch.cat of no chunks, or a resize of a 0-pixel image
        raise UserError(f"classify got an empty batch, shape {tuple(images.shape)}; pass at "
                        "least one image of at least 1x1 pixels")


def classify(model, images, batch_size: int = 256) -> Classification:
    """Probabilities of ``model`` (a ``LitClassifier``) for raw images, with its ``tta``.

    Runs in eval mode without gradients on the model's device, in chunks of ``batch_size``,
    and puts every submodule back in the train/eval mode it was in.
    """
    batch = as_uint8_batch(images)
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            chunks = [
                tta_logits(model, normalize_uint8(chunk.to(model.device)), model.tta)
                .float().softmax(dim=-1).cpu()
                for chunk in batch.split(batch_size)
            ]
    finally:
        for module, training in modes.items():
            module.training = training
    probs = torch.cat(chunks)  # (B, C)
    confidences, predicted = probs.max(dim=-1)
    names = [model.class_names[i] for i in predicted.tolist()]
    return Classification(names, confidences, probs, list(model.class_names))

"""Classification losses on soft targets.

Both losses are per-sample sums over classes that are *linear in the target
distribution*, then a plain mean over the batch. Linearity is what makes a mixed batch
exact: for a target t = lam * onehot(a) + (1 - lam) * onehot(b), the loss equals
lam * L(a) + (1 - lam) * L(b). Label smoothing is applied to the target first (also
linear), and class weights scale each class's term, so none of them breaks this.

Cross-entropy is torch's own ``F.cross_entropy``: it takes hard labels or class
probabilities (mixed batches) and smooths either as t * (1 - eps) + eps / C, exactly
:func:`smooth_targets` (tested). The focal loss has no torch counterpart and is written here.
"""

import functools
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cifar_moe.errors import UserError


def smooth_targets(targets: Tensor, num_classes: int, label_smoothing: float) -> Tensor:
    """Hard labels (B,) or soft targets (B, C) -> smoothed soft targets (B, C)."""
    if targets.ndim == 1:
        targets = F.one_hot(targets, num_classes).float()
    return targets * (1.0 - label_smoothing) + label_smoothing / num_classes


def class_weight_vector(
    class_weights: Mapping[str, float] | None, class_names: Sequence[str]
) -> Tensor:
    """Per-class weights given by name (unnamed classes weigh 1.0) -> a (C,) tensor."""
    weights = torch.ones(len(class_names))
    for name, value in (class_weights or {}).items():
        if name not in class_names:
            raise UserError(
                f"model.class_weights names unknown class {name!r}; "
                f"use one of: {', '.join(class_names)}"
            )
        if value <= 0:
            raise UserError(f"model.class_weights[{name!r}] is {value}; weights must be > 0")
        weights[list(class_names).index(name)] = float(value)
    return weights


def cross_entropy_loss(label_smoothing: float = 0.0):
    """``F.cross_entropy`` with label smoothing, for hard labels (B,) or soft targets (B, C)."""
    return functools.partial(F.cross_entropy, label_smoothing=label_smoothing)


class FocalLoss(nn.Module):
    """Multi-class focal loss, sum_c -w_c t_c (1 - p_c)^gamma log p_c, on soft targets.

    With gamma 0 and unit weights it is exactly :func:`cross_entropy_loss`.

    Args:
        num_classes: number of classes C (the width of the targets once smoothed).
        gamma: focusing exponent; 0 gives cross-entropy.
        label_smoothing: mass spread uniformly over the C classes of each target.
        class_weights: per-class weights w_c (C,); None weighs every class 1.
    """

    def __init__(
        self,
        num_classes: int,
        gamma: float = 2.0,
        label_smoothing: float = 0.0,
        class_weights: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        weights = torch.ones(num_classes) if class_weights is None else class_weights
        self.register_buffer("class_weights", weights.float(), persistent=False)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        # Low-precision logits (bf16 autocast) are lifted to fp32: (1 - p)^gamma underflows.
        log_p = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)
        target = smooth_targets(targets, self.num_classes, self.label_smoothing).to(log_p.dtype)
        modulating = (1.0 - log_p.exp()).pow(self.gamma)
        weights = self.class_weights.to(log_p.dtype)
        per_class = -weights * target * modulating * log_p  # (B, C)
        return per_class.sum(dim=-1).mean()

"""Classification losses on soft targets.

Both losses are per-sample sums over classes that are *linear in the target
distribution*, then a plain mean over the batch. Linearity is what makes a mixed batch
exact: for a target t = lam * onehot(a) + (1 - lam) * onehot(b), the loss equals
lam * L(a) + (1 - lam) * L(b). Label smoothing (of the target, or inside each label's
cross-entropy in the focal ``smoothed_ce`` form) and class weights keep this.

Cross-entropy is torch's own ``F.cross_entropy``: it takes hard labels or class
probabilities (mixed batches) and smooths either as t * (1 - eps) + eps / C, exactly
:func:`smooth_targets` (tested). The focal loss has no torch counterpart and is written here.
"""

from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cifar_moe.core.errors import UserError


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


class CrossEntropy(nn.Module):
    """``F.cross_entropy`` with label smoothing, for hard labels (B,) or soft targets (B, C).

    A module rather than a function so ``model.compile`` fuses it with the rest of the step:
    smoothing's backward is about ten small ops eagerly.

    Args:
        label_smoothing: mass spread uniformly over the classes of each target.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)


def cross_entropy_loss(label_smoothing: float = 0.0) -> CrossEntropy:
    """Cross-entropy with label smoothing (:class:`CrossEntropy`)."""
    return CrossEntropy(label_smoothing)


FocalForm = Literal["per_class", "smoothed_ce"]
LossName = Literal["cross_entropy", "focal"]
FOCAL_GAMMA: float = 2.0
"""Default focusing parameter; a cross-entropy run must leave it so."""
FOCAL_FORM: FocalForm = "per_class"
"""Default focal form (the report's); a cross-entropy run must leave it so."""


class FocalLoss(nn.Module):
    """Multi-class focal loss on hard labels (B,) or soft targets (B, C), in one of two forms.

    ``per_class`` (the seed B report's form): sum_c -w_c s_c (1 - p_c)^gamma log p_c, with s
    the smoothed target. The factor also down-weights the smoothing terms, so for a hard
    label the optimum puts less mass on the true class than cross-entropy's (tested).

    ``smoothed_ce``: the focal factor on the smoothed cross-entropy of each label y,
    w_y (1 - exp(-ce_y))^gamma ce_y with ce_y = -sum_c smooth(onehot y)_c log p_c. The factor
    grows with ce_y, so the optimum is that of smoothed cross-entropy (tested). A soft target
    t weighs each label's loss by t_y, which keeps the loss linear in the target.

    With gamma 0 and unit weights both forms are exactly :func:`cross_entropy_loss`.

    Args:
        num_classes: number of classes C (the width of the targets once smoothed).
        gamma: focusing exponent; 0 gives cross-entropy.
        label_smoothing: mass spread uniformly over the C classes of each target.
        class_weights: per-class weights w_c (C,); None weighs every class 1.
        form: where the focal factor applies: ``per_class`` or ``smoothed_ce`` (above).
    """

    def __init__(
        self,
        num_classes: int,
        gamma: float = 2.0,
        label_smoothing: float = 0.0,
        class_weights: Tensor | None = None,
        form: FocalForm = "per_class",
    ) -> None:
        super().__init__()
        if form not in get_args(FocalForm):
            raise UserError(f"model.focal_form is {form!r}; use {' or '.join(get_args(FocalForm))}")
        self.num_classes = num_classes
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.form = form
        weights = torch.ones(num_classes) if class_weights is None else class_weights
        self.register_buffer("class_weights", weights.float(), persistent=False)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        # Low-precision logits (bf16 autocast) are lifted to fp32: (1 - p)^gamma underflows.
        log_p = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)
        weights = self.class_weights.to(log_p.dtype)
        if self.form == "smoothed_ce":
            return self._smoothed_ce(log_p, targets, weights)
        target = smooth_targets(targets, self.num_classes, self.label_smoothing).to(log_p.dtype)
        modulating = (1.0 - log_p.exp()).pow(self.gamma)
        per_class = -weights * target * modulating * log_p  # (B, C)
        return per_class.sum(dim=-1).mean()

    def _smoothed_ce(self, log_p: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
        eps = self.label_smoothing
        # Column y: the smoothed cross-entropy the sample would have if its label were y.
        ce = -(1.0 - eps) * log_p - eps * log_p.mean(dim=-1, keepdim=True)  # (B, C)
        focal = (1.0 - torch.exp(-ce)).pow(self.gamma) * ce  # (B, C)
        label_mass = smooth_targets(targets, self.num_classes, 0.0).to(log_p.dtype)  # (B, C)
        return (weights * label_mass * focal).sum(dim=-1).mean()


def build_loss(loss: LossName, class_names: Sequence[str], label_smoothing: float,
               focal_gamma: float, class_weights: Mapping[str, float] | None,
               focal_form: FocalForm):
    """The training loss for ``LitClassifier``'s settings; bad values stop with one line."""
    check_loss_settings(loss, label_smoothing, focal_gamma, focal_form, bool(class_weights))
    weights = class_weight_vector(class_weights, class_names)
    if loss == "focal":
        return FocalLoss(len(class_names), focal_gamma, label_smoothing, weights, focal_form)
    return cross_entropy_loss(label_smoothing)


def check_loss_settings(loss: str, label_smoothing: float, focal_gamma: float,
                        focal_form: str, class_weighted: bool) -> None:
    """One line for loss settings that cannot train as asked; the CLI's pre-flight (which a
    study makes for every row before any run) and ``build_loss`` both call it."""
    if loss not in get_args(LossName):  # the CLI checks it; a notebook's LitClassifier does not
        raise UserError(f"model.loss is {loss!r}; use {' or '.join(get_args(LossName))}")
    if not 0.0 <= label_smoothing < 1.0:
        raise UserError(f"model.label_smoothing is {label_smoothing}; use a value in [0, 1)")
    if focal_gamma < 0:
        raise UserError(f"model.focal_gamma is {focal_gamma}; use 0 (cross-entropy) or more")
    if loss == "focal":
        return
    if class_weighted:
        raise UserError("model.class_weights is only used by loss: focal; remove it or switch")
    # A changed focal setting with cross-entropy would train something other than asked for.
    if focal_gamma != FOCAL_GAMMA or focal_form != FOCAL_FORM:
        raise UserError("model.focal_gamma and model.focal_form are only used by loss: focal; "
                        "remove them or set model.loss: focal")

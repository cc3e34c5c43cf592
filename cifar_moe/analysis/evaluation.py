"""Evaluating a trained model outside the Trainer: predictions and a confusion matrix."""

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
)


@torch.no_grad()
def predict_labels(model: torch.nn.Module, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax predictions and true labels over a loader of (images, labels) batches."""
    model.eval()
    device = next(model.parameters()).device
    preds, targets = [], []
    for images, labels in loader:
        preds.append(model(images.to(device)).argmax(dim=-1).cpu())
        targets.append(labels)
    return torch.cat(preds), torch.cat(targets)


def per_class_accuracy(preds: torch.Tensor, targets: torch.Tensor, num_classes: int):
    """(C,) accuracy of each true class (the recall the per-class table prints)."""
    return multiclass_accuracy(preds, targets, num_classes, average=None)


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) counts, rows are true classes."""
    return multiclass_confusion_matrix(preds, targets, num_classes)

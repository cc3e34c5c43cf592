"""Disjoint validation folds of the training images: the one partition that selection, the
studies and the peer benchmark share.

The training images are shuffled once with ``FOLD_SEED`` and cut into ``num_folds`` folds of
near-equal size (5,085 slice images: five of 509 and five of 508). Fold ``f`` is the
validation set of a fit; the other folds train it. The partition does not depend on the run's
seed, so two recipes run on fold ``f`` are scored on the same images (a paired comparison).
"""

import torch

from cifar_moe.core.errors import UserError

NUM_FOLDS = 10
"""Folds of the training images (about 508 images each on the slice)."""

FOLD_SEED = 0
"""Seed of the one shuffle that assigns images to folds; never varied."""


def fold_of_each(n: int, num_folds: int = NUM_FOLDS) -> torch.Tensor:
    """(n,) fold index of every training image, in the images' own order."""
    if not 2 <= num_folds <= n:
        raise UserError(f"data.num_folds is {num_folds}; use 2 .. {n} (the training images)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(FOLD_SEED))
    folds = torch.empty(n, dtype=torch.long)
    folds[order] = torch.arange(n) % num_folds  # round robin: sizes differ by at most one
    return folds


def fold_split(n: int, fold: int, num_folds: int = NUM_FOLDS) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices), both sorted, for validation fold ``fold``."""
    if not 0 <= fold < num_folds:
        raise UserError(f"data.val_fold is {fold}; use 0 .. {num_folds - 1} "
                        f"(one of data.num_folds = {num_folds} folds)")
    folds = fold_of_each(n, num_folds)
    return (folds != fold).nonzero().flatten(), (folds == fold).nonzero().flatten()


def subsample(indices: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """A seeded ``fraction`` of ``indices`` (sorted), for data-size curves; 1.0 keeps all."""
    if not 0 < fraction <= 1:
        raise UserError(f"data.train_fraction is {fraction}; use a value in (0, 1]")
    if fraction == 1:
        return indices
    keep = max(1, round(len(indices) * fraction))
    order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed))
    return indices[order[:keep]].sort().values


def validation_split(n: int, val_size: int, split_seed: int, val_fold: int | None,
                     num_folds: int, train_fraction: float
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(train indices, validation indices or None for "validate on test") of ``n`` images.

    ``val_fold`` set: that fold validates, the rest train (``val_size``/``split_seed`` unused).
    Otherwise ``val_size`` images drawn with ``split_seed`` validate (0: the test set does).
    ``train_fraction`` then keeps a seeded share of the training indices (validation unchanged,
    so a data-size curve is scored on the same images at every size).
    """
    if val_fold is not None:
        train, val = fold_split(n, val_fold, num_folds)
    elif val_size >= n:
        raise UserError(f"data.val_size is {val_size} but the training set has {n} images; "
                        "use a smaller val_size (or 0 to validate on the test set)")
    elif val_size == 0:
        train, val = torch.arange(n), None
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
        train, val = order[val_size:].sort().values, order[:val_size].sort().values
    return subsample(train, train_fraction, seed=FOLD_SEED), val

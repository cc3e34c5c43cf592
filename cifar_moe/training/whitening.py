"""Sets a whitening stem's filters from the training images when a fit starts."""

import torch
from lightning.pytorch.utilities import rank_zero_info

from cifar_moe.core.normalization import normalize_uint8
from cifar_moe.models.stem import WhiteningStem

MAX_IMAGES = 5000
"""Images whose patches set the filters (airbench uses 5,000): enough for a 12x12 covariance."""


def whiten_stems(module: torch.nn.Module, trainer) -> None:
    """Set every :class:`WhiteningStem` of ``module`` from the first ``MAX_IMAGES`` training
    images (unaugmented, normalised as every path normalises); called by the LightningModule
    at ``setup("fit")``, so a plain ``Trainer.fit`` in a notebook does it too.

    On a resumed fit the checkpoint's weights are loaded after ``setup`` and replace these,
    so a resume continues with the filters it trained with. Networks without a whitening
    stem are untouched.
    """
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None:
        whiten_from_datamodule(module, datamodule)


def whiten_from_datamodule(module: torch.nn.Module, datamodule) -> None:
    """:func:`whiten_stems` for a loop without a trainer: ``datamodule`` set up for "fit"."""
    stems = [m for m in module.modules() if isinstance(m, WhiteningStem)]
    if not stems:
        return
    images = datamodule.datasets["train"].images[:MAX_IMAGES]  # (N, 3, 32, 32) uint8
    with torch.no_grad():
        normalised = normalize_uint8(images)
        for stem in stems:
            stem.init_from_images(normalised.to(stem.conv.weight.device))
    rank_zero_info(f"whitening stem: filters set from {len(images)} training images")

"""What a LightningModule saves of its init arguments, so a checkpoint loads with no YAML."""

import warnings

from torch import nn

from cifar_moe.core.private_api import drop_initial_hparam


def save_init_hparams(module, frame) -> None:
    """Save the init arguments of the ``__init__`` running in ``frame`` as hyperparameters.

    Under the CLI ``net`` is saved as its config (class path and arguments), so
    ``load_from_checkpoint`` rebuilds it; a hand-built network object is dropped instead of
    pickled. ``tta`` is an evaluation choice, so ``test --model.tta`` wins over the saved one.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
        # Lightning reads the init arguments from the frame it is given: __init__'s.
        module.save_hyperparameters(ignore=["tta"], frame=frame)
    if isinstance(module.hparams.get("net"), nn.Module):
        module.hparams.pop("net")
        drop_initial_hparam(module, "net")

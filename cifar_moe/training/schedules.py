"""LR schedules sized by the run: OneCycle's step count, cosine's T_max, resumed schedules."""

import inspect
import math
import sys

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR

from cifar_moe.errors import UserError


class CosineToRunEnd(CosineAnnealingLR):
    """torch's ``CosineAnnealingLR`` whose ``T_max`` defaults to the run's length.

    Args:
        optimizer: the optimizer it schedules (given by the module).
        T_max: epochs of the half cosine; None = ``trainer.max_epochs - 1``, so the last
            epoch trains at ``eta_min`` (set by ``LitClassifier`` from the trainer).
        eta_min: the LR at the end of the cosine.
        last_epoch: the index of the last epoch (-1 = start), as in torch.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, T_max: int | None = None,
                 eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if T_max is None:
            raise UserError("model.scheduler: CosineToRunEnd without T_max needs the run's "
                            "max_epochs; build it through LitClassifier or give T_max")
        super().__init__(optimizer, T_max=T_max, eta_min=eta_min, last_epoch=last_epoch)


def scheduler_config(factory, optimizer, trainer, saved: dict | None) -> dict:
    """Lightning's ``lr_scheduler`` entry for ``factory``, checked against the run.

    ``saved`` is the scheduler state of the checkpoint being resumed, if any.
    """
    target = factory_class(factory)
    keywords = getattr(factory, "keywords", {}) or {}
    if target is not None and issubclass(target, OneCycleLR):
        total = _one_cycle_steps(trainer, keywords.get("pct_start", 0.3), saved)
        return {"scheduler": factory(optimizer, total_steps=total), "interval": "step"}
    if target is not None and issubclass(target, CosineAnnealingLR):
        if keywords.get("T_max") is None and (trainer.max_epochs or 0) > 0:
            t_max = max(trainer.max_epochs - 1, 1)  # the last epoch runs at eta_min
            return {"scheduler": factory(optimizer, T_max=t_max), "interval": "epoch"}
        _warn_cosine_length(keywords.get("T_max"), trainer.max_epochs)
    return {"scheduler": factory(optimizer), "interval": "epoch"}


def _one_cycle_steps(trainer, pct_start: float, saved: dict | None) -> int:
    steps = trainer.estimated_stepping_batches
    if not math.isfinite(steps):
        raise UserError("model.scheduler: OneCycleLR needs a run of known length but "
                        f"trainer.max_epochs is {trainer.max_epochs}; set --trainer.max_epochs "
                        "(or --trainer.max_steps)")
    total = int(steps)
    # OneCycle divides by (warm-up steps - 1): a warm-up of exactly one step cannot run.
    if float(pct_start * total) - 1 == 0:
        raise UserError(f"model.scheduler: OneCycleLR has only {total} steps, so its warm-up "
                        f"(pct_start {pct_start} x {total}) is a single step, which it cannot "
                        "schedule; run more epochs or batches, change pct_start, or use another "
                        "scheduler")
    before = (saved or {}).get("total_steps")
    if before is not None and before != total:
        raise UserError(f"ckpt_path: its OneCycleLR run has {before} steps but this run has "
                        f"{total}; a finished cycle cannot be stretched. Resume with the "
                        "max_epochs it was started with, or train longer in a new fit")
    return total


def _warn_cosine_length(t_max: int | None, max_epochs: int | None) -> None:
    if t_max is None or max_epochs is None or max_epochs < 0:
        return
    # T_max = max_epochs - 1 ends the last epoch at eta_min (the recipes' choice).
    if t_max not in (max_epochs, max_epochs - 1):
        effect = "never reaches eta_min" if t_max > max_epochs else "rises again after eta_min"
        print(f"warning: model.scheduler T_max is {t_max} but trainer.max_epochs is "
              f"{max_epochs}, so the cosine LR {effect}; set "
              f"--model.scheduler.init_args.T_max={max_epochs - 1}", file=sys.stderr)


def factory_class(factory) -> type | None:
    """The class a factory builds: the class itself, or the one jsonargparse's partial wraps."""
    if inspect.isclass(factory):
        return factory
    return next((arg for arg in getattr(factory, "args", ()) if inspect.isclass(arg)), None)

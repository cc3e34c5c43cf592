"""LR schedules sized by the run: OneCycle's step count (and its held end), cosine's T_max,
resumed schedules."""

import inspect
import math
import sys

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR

from cifar_moe.core.errors import UserError


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


class OneCycleThenHold(OneCycleLR):
    """torch's ``OneCycleLR`` over the first ``1 - hold`` of the run, then its final LR held.

    The held end is a convergence check: a run whose validation accuracy still rises while
    the LR stays at the cycle's final value had not finished training.

    Args:
        optimizer: the optimizer it schedules (given by the module).
        max_lr: the peak LR.
        total_steps: the run's optimizer steps (set by ``LitClassifier`` from the trainer).
        pct_start: fraction of the cycle (not of the run) spent warming up.
        div_factor: the cycle starts at ``max_lr / div_factor``.
        final_div_factor: the cycle ends, and the hold stays, at its start LR / this.
        hold: fraction of the run, at its end, that holds the final LR (0 = ``OneCycleLR``).
        base_momentum: momentum at the peak LR (cycled as in torch).
        max_momentum: momentum at the start and the end of the cycle.
        last_epoch: the index of the last step (-1 = start), as in torch.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_lr: float,
                 total_steps: int | None = None, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, hold: float = 0.0,
                 base_momentum: float = 0.85, max_momentum: float = 0.95,
                 last_epoch: int = -1) -> None:
        if total_steps is None:
            raise UserError("model.scheduler: OneCycleThenHold without total_steps needs the "
                            "run's length; build it through LitClassifier or give total_steps")
        self.run_steps = total_steps
        super().__init__(optimizer, max_lr, total_steps=held_cycle_steps(total_steps, hold),
                         pct_start=pct_start, div_factor=div_factor,
                         final_div_factor=final_div_factor, base_momentum=base_momentum,
                         max_momentum=max_momentum, last_epoch=last_epoch)

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        # Past the cycle, OneCycleLR's last step (its end LR and momentum) repeats.
        self.last_epoch = min(step, self.total_steps - 1)
        try:
            return super().get_lr()
        finally:
            self.last_epoch = step


def held_cycle_steps(run_steps: int, hold: float) -> int:
    """The steps of a cycle that leaves the last ``hold`` of ``run_steps`` to its final LR."""
    if not 0.0 <= hold < 1.0:
        raise UserError(f"model.scheduler.init_args.hold is {hold}; give the fraction of the "
                        "run that holds the final LR, from 0 (none) up to but not including 1")
    return max(round(run_steps * (1.0 - hold)), 1)


def scheduler_config(factory, optimizer, trainer, saved: dict | None) -> dict:
    """Lightning's ``lr_scheduler`` entry for ``factory``, checked against the run.

    ``saved`` is the scheduler state of the checkpoint being resumed, if any. torch's own
    rejection of a setting (``pct_start: 25``) becomes one line naming the scheduler.
    """
    try:
        return _scheduler_entry(factory, optimizer, trainer, saved)
    except UserError:
        raise
    except (ValueError, TypeError) as err:
        name = getattr(factory_class(factory), "__name__", "the scheduler")
        raise UserError(f"model.scheduler ({name}): {' '.join(str(err).split())}; fix "
                        "model.scheduler.init_args") from None


def _scheduler_entry(factory, optimizer, trainer, saved: dict | None) -> dict:
    target = factory_class(factory)
    keywords = getattr(factory, "keywords", {}) or {}
    if target is not None and issubclass(target, OneCycleLR):
        total = _one_cycle_steps(trainer, keywords, saved)
        return {"scheduler": factory(optimizer, total_steps=total), "interval": "step"}
    if target is not None and issubclass(target, CosineAnnealingLR):
        if keywords.get("T_max") is None and (trainer.max_epochs or 0) > 0:
            t_max = max(trainer.max_epochs - 1, 1)  # the last epoch runs at eta_min
            return {"scheduler": factory(optimizer, T_max=t_max), "interval": "epoch"}
        _warn_cosine_length(keywords.get("T_max"), trainer.max_epochs)
    return {"scheduler": factory(optimizer), "interval": "epoch"}


def _one_cycle_steps(trainer, keywords: dict, saved: dict | None) -> int:
    pct_start = keywords.get("pct_start", 0.3)
    steps = trainer.estimated_stepping_batches
    if not math.isfinite(steps):
        raise UserError("model.scheduler: OneCycleLR needs a run of known length but "
                        f"trainer.max_epochs is {trainer.max_epochs}; set --trainer.max_epochs "
                        "(or --trainer.max_steps)")
    total = int(steps)
    cycle = held_cycle_steps(total, keywords.get("hold", 0.0))
    # OneCycle divides by (warm-up steps - 1): a warm-up of exactly one step cannot run.
    if float(pct_start * cycle) - 1 == 0:
        raise UserError(f"model.scheduler: OneCycleLR has only {cycle} steps, so its warm-up "
                        f"(pct_start {pct_start} x {cycle}) is a single step, which it cannot "
                        "schedule; run more epochs or batches, change pct_start, or use another "
                        "scheduler")
    saved = saved or {}
    before = saved.get("run_steps", saved.get("total_steps"))
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

"""A training epoch's loss, accuracy, mixing and regulariser totals, kept on the device.

A training step only adds to one small device tensor: nothing waits for the device between
logging steps. The totals are read (one host read) at Lightning's logging steps, before a
validation and at the epoch's end, where they also serve as the non-finite guard: a NaN or
inf loss in any step makes the loss total non-finite.
"""

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from cifar_moe.core.errors import UserError

LOSS, CORRECT, AUX = 0, 1, 2  # rows of ``sums``


class TrainTotals:
    """Sums over one training epoch: batch-size-weighted loss and regulariser, correct
    predictions (device), images and mixed images (host: known without reading the device).

    The epoch means equal Lightning's own ``on_epoch`` means (sums weighted by batch size).
    """

    def __init__(self) -> None:
        self.sums: Tensor | None = None  # (2,) or (3,) float32: loss*B, correct, [aux*B]
        self.images = 0
        self.mixed = 0
        self.unchecked_from = 0  # first step not yet covered by a finite check

    def add(self, loss: Tensor, correct: Tensor, aux: Tensor | None, batch: int,
            mixed: bool) -> None:
        """Add one step: ``loss`` and ``aux`` are batch means, ``correct`` a count."""
        with torch.no_grad():  # the totals are records: no graph, whatever the inputs
            parts = [loss * batch, correct] + ([aux * batch] if aux is not None else [])
            values = torch.stack(parts)  # promotes the count to the loss's float type
            if self.sums is not None and self.sums.shape == values.shape:
                self.sums.add_(values)
            else:  # the first step (or a regulariser that comes or goes: never in practice)
                self.sums = _merged(self.sums, values)
        self.images += batch
        self.mixed += batch if mixed else 0

    def finite(self) -> bool:
        """Whether every loss added so far was finite (one host read)."""
        return self.sums is None or bool(torch.isfinite(self.sums[LOSS]))

    def epoch_values(self, reduce_sum) -> dict[str, Tensor]:
        """The epoch means, summed over processes by ``reduce_sum(tensor) -> tensor`` first."""
        if self.sums is None:
            return {}
        counts = torch.tensor([self.images, self.mixed], dtype=torch.float32,
                              device=self.sums.device)
        sums, counts = reduce_sum(self.sums.clone()), reduce_sum(counts)
        images = counts[0].clamp_min(1)
        values = {"train/loss": sums[LOSS] / images, "train/acc": sums[CORRECT] / images,
                  "train/mixing": counts[1] / images}
        if len(sums) > AUX:
            values["train/aux_loss"] = sums[AUX] / images
        return values


def _merged(sums: Tensor | None, values: Tensor) -> Tensor:
    size = max(len(values), 0 if sums is None else len(sums))
    merged = torch.zeros(size, dtype=torch.float32, device=values.device)
    if sums is not None:
        merged[: len(sums)] += sums
    merged[: len(values)] += values
    return merged


def logs_this_step(trainer) -> bool:
    """Whether Lightning writes this training step's ``on_step`` values to the loggers: its
    rule (``log_every_n_steps`` counted in optimizer steps, every step in a fast_dev_run)."""
    every = trainer.log_every_n_steps
    return bool(trainer.fast_dev_run) or trainer.should_stop or (
        every > 0 and (trainer.global_step + 1) % every == 0)


def with_foreach(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimizer with one multi-tensor (foreach) update per step instead of a loop over
    the parameters, where it offers one and the config left it unset (torch picks foreach
    only for CUDA tensors by itself). Same arithmetic, a few ops instead of several per
    parameter."""
    for group in optimizer.param_groups:
        if "foreach" in group and group["foreach"] is None and not group.get("fused"):
            group["foreach"] = True
    return optimizer


def checked_optimizer(factory: OptimizerCallable) -> OptimizerCallable:
    """Build the optimizer once on a dummy parameter, so bad settings fail at start-up."""
    try:
        probe = factory([torch.zeros(1, requires_grad=True)])
    except ValueError as err:  # torch's own checks, e.g. "Invalid learning rate: -0.1"
        raise UserError(f"model.optimizer: {err}; fix it in the config") from None
    for group in probe.param_groups:
        if group["lr"] <= 0:
            raise UserError(f"model.optimizer lr is {group['lr']}; use a positive lr")
    return factory

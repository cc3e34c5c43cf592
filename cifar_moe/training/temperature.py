"""Annealing the routers' softmax temperature during training (as ODConv does)."""

import lightning as L

from cifar_moe.core.errors import UserError
from cifar_moe.models.router import find_routers


class TemperatureSchedule(L.Callback):
    """Anneals every router's softmax temperature linearly from ``tau0`` to ``tau1``.

    The value is a pure function of the step (or epoch), so a resumed run continues on it.

    Args:
        tau0: temperature at the start (high, e.g. 30 = near-uniform routing, every expert
            trained); equal to tau1 (the default) turns the schedule off.
        tau1: temperature at the end of the schedule and after it.
        epochs: length of the schedule in epochs.
        per_step: update every optimizer step (smooth) rather than once per epoch.
    """

    def __init__(self, tau0: float = 1.0, tau1: float = 1.0, epochs: int = 10,
                 per_step: bool = True) -> None:
        if tau0 <= 0 or tau1 <= 0 or epochs < 1:
            raise UserError(
                f"tau_schedule needs tau0 > 0, tau1 > 0, epochs >= 1; got {tau0}, {tau1}, {epochs}"
            )
        self.tau0, self.tau1, self.epochs, self.per_step = tau0, tau1, epochs, per_step

    def tau_at(self, progress_epochs: float) -> float:
        """Temperature after ``progress_epochs`` (fractional) epochs of training."""
        t = min(max(progress_epochs / self.epochs, 0.0), 1.0)
        return self.tau0 + (self.tau1 - self.tau0) * t

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.tau0 == self.tau1:  # the default: no schedule, nothing to log
            return
        progress = float(trainer.current_epoch)
        if self.per_step:
            progress += batch_idx / max(trainer.num_training_batches, 1)
        tau = self.tau_at(progress)
        for router in find_routers(pl_module):
            router.tau = tau
        pl_module.log("route/tau", tau, on_step=True, on_epoch=False)

"""The study child's callback: validation curve, routing health and training throughput."""

import time

import lightning as L

from cifar_moe.selection import SELECT_METRIC


class RunRecorder(L.Callback):
    """Records, during ``fit``, what a study reports about one run.

    * ``val_acc``: ``val/acc`` after every validation (sanity check excluded), with the epoch.
    * ``routing``: every ``route/...`` metric of the last validation.
    * ``train_images`` / ``train_seconds``: images through ``training_step`` and the wall time
      of the training epochs with validation taken out, for training img/s.
    """

    def __init__(self) -> None:
        self.val_acc: list[float] = []
        self.val_epochs: list[int] = []
        self.routing: dict[str, float] = {}
        self.train_images = 0
        self.train_seconds = 0.0
        self._since: float | None = None  # start of the current timed stretch
        self._in_epoch = False

    def _pause(self) -> None:
        if self._since is not None:
            self.train_seconds += time.perf_counter() - self._since
            self._since = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._in_epoch = True
        self._since = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_images += len(batch[0])

    def on_validation_start(self, trainer, pl_module) -> None:
        self._pause()

    def on_validation_end(self, trainer, pl_module) -> None:
        # Lightning has moved this validation's epoch metrics into callback_metrics by now.
        if not trainer.sanity_checking:
            metrics = trainer.callback_metrics
            if SELECT_METRIC in metrics:
                self.val_acc.append(float(metrics[SELECT_METRIC]))
                self.val_epochs.append(trainer.current_epoch)
            self.routing = {k: float(v) for k, v in metrics.items() if k.startswith("route/")}
        if self._in_epoch:
            self._since = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._pause()
        self._in_epoch = False

    def summary(self) -> dict:
        """The recorded numbers as plain JSON-able values."""
        best = max(range(len(self.val_acc)), key=self.val_acc.__getitem__, default=None)
        seconds = self.train_seconds
        return {
            "val_acc_curve": self.val_acc,
            "val_epochs": self.val_epochs,
            "best_val_acc": None if best is None else self.val_acc[best],
            "best_epoch": None if best is None else self.val_epochs[best],
            "train_images": self.train_images,
            "train_seconds": round(seconds, 3),
            "train_img_per_s": round(self.train_images / seconds, 2) if seconds > 0 else None,
            "routing": self.routing,
        }

"""The study child's callback: validation curve, routing health and training throughput."""

import time
from pathlib import Path

import lightning as L

from cifar_moe.core.constants import SELECT_METRIC
from cifar_moe.runs.study.stats import pack_bits

SAVED = ("val_acc", "val_epochs", "routing", "train_images", "train_seconds", "final_correct",
         "best_correct")
"""The recorder's numbers that a checkpoint keeps (the rest is per-epoch bookkeeping)."""


class RunRecorder(L.Callback):
    """Records, during ``fit``, what a study reports about one run.

    * ``val_acc``: ``val/acc`` after every validation (sanity check excluded), with the epoch.
    * ``routing``: every ``route/...`` metric of the last validation.
    * ``train_images`` / ``train_seconds``: images through ``training_step`` and the wall time
      of the training epochs with validation taken out, for training img/s.
    * ``final_val_acc`` and, per validation image in the loader's (fixed) order, whether the
      final epoch's model and the best epoch's got it right: the paired per-image
      disagreements between two rows on one fold are the image-sampling part of their
      difference's uncertainty (``stats.image_diff_se``).
    """

    def __init__(self) -> None:
        self.val_acc: list[float] = []
        self.val_epochs: list[int] = []
        self.routing: dict[str, float] = {}
        self.train_images = 0
        self.train_seconds = 0.0
        self._since: float | None = None  # start of the current timed stretch
        self._in_epoch = False
        self._correct: list = []  # this validation's per-batch 0/1 tensors
        self.final_correct: list[int] = []
        self.best_correct: list[int] = []

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
        self._correct = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx: int = 0) -> None:
        # validation_step returns the batch's predictions and labels (LitClassifier).
        if not trainer.sanity_checking and isinstance(outputs, dict) and "preds" in outputs:
            self._correct.append((outputs["preds"] == outputs["targets"]).cpu())

    def on_validation_end(self, trainer, pl_module) -> None:
        # Lightning has moved this validation's epoch metrics into callback_metrics by now.
        if not trainer.sanity_checking:
            metrics = trainer.callback_metrics
            if SELECT_METRIC in metrics:
                value = float(metrics[SELECT_METRIC])
                correct = [int(x) for batch in self._correct for x in batch.tolist()]
                # Strictly better, as the checkpoint callback picks its best: the first one.
                if not self.val_acc or value > max(self.val_acc):
                    self.best_correct = correct
                self.final_correct = correct
                self.val_acc.append(value)
                self.val_epochs.append(trainer.current_epoch)
            self.routing = {k: float(v) for k, v in metrics.items() if k.startswith("route/")}
        if self._in_epoch:
            self._since = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._pause()
        self._in_epoch = False

    def state_dict(self) -> dict:
        """What is recorded so far, saved in each checkpoint: a run resumed from its
        ``last.ckpt`` (a requeued job) then reports its whole curve, not the part after it."""
        return {key: getattr(self, key) for key in SAVED}

    def load_state_dict(self, state_dict: dict) -> None:
        for key in SAVED:
            setattr(self, key, state_dict.get(key, getattr(self, key)))

    def summary(self) -> dict:
        """The recorded numbers as plain JSON-able values."""
        best = max(range(len(self.val_acc)), key=self.val_acc.__getitem__, default=None)
        seconds = self.train_seconds
        return {
            "val_acc_curve": self.val_acc,
            "val_epochs": self.val_epochs,
            "best_val_acc": None if best is None else self.val_acc[best],
            "best_epoch": None if best is None else self.val_epochs[best],
            "final_val_acc": self.val_acc[-1] if self.val_acc else None,
            "val_images": len(self.final_correct),
            "val_correct_final": pack_bits(self.final_correct),
            "val_correct_best": pack_bits(self.best_correct),
            "train_images": self.train_images,
            "train_seconds": round(seconds, 3),
            "train_img_per_s": round(self.train_images / seconds, 2) if seconds > 0 else None,
            "routing": self.routing,
        }


RECORDER = "cifar_moe.runs.study.recorder.RunRecorder"
"""The class path a study run's ``fit`` gets in ``--trainer.callbacks``."""


def fit_argv(run_dir: Path, cli_args: list[str]) -> list[str]:
    """The run's whole ``cli_main`` argv: its fit args, then its folder and the recorder."""
    return ["fit", *cli_args, f"--trainer.default_root_dir={run_dir}",
            f"--trainer.callbacks+={RECORDER}"]

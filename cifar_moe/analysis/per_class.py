"""Per-class accuracy and confusion matrix for validation and test."""

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from cifar_moe.analysis.plots import confusion_figure

EVAL_STAGES = ("val", "test")


class PerClassMetrics(L.Callback):
    """Logs ``<stage>/acc_class/<name>`` and a confusion-matrix image for val and test.

    It reads the ``preds`` and ``targets`` that the module's ``_shared_step`` returns, so it
    costs no extra forward pass. torchmetrics syncs the states across processes.

    Args:
        confusion_image: also log the confusion matrix as a TensorBoard image.
        print_on_test: print a per-class accuracy table at the end of ``test``.
    """

    def __init__(self, confusion_image: bool = True, print_on_test: bool = True) -> None:
        self.confusion_image = confusion_image
        self.print_on_test = print_on_test
        self.class_names: list[str] = []
        self.acc: dict[str, MulticlassAccuracy] = {}
        self.confusion: dict[str, MulticlassConfusionMatrix] = {}

    def setup(self, trainer, pl_module, stage) -> None:
        self.class_names = list(pl_module.class_names)
        n = len(self.class_names)
        for s in EVAL_STAGES:
            self.acc[s] = MulticlassAccuracy(n, average=None).to(pl_module.device)
            self.confusion[s] = MulticlassConfusionMatrix(n).to(pl_module.device)

    def _update(self, stage, outputs) -> None:
        preds, targets = outputs["preds"], outputs["targets"]
        for metric in (self.acc[stage], self.confusion[stage]):
            metric.to(preds.device).update(preds, targets)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        if not trainer.sanity_checking:
            self._update("val", outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        self._update("test", outputs)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._finish("val", trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        per_class = self._finish("test", trainer, pl_module)
        if self.print_on_test:
            rank_zero_info(format_per_class(self.class_names, per_class))

    def _finish(self, stage, trainer, pl_module) -> torch.Tensor:
        per_class = self.acc[stage].compute()
        confusion = self.confusion[stage].compute()
        self.acc[stage].reset()
        self.confusion[stage].reset()
        for name, value in zip(self.class_names, per_class, strict=True):
            # Already synced by the metric, so every rank holds the same value and the mean
            # over ranks is that value; it also spares every DDP run a warning per class.
            pl_module.log(f"{stage}/acc_class/{name}", value, sync_dist=True)
        if self.confusion_image and trainer.is_global_zero:
            _log_confusion(trainer, stage, confusion.cpu(), self.class_names)
        return per_class.cpu()


def format_per_class(class_names, per_class) -> str:
    """The original report's table: one line 'Accuracy of <name>: 0.870' per class."""
    width = max(len(n) for n in class_names)
    pairs = zip(class_names, per_class, strict=True)
    lines = [f"Accuracy of {name:<{width}}: {float(acc):.3f}" for name, acc in pairs]
    return "\n".join(lines)


def _log_confusion(trainer, stage, confusion, class_names) -> None:
    loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
    if not loggers:
        return
    fig = confusion_figure(confusion, class_names)
    for logger in loggers:
        # add_figure closes the figure, so a long run does not pile them up in memory
        logger.experiment.add_figure(f"{stage}/confusion", fig, global_step=trainer.global_step)


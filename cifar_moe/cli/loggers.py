"""The loggers a run writes with: the project's TensorBoard run logger, plus any the config adds.

``--trainer.logger`` naming MLflow or CSV adds that logger *beside* the run's TensorBoard
logger instead of replacing it: the run folder (``lightning_logs/version_N/``, its
checkpoints, config and curves) stays where every other tool looks for it. A config that
names its own ``TensorBoardLogger`` gets exactly its list; ``false`` turns logging off.

    --trainer.logger=lightning.pytorch.loggers.MLFlowLogger          # ./mlruns file store
    --trainer.logger.init_args.tracking_uri=http://mlflow:5000       # or any tracking URI
    --trainer.logger=lightning.pytorch.loggers.CSVLogger --trainer.logger.init_args.save_dir=csv
"""

import os
from collections.abc import Callable, Iterable

import lightning as L
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from cifar_moe.core.constants import SELECT_METRIC
from cifar_moe.training.run_summary import RunSummary

# Lightning's MLFlowLogger defaults to the ./mlruns file store, which MLflow 3 refuses unless
# this opt-out is set; it suits runs side by side (one folder per run, no shared database
# lock). Set here, before the CLI builds the logger; a user's own setting or tracking_uri wins.
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

BEST_METRIC = SELECT_METRIC + "_best"
"""The final metric field every extra logger gets when ``fit`` ends (TensorBoard gets it from
:class:`RunSummary`'s HParams tab)."""


def with_run_logger(configured, run_logger: Callable[[], TensorBoardLogger]):
    """``trainer.logger`` as the Trainer gets it: the run logger first (so ``trainer.log_dir``
    and the checkpoint folder stay the run folder), then the configured extra loggers."""
    if configured is False:
        return False
    if configured in (None, True):  # Lightning's default, TensorBoard
        return run_logger()
    extra = list(configured) if isinstance(configured, Iterable) else [configured]
    if any(isinstance(logger, TensorBoardLogger) for logger in extra):
        return extra  # the config chose its own TensorBoard folder
    return [run_logger(), *extra]


def extra_loggers(trainer: L.Trainer) -> list[Logger]:
    """The loggers beside TensorBoard (MLflow, CSV, ...)."""
    return [lg for lg in trainer.loggers if not isinstance(lg, TensorBoardLogger)]


class FinalMetrics(L.Callback):
    """At the end of ``fit``, the best ``val/acc`` as one field in every extra logger, so an
    MLflow or CSV table has the number a run is chosen by (its hyperparameters are logged by
    Lightning at the start, ``test/acc`` by ``test``)."""

    def on_fit_end(self, trainer, pl_module) -> None:
        summary = next((cb for cb in trainer.callbacks if isinstance(cb, RunSummary)), None)
        best = summary.best_acc if summary is not None else None
        if best is None or not trainer.is_global_zero:
            return
        for logger in extra_loggers(trainer):
            logger.log_metrics({BEST_METRIC: best}, step=trainer.global_step)
            logger.save()


def add_final_metrics(trainer: L.Trainer) -> L.Trainer:
    """The trainer, with :class:`FinalMetrics` when it writes to a logger beside TensorBoard."""
    if extra_loggers(trainer):
        trainer.callbacks.append(FinalMetrics())
    return trainer

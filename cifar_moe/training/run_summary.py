"""The end of ``fit``: a short summary on the console and real metrics for TensorBoard's HParams;
the run's ``status.json`` (running, finished, interrupted, failed) for ``python -m cifar_moe runs``.

Epochs are counted from 1 here, as in the checkpoint names and the figures.

The HParams tab of every run shows ``val/acc_best`` (written here) and ``test/acc`` (logged
by ``test``, which writes into the same run folder), next to the run's settings.
"""

import os
import socket
import time
from contextlib import suppress
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from cifar_moe.core.atomic_files import write_json_atomic
from cifar_moe.core.constants import SELECT_METRIC
from cifar_moe.core.private_api import summary_file_writer

STATUS_FILE = "status.json"
HPARAM_METRICS = ("val/acc_best", "test/acc")
"""The metric columns of the HParams tab; their values are the runs' last scalars."""


class RunSummary(L.Callback):
    """Tracks the best ``val/acc`` and, when ``fit`` ends, reports the run.

    The best value and its epoch are part of the checkpoint, so a resumed run knows them.

    Args:
        print_summary: print best val/acc and epoch, best checkpoint, log folder, wall time
            and the ``test`` command to run next.
        hparams_tab: write the run's settings with ``val/acc_best`` and ``test/acc`` as metrics
            for TensorBoard's HParams tab.
    """

    def __init__(self, print_summary: bool = True, hparams_tab: bool = True) -> None:
        self.print_summary = print_summary
        self.hparams_tab = hparams_tab
        self.best_acc: float | None = None
        self.best_epoch: int | None = None
        self._started = time.perf_counter()
        self.run_dir: str | None = None  # set at fit start; status.json lives there

    def on_fit_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()
        # log_dir is a collective call under DDP: asked here by every rank, kept for the end.
        self.run_dir = trainer.log_dir
        self._status(trainer, "running", pid=os.getpid(), host=socket.gethostname())

    def _status(self, trainer, status: str, **extra) -> None:
        """The run's state in ``status.json``, replaced whole (it describes now, not history)."""
        folder = self.run_dir
        if not trainer.is_global_zero or not folder or not Path(folder).is_dir():
            return
        record = {"status": status, "epochs": trainer.current_epoch,
                  "best_val_acc": self.best_acc,
                  "best_epoch": None if self.best_epoch is None else self.best_epoch + 1, **extra}
        with suppress(OSError):  # a full disk is reported by the save that needs the space
            write_json_atomic(Path(folder) / STATUS_FILE, record)

    def on_exception(self, trainer, pl_module, exception) -> None:
        interrupted = isinstance(exception, KeyboardInterrupt) or "SIGTERM" in type(
            exception).__name__
        line = " ".join(str(exception).split())[:300]
        self._status(trainer, "interrupted" if interrupted else "failed",
                     **({} if interrupted else {"error": line}))

    def on_validation_end(self, trainer, pl_module) -> None:
        # By now Lightning has moved this validation's epoch values into callback_metrics.
        acc = trainer.callback_metrics.get(SELECT_METRIC)
        if trainer.sanity_checking or acc is None or trainer.state.fn != "fit":
            return
        if self.best_acc is None or float(acc) > self.best_acc:
            self.best_acc, self.best_epoch = float(acc), trainer.current_epoch

    def state_dict(self) -> dict:
        return {"best_acc": self.best_acc, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_acc = state_dict.get("best_acc")
        self.best_epoch = state_dict.get("best_epoch")

    def on_fit_end(self, trainer, pl_module) -> None:
        # log_dir is a collective call under DDP: every rank must ask, then only rank 0 writes.
        log_dir = trainer.log_dir or ""
        self._status(trainer, "finished")
        if not trainer.is_global_zero:
            return
        if self.hparams_tab:
            params = run_hparams(pl_module, trainer)
            for logger in (lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)):
                write_hparams(logger, params, self.best_acc, trainer.global_step)
        if self.print_summary:
            print(self.summary(trainer, time.perf_counter() - self._started, log_dir),
                  flush=True)

    def summary(self, trainer, seconds: float, log_dir: str) -> str:
        """The end-of-fit lines (paths relative to the working folder where possible)."""
        ckpt_cb = trainer.checkpoint_callback
        best_path = getattr(ckpt_cb, "best_model_path", "") or ""
        if self.best_acc is None:
            head = "fit done: no validation ran, so there is no best val/acc"
        else:
            head = f"fit done: best val/acc {self.best_acc:.4f} at epoch {self.best_epoch + 1}"
        lines = [f"{head} ({_duration(seconds)} wall time)",
                 f"  best checkpoint: {_short(best_path) or 'none saved'}",
                 f"  logs:            {_short(log_dir)}  "
                 f"(tensorboard --logdir {_short(_logs_folder(Path(log_dir)))})"]
        config = Path(log_dir) / "config.yaml"
        if best_path and config.is_file():
            lines.append(f"  next:            python -m cifar_moe test --config {_short(config)} "
                         f"--ckpt_path {_short(best_path)}")
        return "\n".join(lines)


def run_hparams(pl_module, trainer) -> dict[str, object]:
    """The run's settings as flat ``model/...``, ``data/...`` keys with TensorBoard-able values.

    Internal keys (``_instantiator``, ``_class_path``) are left out. A class with arguments
    (the network, optimizer, scheduler) and a settings mapping (augmentation) become one field
    each: ``model/optimizer/class = SGD``, ``model/optimizer/lr = 0.05``, ``data/augment/flip_p``.
    """
    params: dict[str, object] = {}
    datamodule = getattr(trainer, "datamodule", None)
    sources = (("model", pl_module.hparams), ("data", getattr(datamodule, "hparams", {})))
    for prefix, hparams in sources:
        for key, value in hparams.items():
            if not key.startswith("_") and key != "class_names":
                params.update(_fields(f"{prefix}/{key}", value))
    params["trainer/max_epochs"] = _plain(trainer.max_epochs)
    params["seed"] = _plain(os.environ.get("PL_GLOBAL_SEED"))  # set by seed_everything
    return params


def write_hparams(logger: TensorBoardLogger, params: dict, best_acc, step: int) -> None:
    """One HParams session with both metric columns; values come from the run's scalars.

    (``TensorBoardLogger.log_hyperparams(params, metrics)`` would need a value for
    ``test/acc`` now, long before ``test`` runs, and write it as a scalar.)
    """
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    experiment, start, end = hparams_summary(params, dict.fromkeys(HPARAM_METRICS, 0.0))
    writer = summary_file_writer(logger.experiment)
    for summary in (experiment, start, end):
        writer.add_summary(summary)
    if best_acc is not None:
        logger.log_metrics({"val/acc_best": best_acc}, step=step)
    logger.experiment.flush()


def _fields(name: str, value) -> dict[str, object]:
    """``name = value`` as HParams fields: a class_path mapping gives ``name/class`` and one
    field per init arg, any other mapping one field per key; scalars stay one field."""
    if isinstance(value, dict) and "class_path" in value:
        fields = {f"{name}/class": str(value["class_path"]).rsplit(".", 1)[-1]}
        for key, arg in sorted((value.get("init_args") or {}).items()):
            if key != "num_classes":  # linked from the data, shown as data/num_classes
                fields.update(_fields(f"{name}/{key}", arg))
        return fields
    if isinstance(value, dict):
        return {k: v for key, item in sorted(value.items())
                for k, v in _fields(f"{name}/{key}", item).items()}
    return {name: _plain(value)}


def _plain(value) -> object:
    """A value TensorBoard's HParams accepts: bool, int, float or str."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return "null" if value is None else str(value)


def _short(path) -> str:
    """A path relative to the working folder when it lies below it, else absolute."""
    if not path:
        return ""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def _logs_folder(run: Path) -> Path:
    """``lightning_logs`` above a run folder (every run's curves side by side)."""
    return next((p for p in run.parents if p.name == "lightning_logs"), run.parent)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


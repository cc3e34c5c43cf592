"""``EpochCheckpoint``: top-k by the monitored metric, plus ``last.ckpt`` after every epoch;
``{epoch}`` in its file names counts from 1 (``best-001.ckpt`` is the first epoch).

Lightning's ``ModelCheckpoint`` refreshes ``last.ckpt`` only in an epoch that also saved a
top-k file, so an epoch whose metric did not improve was in no file and the resume hint
could name an older epoch. Here ``last.ckpt`` is written at the end of every epoch, and no
checkpoint holding a non-finite weight is ever written.
"""

import warnings
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from cifar_moe.core.errors import UserError
from cifar_moe.core.private_api import saves_on_train_epoch_end
from cifar_moe.training.faults.atomic_io import remove_stale_partials

VAL_LOSS = "val/loss"


class EpochCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``save_last`` means every epoch, that refuses non-finite saves.

    Same arguments as ``ModelCheckpoint``. Before each save the weights are checked; a
    non-finite weight or validation loss stops the run with one line naming the newest
    checkpoint that is finite.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The parent would write last.ckpt only next to a top-k save; this class owns it.
        self.every_epoch_last, self.save_last = bool(self.save_last), False
        self._last_saved_step = -1

    def setup(self, trainer, pl_module, stage) -> None:
        with warnings.catch_warnings():
            if trainer.ckpt_path:  # a resume continues in its own, non-empty folder
                warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and")
            super().setup(trainer, pl_module, stage)
        folders = {self.dirpath, Path(trainer.ckpt_path).parent if trainer.ckpt_path else None}
        for folder in filter(None, folders):
            if Path(folder).is_dir():
                remove_stale_partials(folder)

    def format_checkpoint_name(self, metrics: dict, filename=None, ver=None, prefix=None) -> str:
        """Lightning's name, with ``{epoch}`` counted from 1 as everything a user reads
        (the summary, the figures): ``best-005.ckpt`` holds the fifth epoch."""
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, filename, ver, prefix)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not _fitting(trainer):
            return
        loss = trainer.callback_metrics.get(VAL_LOSS)
        if loss is not None and not torch.isfinite(loss).all():
            raise UserError(
                f"non-finite {VAL_LOSS} ({float(loss)}) after epoch {trainer.current_epoch + 1}; "
                f"newest finite checkpoint: {self.newest_finite(trainer)}. "
                "Lower model.optimizer.init_args.lr or check the data"
            )
        super().on_validation_end(trainer, pl_module)
        # With one validation per epoch the parent saves top-k at the train epoch end; saving
        # last.ckpt here would store the top-k state of the epoch before, which a resume in
        # the same run folder would then adopt.
        if not saves_on_train_epoch_end(self, trainer):
            self._save_last(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if _fitting(trainer):  # epochs without validation end here
            self._save_last(trainer)

    def _save_last(self, trainer) -> None:
        if not self.every_epoch_last or self._last_saved_step == trainer.global_step:
            return
        path = str(Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
        # Set before saving: the path is part of the saved callback state.
        self.last_model_path = path
        trainer.save_checkpoint(path, self.save_weights_only)
        self._last_saved_step = trainer.global_step

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        bad = non_finite_count(checkpoint.get("state_dict", {}))
        if bad:
            raise UserError(
                f"{bad} non-finite weights at step {trainer.global_step}, epoch "
                f"{trainer.current_epoch + 1}; not saved. Newest finite checkpoint: "
                f"{self.newest_finite(trainer)}. Lower model.optimizer.init_args.lr"
            )

    def newest_finite(self, trainer) -> str:
        """The newest checkpoint this run kept (each was checked), else the resume point."""
        kept = list(Path(self.dirpath).glob(f"*{self.FILE_EXTENSION}")) if self.dirpath else []
        if kept:
            return str(max(kept, key=lambda p: p.stat().st_mtime_ns))
        return str(trainer.ckpt_path) if trainer.ckpt_path else "none (no epoch finished)"


def non_finite_count(state_dict: dict) -> int:
    """How many floating-point values in ``state_dict`` are inf or NaN."""
    return sum(
        int((~torch.isfinite(t)).sum())
        for t in state_dict.values()
        if isinstance(t, torch.Tensor) and t.is_floating_point()
    )


def _fitting(trainer) -> bool:
    return trainer.state.fn == "fit" and not trainer.sanity_checking and not trainer.fast_dev_run

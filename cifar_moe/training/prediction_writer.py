"""``predict`` output: one CSV row per image with the predicted class and every probability."""

import csv
import os
from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_only

from cifar_moe.run_folder import run_dir_of


class PredictionCSVWriter(BasePredictionWriter):
    """Writes ``predict``'s probabilities to ``<run folder>/<filename>`` and prints its path.

    The run folder is the ``version_N`` whose ``checkpoints/`` holds ``--ckpt_path``, else the
    trainer's log folder. Rows are keyed by file name (``data.predict_dir``) or by test-batch
    index, which also gets the true class (``label``). The file appears only when complete.

    Args:
        filename: name of the CSV file in the run folder (a per-rank suffix under DDP).
        digits: decimal places of the probabilities.
    """

    def __init__(self, filename: str = "predictions.csv", digits: int = 6) -> None:
        super().__init__(write_interval="batch")
        self.filename, self.digits = filename, digits
        self.rows: list[list] = []

    def on_predict_start(self, trainer, pl_module) -> None:
        self.rows = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch,
                           batch_idx, dataloader_idx=0) -> None:
        labels = batch[1].tolist() if isinstance(batch, (list, tuple)) else None
        names = getattr(trainer.datamodule, "predict_names", None)
        classes = pl_module.class_names
        probs = prediction.float().cpu()  # (B, C)
        confidence, predicted = probs.max(dim=-1)
        confidence, predicted = confidence.tolist(), predicted.tolist()
        for i, index in enumerate(batch_indices or range(len(probs))):
            key = [names[index]] if names else [index, _class(classes, labels, i)]
            self.rows.append([*key, classes[predicted[i]], confidence[i], *probs[i].tolist()])

    def on_predict_end(self, trainer, pl_module) -> None:
        folder = run_folder(trainer)
        if trainer.world_size > 1:
            stem, suffix = os.path.splitext(self.filename)
            path = folder / f"{stem}.rank{trainer.global_rank}{suffix}"
        else:
            path = folder / self.filename
        keyed_by_file = getattr(trainer.datamodule, "predict_names", None) is not None
        header = ["file"] if keyed_by_file else ["index", "label"]
        header += ["predicted", "probability", *(f"p_{c}" for c in pl_module.class_names)]
        _write_csv(path, header, self.rows, self.digits)
        _say(f"predictions: {path} ({len(self.rows)} rows)")


def run_folder(trainer) -> Path:
    """``version_N`` of a checkpoint in ``version_N/checkpoints/``, else the log folder."""
    # The same on every rank, so either all or none of them make the collective log_dir call.
    return run_dir_of(trainer.ckpt_path) or Path(trainer.log_dir or trainer.default_root_dir)


@rank_zero_only
def _say(line: str) -> None:
    print(line, flush=True)


def _class(classes: list[str], labels: list[int] | None, i: int) -> str:
    if labels is None or labels[i] < 0:
        return ""
    return classes[labels[i]]


def _write_csv(path: Path, header: list[str], rows: list[list], digits: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow([round(v, digits) if isinstance(v, float) else v for v in row])
    partial.replace(path)  # readers never see a half-written file

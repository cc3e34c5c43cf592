"""``predict`` output: one CSV row per image with the predicted class and every probability.

A second ``predict`` into the same run folder writes ``predictions-2.csv`` (with its own
``config_predict-2.yaml``), and so on: an earlier prediction is never replaced.
"""

import csv
import os
from contextlib import suppress
from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_only

from cifar_moe.core.errors import UserError
from cifar_moe.runs.claims import claim_numbered, numbered
from cifar_moe.runs.folder import RunConfigSaver


class PredictionCSVWriter(BasePredictionWriter):
    """Writes ``predict``'s probabilities to ``<run folder>/<filename>`` and prints its path.

    The run folder is the trainer's log folder: the run whose ``checkpoints/`` holds
    ``--ckpt_path`` (see ``runs/folder.py``). Rows are keyed by file name
    (``data.predict_dir``) or by test-batch index, which also gets the true class
    (``label``). The file appears only when complete, beside any earlier one (``-<n>``).

    Args:
        filename: name of the CSV file in the run folder (a per-rank suffix under DDP; ``-<n>``
            for the n-th prediction into that folder).
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
        stem, suffix = os.path.splitext(self.filename)
        if trainer.world_size > 1:
            stem = f"{stem}.rank{trainer.global_rank}"
        path = _free_path(trainer, folder, stem, suffix)
        keyed_by_file = getattr(trainer.datamodule, "predict_names", None) is not None
        header = ["file"] if keyed_by_file else ["index", "label"]
        header += ["predicted", "probability", *(f"p_{c}" for c in pl_module.class_names)]
        _write_csv(path, header, self.rows, self.digits)
        _say(f"predictions: {path} ({len(self.rows)} rows)")


def run_folder(trainer) -> Path:
    """The folder this call writes into (the checkpoint's run, or a new run folder)."""
    return Path(trainer.log_dir or trainer.default_root_dir)  # every rank asks: collective


def _free_path(trainer, folder: Path, stem: str, suffix: str) -> Path:
    """The n the CLI's config saver took for this call (``config_predict-<n>.yaml``), else
    the first free n: ``predictions.csv``, ``predictions-2.csv``, ..."""
    saver = next((cb for cb in trainer.callbacks if isinstance(cb, RunConfigSaver)), None)
    n = getattr(saver, "suffix_n", None)
    if n is None or numbered(folder, stem, suffix, n).exists():
        folder.mkdir(parents=True, exist_ok=True)
        n = claim_numbered(lambda k: [numbered(folder, stem, suffix, k)])
    return numbered(folder, stem, suffix, n)


@rank_zero_only
def _say(line: str) -> None:
    print(line, flush=True)


def _class(classes: list[str], labels: list[int] | None, i: int) -> str:
    if labels is None or labels[i] < 0:
        return ""
    return classes[labels[i]]


def _write_csv(path: Path, header: list[str], rows: list[list], digits: int) -> None:
    partial = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                writer.writerow([round(v, digits) if isinstance(v, float) else v for v in row])
        partial.replace(path)  # readers never see a half-written file
    except OSError as err:
        with suppress(OSError):
            partial.unlink(missing_ok=True)
        raise UserError(f"could not write {path} ({err.strerror}); pass "
                        "--trainer.default_root_dir <a writable folder with space>") from None

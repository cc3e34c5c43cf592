"""Where a run's files go: one ``lightning_logs/version_N/`` holds a run's whole story.

``fit`` starts a new ``version_N``. ``test`` and ``predict`` of a checkpoint that lives in
``<root>/lightning_logs/version_N/checkpoints/`` write into that same ``version_N``, and a
resumed ``fit`` continues there, so the curves run on. ``validate`` writes into
``version_N/validate/``: it logs ``val/...`` at the checkpoint's step, and in the run's own
folder TensorBoard would treat that as a restart and drop the later part of the training
curve (its purge of out-of-order steps).
"""

import datetime
import os
import re
from pathlib import Path

import yaml
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger

from cifar_moe.atomic_files import atomic_write_text

LAUNCH_FILE = "launch.yaml"
"""Written beside ``config.yaml`` by ``fit``: the folder the run was started from."""

_VERSION = re.compile(r"version_\d+")


def run_dir_of(ckpt_path: str | os.PathLike | None) -> Path | None:
    """The ``version_N`` folder a checkpoint was saved in, or None if it is not in one."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return None  # also Lightning's "best" / "last" shorthands
    folder = Path(ckpt_path).resolve().parent
    if folder.name == "checkpoints" and _VERSION.fullmatch(folder.parent.name):
        return folder.parent
    return None


def run_logger(subcommand: str, default_root_dir: str | None, ckpt_path) -> TensorBoardLogger:
    """The TensorBoard logger a subcommand writes with (see the module docstring).

    ``default_hp_metric=False``: Lightning's placeholder ``hp_metric = -1`` is never written;
    :class:`cifar_moe.training.run_summary.RunSummary` gives the HParams tab real metrics.
    """
    run = run_dir_of(ckpt_path)
    if run is None:
        root = default_root_dir or os.getcwd()
        return TensorBoardLogger(save_dir=root, name="lightning_logs", default_hp_metric=False)
    sub = "validate" if subcommand == "validate" else ""
    # log_dir = save_dir / name / version; a str version is used as the folder name as is.
    return TensorBoardLogger(save_dir=run.parent.parent, name=run.parent.name,
                             version=os.path.join(run.name, sub) if sub else run.name,
                             default_hp_metric=False)


def read_launch(run_dir: str | os.PathLike) -> dict:
    """A run's launch record (``cwd``, ``started``); empty for runs made before it existed."""
    path = Path(run_dir) / LAUNCH_FILE
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


class RunConfigSaver(SaveConfigCallback):
    """Saves the config per stage, and for ``fit`` the folder the run was started from.

    ``fit`` writes ``config.yaml``; ``test``/``validate``/``predict`` write
    ``config_<stage>.yaml``, so evaluating a run never replaces the config that trained it.
    ``launch.yaml`` records the working directory, against which the run's relative paths
    (``data.data_dir``) resolve.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        stage = getattr(stage, "value", stage)  # Lightning passes a TrainerFn enum
        if stage != "fit":
            self.config_filename = f"config_{stage}.yaml"
        # log_dir is a collective call under DDP: every rank asks once, here; save_config
        # runs on rank 0 only and must not ask again.
        self.run_dir = trainer.log_dir
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        if getattr(stage, "value", stage) != "fit":
            return
        record = {"cwd": os.getcwd(),
                  "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        atomic_write_text(Path(self.run_dir, LAUNCH_FILE), yaml.safe_dump(record, sort_keys=False))

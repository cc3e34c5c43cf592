"""The CLI's checks of one call against its data, checkpoint and run folder, before anything
is written: the data-folder variable, ``--ckpt_path`` (aliases, URLs, the network, changed
settings), the new run's name, and the one-line messages for a full or read-only disk.
"""

import errno
import inspect
import math
import re
import sys
import typing

from lightning import Trainer
from lightning.pytorch.callbacks import ProgressBar

from cifar_moe.core.cli_args import sets
from cifar_moe.core.errors import UserError
from cifar_moe.core.private_api import epoch_from_one_bar
from cifar_moe.data.download import env_data_dir
from cifar_moe.runs.folder import run_group, seed_label
from cifar_moe.training import faults as ckpt

SPEED_SWITCHES = ("channels_last", "compile")


def with_epoch_bar(trainer_config) -> list | None:
    """The configured callbacks plus a progress bar counting epochs from 1, like everything
    else a user reads; unchanged when the bar is off or the config names its own."""
    callbacks = trainer_config.callbacks
    callbacks = [] if callbacks is None else list(
        callbacks if isinstance(callbacks, list) else [callbacks])
    if trainer_config.enable_progress_bar is False or any(
            isinstance(c, ProgressBar) for c in callbacks):
        return trainer_config.callbacks
    bar = epoch_from_one_bar()
    return trainer_config.callbacks if bar is None else [*callbacks, bar]


def apply_data_env(config, argv) -> None:
    """``$CIFAR_MOE_DATA`` replaces the configs' ``data.data_dir``; a ``--data.data_dir`` or a
    whole ``--data`` section on the command line still wins (it is the most explicit), in
    either form the parser takes (``--data=FILE`` or ``--data FILE``)."""
    value = env_data_dir()
    args = argv if isinstance(argv, list) else []
    given = sets(args, "data.data_dir") or sets(args, "data")
    if value and not given and config.get("data") is not None:
        config.data.data_dir = value


def checked_checkpoint(config, subcommand: str | None) -> dict | None:
    """``--ckpt_path`` read once and checked (one line per problem); None without a file.

    A resume that changes a model or data setting is refused with the differences: the run
    would claim settings it did not train with. An evaluation uses the checkpoint's own model
    settings, and says so when the command line gave others."""
    ckpt_path = config.get("ckpt_path")
    if not ckpt_path:
        return None
    checkpoint = config.get("checkpoint")
    ckpt.check_ckpt_alias(str(ckpt_path), subcommand or "fit",
                          checkpoint.get("dirpath") if checkpoint is not None else None)
    saved = ckpt.read_checkpoint(str(ckpt_path))
    if saved is None:
        return None
    net = config.model.net
    ckpt.check_same_network(saved, net.as_dict() if hasattr(net, "as_dict") else None, ckpt_path)
    model, data = ckpt.settings_differences(saved, config, subcommand or "fit")
    changed = "; ".join(filter(None, (model, data)))
    if subcommand in (None, "fit") and changed:
        raise UserError(f"ckpt_path {ckpt_path}: a resume continues its run, but this command "
                        f"changes the run's settings ({changed}); resume with the settings it "
                        "was started with (its run folder's config.yaml), or start a new fit")
    if data:
        raise UserError(f"ckpt_path {ckpt_path} was trained with another validation split "
                        f"({data}), so {subcommand} would score images it trained on; use the "
                        "run's own config.yaml")
    if model:
        print(f"note: {subcommand} uses the checkpoint's own model settings, which it was "
              f"trained with, not the command line's ({model})", file=sys.stderr)
    return saved


def speed_switches(config) -> dict:
    """The model's speed switches as given: LightningCLI replaces the model section by the
    checkpoint's, but these change no number, so the command line's value is put back."""
    model = config.get("model")
    return {k: model.get(k) for k in SPEED_SWITCHES} if model is not None else {}


def new_run_name(config) -> tuple[str, str]:
    """(group, seed label) of the folder a new run gets: ``lightning_logs/<group>/<label>-n``."""
    return (run_group(config.get("config") or [], config.get("name")),
            seed_label(config.get("seed_everything")))


def fit_log_interval(trainer, datamodule, config) -> None:
    """Log steps at least once an epoch: Lightning's default interval (50) is longer than the
    slice's epoch (36 batches) and warns about it every run. A set interval is kept."""
    if config.trainer.get("log_every_n_steps") is not None or "train" not in datamodule.datasets:
        return
    world = max(trainer.world_size, 1)
    batches = math.ceil(len(datamodule.datasets["train"]) / datamodule.hparams.batch_size / world)
    limit = trainer.limit_train_batches
    if isinstance(limit, int):
        batches = min(batches, limit)
    elif isinstance(limit, float) and limit < 1:
        batches = int(batches * limit)
    if trainer.log_every_n_steps and batches >= 1:
        trainer.log_every_n_steps = min(trainer.log_every_n_steps, batches)


def disk_problem(err: OSError) -> str | None:
    """A full or read-only disk during a run, as one line (None for other OS errors)."""
    full = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    if err.errno not in (*full, errno.EROFS, errno.EACCES, errno.EPERM):
        return None
    what = err.filename or "a file of the run"
    fix = ("free some space, or pass --trainer.default_root_dir on another disk"
           if err.errno in full else "pass --trainer.default_root_dir <a writable folder>")
    return (f"could not write {what} ({err.strerror or 'write failed'}); {fix}. Checkpoints "
            "written before are intact (each is saved whole or not at all)")


def precision_hint(gist: str) -> str | None:
    """``--trainer.precision 15``: jsonargparse names only the first type it tried."""
    if '"trainer.precision"' not in gist:
        return None
    hint = inspect.signature(Trainer.__init__).parameters["precision"].annotation
    choices = ["auto", *dict.fromkeys(str(v) for v in _literals(hint))]
    value = re.search(r"value: '?([^'\s,]+)", gist)
    shown = f" {value.group(1)}" if value else ""
    return f"trainer.precision{shown} is not a precision; use one of {', '.join(choices)}"


def _literals(hint) -> list:
    if typing.get_origin(hint) is typing.Literal:
        return list(typing.get_args(hint))
    return [v for arg in typing.get_args(hint) for v in _literals(arg)]

"""Settings checked before any training, so a mistake costs seconds, not a finished epoch."""

import re
import sys
import tempfile
from pathlib import Path

from cifar_moe.core.cli_args import arg_values
from cifar_moe.core.constants import SELECT_METRIC
from cifar_moe.core.errors import UserError
from cifar_moe.training.losses import check_loss_settings

MONITORABLE = (SELECT_METRIC, "val/loss", "train/acc", "train/loss", "train/mixing",
               "train/aux_loss")
"""Epoch metrics the module logs; ``val/acc_class/<name>`` is monitorable too."""
PER_CLASS_PREFIX = "val/acc_class/"


def preflight(config, subcommand: str | None, folders: bool = True) -> None:
    """One line per problem with a subcommand's settings, raised as :class:`UserError`.

    ``folders=False`` leaves out the output folders' check, which creates them.
    """
    check = check_writable if folders else lambda setting, folder: None
    check("trainer.default_root_dir", config.trainer.default_root_dir or ".")
    if subcommand in EVALUATING and not config.get("ckpt_path"):
        _check_untrained(subcommand, config.get("allow_untrained"))
    if subcommand != "fit":
        return
    model = config.model
    check_loss_settings(model.loss, model.label_smoothing, model.focal_gamma, model.focal_form,
                        bool(model.class_weights))
    max_epochs = config.trainer.max_epochs
    if max_epochs is not None and (max_epochs == 0 or max_epochs < -1):
        raise UserError(f"trainer.max_epochs is {max_epochs}, so nothing would train; use 1 "
                        "or more (-1 runs until stopped)")
    if model.get("mix_until_epoch") is not None and model.mix_until_epoch < 0:
        raise UserError(f"model.mix_until_epoch is {model.mix_until_epoch}, which would turn "
                        "mixing off; use the number of epochs to mix (0 = none), or null for all")
    check_schedule_settings(model.get("scheduler"))
    checkpoint = config.get("checkpoint")
    if checkpoint is not None:
        _check_monitor(checkpoint.get("monitor"))
        if checkpoint.get("dirpath"):
            check("checkpoint.dirpath", checkpoint.dirpath)
    for save_dir in _logger_save_dirs(config.trainer.get("logger")):
        check("trainer.logger save_dir", save_dir)


EVALUATING = ("test", "validate", "predict")


def _check_untrained(subcommand: str, allowed: bool) -> None:
    """Evaluating random weights is almost always a forgotten ``--ckpt_path``."""
    if not allowed:
        raise UserError(f"{subcommand} without --ckpt_path would use untrained (random) "
                        "weights; pass --ckpt_path <run>/checkpoints/best-*.ckpt (python -m "
                        "cifar_moe runs lists runs), or --allow_untrained true to do it on purpose")
    print(f"warning: {subcommand} of untrained (random) weights (--allow_untrained)",
          file=sys.stderr)


LR_LIKE = re.compile(r"(^|_)lr$|^lr_|^eta_min$|^initial_lr$")
POSITIVE = ("max_lr", "div_factor", "final_div_factor", "gamma", "factor", "T_max", "T_0")


def check_schedule_settings(scheduler) -> None:
    """LR-like scheduler settings below 0 (gradient ascent, or a cycle through negative
    rates) and factors at or below 0, which torch accepts silently. The optimizer's own lr
    is checked by the module; OneCycle replaces it by max_lr / div_factor."""
    init_args = getattr(scheduler, "init_args", None) or {}
    for key, value in (init_args.items() if hasattr(init_args, "items") else []):
        values = value if isinstance(value, (list, tuple)) else [value]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if key in POSITIVE and any(v <= 0 for v in numbers):
            raise UserError(f"model.scheduler.init_args.{key} is {value}; use a value above 0")
        if LR_LIKE.search(key) and any(v < 0 for v in numbers):
            raise UserError(f"model.scheduler.init_args.{key} is {value}, a negative learning "
                            "rate (the run would climb the loss); use 0 or more")


def _check_monitor(monitor: str | None) -> None:
    if monitor is None or monitor in MONITORABLE or monitor.startswith(PER_CLASS_PREFIX):
        return
    raise UserError(f"checkpoint.monitor is {monitor!r}, which the module never logs; use one "
                    f"of {', '.join(MONITORABLE)} or {PER_CLASS_PREFIX}<class name>")


def _logger_save_dirs(logger) -> list[str]:
    """``save_dir`` of every logger given as a class config (``class_path`` + ``init_args``)."""
    loggers = logger if isinstance(logger, list) else [logger]
    dirs = []
    for item in loggers:
        init_args = getattr(item, "init_args", None) or {}
        save_dir = init_args.get("save_dir") if hasattr(init_args, "get") else None
        if save_dir:
            dirs.append(str(save_dir))
    return dirs


def check_writable(setting: str, folder: str | Path) -> None:
    """Fail before training, not at the first checkpoint, if ``folder`` cannot be written."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UserError(
            f"{setting} {folder} is not writable ({err.strerror}); "
            f"pass a {setting} pointing at a writable folder"
        ) from None


def trainer_problem(err: Exception, trainer_config) -> UserError:
    """Lightning's rejection of accelerator/devices/strategy as one line naming the settings."""
    gist = " ".join(str(err).split())
    gist = gist.split(" Example choices")[0].split(" Find a complete list")[0][:200]
    chosen = ", ".join(f"{k}={trainer_config.get(k)!r}"
                       for k in ("accelerator", "devices", "strategy"))
    if not any(k in gist.lower() for k in ("accelerator", "device", "strategy", "gpu", "cuda",
                                           "mps", "tpu", "node")):
        return UserError(f"trainer: {gist}; fix that trainer setting")  # no device advice
    return UserError(f"trainer ({chosen}): {gist}; use --trainer.accelerator cpu|gpu|auto, "
                     "--trainer.devices 1 or more, --trainer.strategy auto|ddp")


def check_config_files(argv: list[str]) -> None:
    """An empty, broken or non-mapping ``--config`` file: one line naming it (the parser says
    only 'Unexpected config')."""
    for path in map(Path, arg_values(argv, "config")):
        if not path.is_file():
            continue  # the parser names a missing file itself
        content = _read_config(path)
        if content is None:
            raise UserError(f"config {path} is empty; put settings in it or drop --config")
        if not isinstance(content, dict):
            raise UserError(f"config {path} holds a {type(content).__name__}, not settings "
                            "(key: value lines); see configs/quickstart.yaml")


def _read_config(path: Path) -> object:
    """A ``--config`` file's content; unreadable or broken YAML is one line naming the file
    and the place (jsonargparse would report only that the file could not be parsed)."""
    import yaml

    try:
        return yaml.safe_load(path.read_text() or "")
    except UnicodeDecodeError:
        raise UserError(f"config {path} is not a text file; give a YAML file of settings "
                        "(see configs/quickstart.yaml)") from None
    except OSError as err:
        raise UserError(f"config {path} cannot be read ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise UserError(f"config {path} is not valid YAML{where} ({problem}); fix that line "
                        "or check the file's indentation") from None


def parser_error_line(message: str) -> str:
    """jsonargparse's multi-line error as one line that keeps the setting and the reason.

    For a union type (``model.scheduler``) the reason is buried under the type names; it is
    the first error that is not 'Expected a <class NoneType>'.
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "the arguments could not be parsed"
    reasons = [line[2:] for line in lines if line.startswith("- ") and "NoneType" not in line]
    if "Union subtypes" not in message or not reasons:
        return " ".join(lines)[:600]
    reason = reasons[0].split(" expects a function or a callable class: ")[-1]
    return f"{lines[0]} {reason.split(' Got value:')[0]}"

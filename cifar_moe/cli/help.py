"""A ``--help`` that fits on a few screens: one sentence per setting, and real choices only.

jsonargparse's default help lists every imported ``nn.Module`` (about 740 lines of torch.nn
and torchvision classes) as a possible ``--model.net``, repeats each setting in a 110-line
usage block, and prints Lightning's whole docstring for every Trainer flag. This formatter
keeps what a person needs to choose a value: the first sentence, the default, and for class
settings the known classes grouped by module. For ``--model.net`` it lists the project's
networks; any other ``nn.Module`` taking ``num_classes`` still works as a ``class_path``.
``--<setting>.help CLASS`` shows one class's arguments in full.
"""

import argparse
import re

from jsonargparse import ActionConfigFile, DefaultHelpFormatter
from torch import nn

from cifar_moe.core.private_api import argument_typehint, help_is_preexpanded
from cifar_moe.models.presets import available_presets, preset_spec

COMMON_FLAGS = {
    "trainer": (
        "accelerator", "strategy", "devices", "num_nodes", "precision", "logger", "callbacks",
        "fast_dev_run", "max_epochs", "min_epochs", "max_steps", "max_time",
        "limit_train_batches", "limit_val_batches", "limit_test_batches", "val_check_interval",
        "check_val_every_n_epoch", "num_sanity_val_steps", "log_every_n_steps",
        "enable_progress_bar", "accumulate_grad_batches", "gradient_clip_val",
        "deterministic", "benchmark", "default_root_dir",
    ),
    "checkpoint": ("dirpath", "filename", "monitor", "mode", "save_top_k", "save_last",
                   "every_n_epochs"),
}
"""Lightning's own flags listed with their help, per section; the others of these sections
are listed by name only (they work the same, as Lightning documents them)."""
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)}\]`'\"])\.\s+(?=[A-Z(`])")


def first_sentence(text: str) -> str:
    """The first sentence of a docstring-style help text, whitespace collapsed."""
    text = " ".join(text.split())
    return _SENTENCE_END.split(text, maxsplit=1)[0].rstrip(".") + "." if text else ""


def project_networks() -> list[str]:
    """The networks of the packaged presets (their ``class_path``), in preset-name order."""
    paths: list[str] = []
    for preset in available_presets():
        spec = preset_spec(preset) or {}
        path = spec.get("class_path") if isinstance(spec, dict) else None
        if path and path not in paths:
            paths.append(path)
    return paths


class CompactHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help formatter, shortened (see the module docstring)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 34,
                 width: int | None = None) -> None:
        # A wider name column puts most settings and their sentence on one line.
        super().__init__(prog, indent_increment, max_help_position, width)

    def add_arguments(self, actions) -> None:
        actions = list(actions)
        rare = [a for a in actions if _is_rare_lightning_flag(a)]
        super().add_arguments([a for a in actions if a not in rare])
        if rare:
            section = rare[0].dest.split(".")[0]
            names = ", ".join(a.dest.split(".", 1)[1] for a in rare if not a.dest.endswith(".help"))
            self.add_text(f"More {section} flags (see Lightning's docs): {names}.")

    def _format_usage(self, usage, actions, groups, prefix=None) -> str:
        actions = list(actions)
        # prefix "" is argparse composing a subcommand's prog; positionals: the top level.
        if prefix is not None or any(not a.option_strings for a in actions):
            return super()._format_usage(usage, actions, groups, prefix)
        return (f"usage: {self._prog} [-h] [-c CONFIG] [--print_config] "
                "[--<section>.<setting> VALUE ...]\n\n")

    def _format_action_invocation(self, action: argparse.Action) -> str:
        # "--trainer.max_epochs" rather than "--trainer.max_epochs MAX_EPOCHS"; choices stay.
        if (action.option_strings and action.nargs != 0 and not action.choices
                and not isinstance(action, ActionConfigFile)):
            return action.option_strings[0]
        return super()._format_action_invocation(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        if help_is_preexpanded(action):
            return action.help or ""
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            return super()._get_help_string(action)
        if isinstance(action, ActionConfigFile):
            return first_sentence(action.help or "")
        if action.dest.endswith(".help"):  # "Show the help for the given subclass of X and exit."
            base = (action.help or "").rstrip(". ").rsplit(" of ", 1)[-1].removesuffix(" and exit")
            return f"Show the arguments of one {base} class."
        notes = ["required"] if action.required else []
        if action.default is not argparse.SUPPRESS and (
            action.default is not None or not action.required
        ):
            notes.append("default: %(default)s")
        text = first_sentence(action.help or "")
        if notes:
            text += f" ({', '.join(notes)})"
        return text + self._known_classes(action)

    @staticmethod
    def _known_classes(action: argparse.Action) -> str:
        """For ``--model.net`` the project's networks instead of every imported nn.Module; other
        class settings (optimizer, scheduler, callbacks) list no classes: their modules
        (``torch.optim``, Lightning's callbacks) are the documentation, and
        ``--<setting>.help CLASS`` shows one class's arguments."""
        if argument_typehint(action) is not nn.Module:
            return ""
        return (f" Project networks: {', '.join(project_networks())} (network presets); "
                "any nn.Module class_path taking num_classes works.")


def _is_rare_lightning_flag(action: argparse.Action) -> bool:
    section, _, name = action.dest.partition(".")
    common = COMMON_FLAGS.get(section)
    if common is None or not name or not action.option_strings:
        return False  # also the section's own --trainer CONFIG
    return name.split(".")[0] not in common


_MOVED = {"optimizer": "model.optimizer", "lr_scheduler": "model.scheduler"}
_EXAMPLE = {"optimizer": "torch.optim.Adam", "lr_scheduler": "torch.optim.lr_scheduler.StepLR"}


def moved_setting_hint(message: str) -> str | None:
    """For Lightning's own ``--optimizer``/``--lr_scheduler`` (switched off here, so a recipe has
    one optimizer setting), on the command line or as a config key: the one-line error naming
    the setting to use instead; None for any other error."""
    flag = re.search(r"(?<![\w.])--(optimizer|lr_scheduler)\b", message)
    key = re.search(r"'(optimizer|lr_scheduler)[.']", message)
    if not (flag or key):
        return None
    name = (flag or key).group(1)
    target = _MOVED[name]
    where = f"--{name}" if flag else f"config key {name}"
    return (f"{where}: not a setting of this CLI; use --{target} "
            f"(e.g. --{target} {_EXAMPLE[name]} --{target}.init_args.lr 0.001), "
            f"or {target}: in YAML as the recipes in configs/ do")

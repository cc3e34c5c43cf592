"""The one entry point, ``cli_main(args=None)``: for ``python -m cifar_moe``, tests, notebooks."""

import sys
import warnings
from typing import NoReturn

import torch
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from cifar_moe.cli_help import CompactHelpFormatter, moved_setting_hint
from cifar_moe.data.augment_settings import flat_setting_hint
from cifar_moe.data.datamodule import CIFAR10DataModule
from cifar_moe.errors import UserError
from cifar_moe.routing.callbacks import RoutingAnalytics, TemperatureSchedule
from cifar_moe.run_folder import RunConfigSaver, run_logger
from cifar_moe.selection import BEST_PREFIX, SELECT_METRIC
from cifar_moe.training import auto_settings
from cifar_moe.training import checkpointing as ckpt
from cifar_moe.training.callbacks import PerClassMetrics
from cifar_moe.training.module import LitClassifier
from cifar_moe.training.prediction_writer import PredictionCSVWriter
from cifar_moe.training.run_summary import RunSummary

ATOMIC_IO = "cifar_moe.training.checkpointing.AtomicCheckpointIO"


class CifarMoeCLI(LightningCLI):
    """LightningCLI with the dataset facts linked into the model and the always-on callbacks."""

    def add_arguments_to_parser(self, parser) -> None:
        # Dataset facts are read from the data module, never typed in a config.
        parser.link_arguments(
            "data.num_classes", "model.net.init_args.num_classes", apply_on="instantiate"
        )
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(ckpt.EpochCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": SELECT_METRIC,
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": BEST_PREFIX + "{epoch:03d}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(PerClassMetrics, "per_class")
        parser.add_lightning_class_args(RoutingAnalytics, "routing")
        parser.add_lightning_class_args(TemperatureSchedule, "tau_schedule")
        parser.add_lightning_class_args(ckpt.InterruptCheckpoint, "interrupt")
        parser.add_lightning_class_args(PredictionCSVWriter, "predictions")
        parser.add_lightning_class_args(RunSummary, "summary")
        auto_settings.accept_auto_precision(parser)

    def parse_arguments(self, parser, args) -> None:
        argv = sys.argv[1:] if args is None else args
        if isinstance(argv, list) and any(str(a).startswith("--print_config") for a in argv):
            _print_auto_comment(parser, [a for a in argv if not str(a).startswith("--print_c")])
        super().parse_arguments(parser, args)
        # Before LightningCLI reads the file's hyperparameters; its weights are kept for the
        # check against the built network, so the file is read once here.
        self.saved_weights = _check_ckpt_path(self.config)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        ckpt.preflight(config, self.subcommand)
        self.auto_facts = auto_settings.facts_for_accelerator(
            config.trainer.accelerator, config.trainer.devices, config.trainer.num_nodes)
        self.auto_values = auto_settings.config_values(config)
        auto_settings.say(auto_settings.summary_line(self.auto_values, self.auto_facts))

    def _read_data_first(self) -> None:
        # The Trainer creates the run folder before it calls the data module's setup, and
        # loads --ckpt_path only after that: both are checked here, before anything is written.
        self.datamodule.prepare_and_setup(self.subcommand)
        ckpt.check_weights_fit(self.model, getattr(self, "saved_weights", None),
                               self.config[self.subcommand].get("ckpt_path"))

    before_fit = before_validate = before_test = before_predict = _read_data_first

    def instantiate_trainer(self, **kwargs):
        # 'auto' is no Lightning precision: the trainer gets the settled value, while the
        # saved config.yaml keeps 'auto' (as it does for the other three settings).
        precision = self.auto_values["precision"]
        kwargs.setdefault("precision", auto_settings.settle(precision, "precision",
                                                            self.auto_facts))
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.trainer.logger in (None, True):  # Lightning's default, TensorBoard
            # test/predict/resumed fit of a version_N checkpoint write into that version_N
            kwargs.setdefault("logger", run_logger(self.subcommand or "fit",
                                                   config.trainer.default_root_dir,
                                                   config.get("ckpt_path")))
        try:
            return super().instantiate_trainer(**kwargs)
        except UserError:
            raise
        except (MisconfigurationException, ValueError, TypeError, ImportError) as err:
            config = self.config[self.subcommand] if self.subcommand else self.config
            raise ckpt.trainer_problem(err, config.trainer) from None


def cli_main(args: list[str] | None = None, run: bool = True) -> CifarMoeCLI:
    """Run the CLI (``args=None`` reads ``sys.argv``); a :class:`UserError` becomes one line.

    Returns the CLI object, whose ``trainer``, ``model`` and ``datamodule`` a notebook or
    test can inspect after the run.
    """
    # Subnormal floats appear in weights and gradients after a few SGD steps and make CPU
    # convolutions up to 5x slower (seen with the seed B network); flushing them to zero
    # changes no result that matters. A no-op on GPUs.
    torch.set_flush_denormal(True)
    try:
        return _build(CifarMoeCLI, args, run)
    except (UserError, ArgumentError) as err:
        _fail(_one_line(err))


def argument_problem(args: list[str]) -> str | None:
    """The one line with which ``cli_main(args)`` would refuse its arguments (a mistyped
    setting or value, a setting its checks reject); None when they pass. Only parses and
    checks: no folder, seed, network, data or trainer. Problems found later (a missing
    data_dir, an absent GPU) still stop the run itself."""
    shown = [a for a in args if a in ("-h", "--help") or str(a).startswith("--print_config")]
    if shown:  # they print and exit instead of running
        return f"{shown[0]} would print and exit instead of running; remove it"
    try:
        with warnings.catch_warnings():  # the caller's own sys.argv is not a mistake here
            warnings.filterwarnings("ignore", "LightningCLI's args parameter is intended")
            _build(_ParseOnlyCLI, args, run=True)
    except _Parsed:
        return None
    except (UserError, ArgumentError) as err:
        return _one_line(err)
    return None


def _build(cli_class: type[CifarMoeCLI], args: list[str] | None, run: bool) -> CifarMoeCLI:
    ckpt.check_config_files(sys.argv[1:] if args is None else list(args))
    with ckpt.interrupt_exit_codes():
        return cli_class(
            LitClassifier,
            CIFAR10DataModule,
            args=args,
            run=run,
            save_config_callback=RunConfigSaver,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False, "formatter_class": CompactHelpFormatter},
            # One optimizer setting, model.optimizer: no Lightning --optimizer beside it.
            auto_configure_optimizers=False,
            # Atomic saves whatever the filesystem layout (see checkpointing.atomic_io).
            trainer_defaults={"plugins": {"class_path": ATOMIC_IO}},
        )


def _one_line(err: UserError | ArgumentError) -> str:
    if isinstance(err, UserError):
        return str(err)
    # jsonargparse explains over several lines (and a usage block); keep the gist.
    gist = " ".join(str(err).split())
    hint = moved_setting_hint(gist) or flat_setting_hint(gist)
    return hint or f"{ckpt.parser_error_line(str(err))} (--help lists every setting)"


class _Parsed(Exception):
    """Raised by :class:`_ParseOnlyCLI` once the arguments parsed and passed the checks."""


class _ParseOnlyCLI(CifarMoeCLI):
    """The CLI up to the end of its checks of the settings: no folder, seed, network, data
    or run."""

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        ckpt.preflight(config, subcommand, folders=False)
        raise _Parsed


def main() -> None:
    """Console-script entry point (``cifar-moe``): exit status 0 on success, not the CLI object."""
    cli_main()


def _check_ckpt_path(config) -> dict | None:
    """A bad ``--ckpt_path`` or one of another network: one line, before anything is written.

    Returns the checkpoint's ``state_dict`` (None without a local checkpoint file).
    """
    config = config.get(config.get("subcommand") or "", config)
    ckpt_path = config.get("ckpt_path") if hasattr(config, "get") else None
    if not ckpt_path:
        return None
    saved = ckpt.read_checkpoint(str(ckpt_path))
    if saved is None:
        return None
    net = config.model.net
    ckpt.check_same_network(saved, net.as_dict() if hasattr(net, "as_dict") else None, ckpt_path)
    return saved.get("state_dict", {})


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _print_auto_comment(parser, argv: list[str]) -> None:
    """With --print_config: what 'auto' resolves to, as a YAML comment above the config."""
    try:
        config = parser.parse_args(argv)
    except (ArgumentError, SystemExit):
        return  # the real parse reports the problem
    config = config[config.subcommand] if config.get("subcommand") else config
    facts = auto_settings.facts_for_accelerator(
        config.trainer.accelerator, config.trainer.devices, config.trainer.num_nodes)
    line = auto_settings.summary_line(auto_settings.config_values(config), facts)
    print(f"# {line}")

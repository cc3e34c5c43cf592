"""The one entry point, ``cli_main(args=None)``: for ``python -m cifar_moe``, tests, notebooks."""

import sys
import warnings
from typing import NoReturn

import torch
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from cifar_moe.analysis.per_class import PerClassMetrics
from cifar_moe.analysis.routing.analytics import RoutingAnalytics
from cifar_moe.cli import run_checks
from cifar_moe.cli.help import CompactHelpFormatter, moved_setting_hint
from cifar_moe.cli.loggers import add_final_metrics, with_run_logger
from cifar_moe.core import hardware
from cifar_moe.core.constants import BEST_PREFIX, SELECT_METRIC
from cifar_moe.core.errors import UserError
from cifar_moe.data.augment_settings import flat_setting_hint
from cifar_moe.data.datamodule import CIFAR10DataModule
from cifar_moe.deploy.prediction_writer import PredictionCSVWriter
from cifar_moe.runs.folder import RunConfigSaver, check_run_writable, run_logger
from cifar_moe.training import auto_settings
from cifar_moe.training import faults as ckpt
from cifar_moe.training.module import LitClassifier
from cifar_moe.training.run_summary import RunSummary
from cifar_moe.training.temperature import TemperatureSchedule

ATOMIC_IO = "cifar_moe.training.faults.AtomicCheckpointIO"


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
        # A new run's folder is lightning_logs/<name>/seed<S>-<n>; by default <name> is
        # made of the --config files' names (runs/folder.py).
        parser.add_argument("--name", type=str | None, default=None,
                            help="Folder group of a new run.")
        parser.add_argument("--allow_untrained", type=bool, default=False,
                            help="Evaluate without --ckpt_path.")

    def parse_arguments(self, parser, args) -> None:
        argv = sys.argv[1:] if args is None else args
        if isinstance(argv, list) and any(str(a).startswith("--print_config") for a in argv):
            _print_auto_comment(parser, [a for a in argv if not str(a).startswith("--print_c")])
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        run_checks.apply_data_env(config, argv)
        # Before LightningCLI replaces the model settings by the file's hyperparameters; its
        # weights are kept for the check against the built network, so it is read once here.
        saved = run_checks.checked_checkpoint(config, subcommand)
        self.saved_weights = saved.get("state_dict", {}) if saved else None
        self.given_switches = run_checks.speed_switches(config)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        for key, value in self.given_switches.items():  # the command line's, not the ckpt's
            config.model[key] = value
        ckpt.preflight(config, self.subcommand)
        check_run_writable(self.subcommand or "fit", config.trainer.default_root_dir,
                           config.get("ckpt_path"))
        self.run_name = run_checks.new_run_name(config)
        self.auto_facts = hardware.facts_for_accelerator(
            config.trainer.accelerator, config.trainer.devices, config.trainer.num_nodes)
        self.auto_values = auto_settings.config_values(config)
        auto_settings.say(hardware.summary_line(self.auto_values, self.auto_facts))

    def _read_data_first(self) -> None:
        # The Trainer creates the run folder before it calls the data module's setup, and
        # loads --ckpt_path only after that: both are checked here, before anything is written.
        self.datamodule.prepare_and_setup(self.subcommand)
        config = self.config[self.subcommand]
        ckpt.check_weights_fit(self.model, getattr(self, "saved_weights", None),
                               config.get("ckpt_path"))
        if self.subcommand == "fit":
            run_checks.fit_log_interval(self.trainer, self.datamodule, config)

    before_fit = before_validate = before_test = before_predict = _read_data_first

    def instantiate_trainer(self, **kwargs):
        # 'auto' is no Lightning precision: the trainer gets the settled value, while the
        # saved config.yaml keeps 'auto' (as it does for the other three settings).
        precision = self.auto_values["precision"]
        kwargs.setdefault("precision", hardware.settle(precision, "precision",
                                                            self.auto_facts))
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer_config = (self.config_init[self.subcommand] if self.subcommand
                          else self.config_init).trainer
        configured = trainer_config.logger
        kwargs.setdefault("callbacks", run_checks.with_epoch_bar(trainer_config))
        # test/predict/resumed fit of a run's checkpoint write into that run folder; an
        # MLflow or CSV logger goes beside that TensorBoard run logger (cli/loggers.py)
        kwargs.setdefault("logger", with_run_logger(configured, lambda: run_logger(
            self.subcommand or "fit", config.trainer.default_root_dir, config.get("ckpt_path"),
            self.run_name)))
        try:
            return add_final_metrics(super().instantiate_trainer(**kwargs))
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
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["runs"]:  # not a Lightning subcommand: the run listing
        from cifar_moe.runs.listing import runs_command

        try:
            runs_command(argv[1:])
        except UserError as err:
            _fail(str(err))
        return None
    try:
        return _build(CifarMoeCLI, args, run)
    except (UserError, ArgumentError) as err:
        _fail(_one_line(err))
    except OSError as err:  # a full or read-only disk mid-run
        problem = run_checks.disk_problem(err)
        if problem is None:
            raise
        _fail(problem)


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
    hint = (moved_setting_hint(gist) or flat_setting_hint(gist)
            or run_checks.precision_hint(gist))
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
    facts = hardware.facts_for_accelerator(
        config.trainer.accelerator, config.trainer.devices, config.trainer.num_nodes)
    line = hardware.summary_line(auto_settings.config_values(config), facts)
    print(f"# {line}")

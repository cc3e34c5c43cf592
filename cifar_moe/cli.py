"""The one entry point, ``cli_main(args=None)``: for ``python -m cifar_moe``, tests, notebooks."""

import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import torch
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from cifar_moe.data.datamodule import CIFAR10DataModule
from cifar_moe.errors import UserError
from cifar_moe.training.callbacks import InterruptCheckpoint, PerClassMetrics
from cifar_moe.training.module import LitClassifier
from cifar_moe.training.routing_callbacks import RoutingAnalytics, TemperatureSchedule


class CifarMoeCLI(LightningCLI):
    """LightningCLI with the dataset facts linked into the model and the always-on callbacks."""

    def add_arguments_to_parser(self, parser) -> None:
        # Dataset facts are read from the data module, never typed in a config.
        parser.link_arguments(
            "data.num_classes", "model.net.init_args.num_classes", apply_on="instantiate"
        )
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch:03d}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(PerClassMetrics, "per_class")
        parser.add_lightning_class_args(RoutingAnalytics, "routing")
        parser.add_lightning_class_args(TemperatureSchedule, "tau_schedule")
        parser.add_lightning_class_args(InterruptCheckpoint, "interrupt")

    def _parse_ckpt_path(self) -> None:
        """Refuse a checkpoint of another network instead of silently adopting it.

        (LightningCLI replaces the model config by the checkpoint's hyperparameters.)
        """
        config = self.config.get(self.config.get("subcommand") or "", self.config)
        ckpt_path = config.get("ckpt_path") if hasattr(config, "get") else None
        if ckpt_path and Path(ckpt_path).is_file():
            saved = torch.load(ckpt_path, weights_only=True, map_location="cpu")
            saved_net = saved.get("hyper_parameters", {}).get("net")
            wanted = config.model.net.as_dict() if hasattr(config.model.net, "as_dict") else None
            if isinstance(saved_net, dict) and wanted and _net_key(saved_net) != _net_key(wanted):
                raise UserError(
                    f"ckpt_path {ckpt_path} holds a {_net_key(saved_net)} network but the config "
                    f"asks for {_net_key(wanted)}; use the config.yaml of the run that wrote it"
                )
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        _check_writable(config.trainer.default_root_dir or ".")


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
        return CifarMoeCLI(
            LitClassifier,
            CIFAR10DataModule,
            args=args,
            run=run,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False},
        )
    except UserError as err:
        _fail(str(err))
    except ArgumentError as err:
        # jsonargparse explains over several lines (and a usage block); keep the gist.
        gist = " ".join(str(err).split())
        _fail(f"{gist[:400]} (--help lists every setting)")
    except RuntimeError as err:
        if "Error(s) in loading state_dict" not in str(err):
            raise
        _fail("ckpt_path holds weights of a different network than the configured one "
              f"({' '.join(str(err).split())[:240]}...); pass a checkpoint of this network")


def _net_key(spec: dict) -> str:
    """A network config as comparable text, without the linked num_classes."""
    args = {k: v for k, v in (spec.get("init_args") or {}).items() if k != "num_classes"}
    return f"{spec.get('class_path')}({', '.join(f'{k}={v}' for k, v in sorted(args.items()))})"


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _check_writable(folder: str) -> None:
    """Fail before training, not at the first checkpoint, if logs cannot be written."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UserError(
            f"trainer.default_root_dir {folder} is not writable ({err.strerror}); "
            "pass --trainer.default_root_dir pointing at a writable folder"
        ) from None

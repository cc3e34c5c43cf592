"""The one entry point, ``cli_main(args=None)``: for ``python -m cifar_moe``, tests, notebooks."""

import sys

import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from cifar_moe.data.datamodule import CIFAR10DataModule
from cifar_moe.errors import UserError
from cifar_moe.training.callbacks import PerClassMetrics
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
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None

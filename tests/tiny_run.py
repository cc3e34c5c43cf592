"""A few-second CLI fit of a tiny routed network, for tests that need a real run folder."""

from pathlib import Path

from cifar_moe.cli.main import cli_main
from cifar_moe.runs.listing import best_checkpoint

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

TINY_NET = [  # a few-thousand-parameter network: the recipe's block type and K
    "--model.net.init_args.stem_width=8",
    "--model.net.init_args.widths=[8, 16]",
    "--model.net.init_args.pool_after=[0, 1]",
]
TINY_ROUTED_NET = [*TINY_NET, "--model.net.init_args.num_experts=2"]


def tiny_args(root: Path, data_dir: Path, epochs: int = 1) -> list[str]:
    """quickstart.yaml shrunk: the tiny net, 3 training and 2 validation batches of 16."""
    return [
        "--config", str(CONFIGS / "quickstart.yaml"), *TINY_ROUTED_NET,
        f"--data.data_dir={data_dir}", "--data.val_size=40", "--data.num_workers=0",
        "--data.batch_size=16", f"--trainer.default_root_dir={root}",
        f"--trainer.max_epochs={epochs}", "--trainer.limit_train_batches=3",
        "--trainer.limit_val_batches=2", "--trainer.enable_progress_bar=false",
        "--trainer.accelerator=cpu",
    ]


def tiny_fit(root: Path, data_dir: Path, *extra: str, epochs: int = 1):
    """Run ``fit`` and return (cli, run folder, best checkpoint)."""
    cli = cli_main(["fit", *tiny_args(root, data_dir, epochs), *extra])
    run = Path(cli.trainer.log_dir)  # lightning_logs/quickstart/seed0-<n>
    return cli, run, best_checkpoint(run)

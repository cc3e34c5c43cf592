"""Where the benchmarks find the checkout's recipes and the real CIFAR-10 slice.

The library knows neither: recipes are checkout files, and the slice's place is this
machine's business, given by ``$CIFAR_MOE_DATA`` (the variable the CLI reads) or ``--data-dir``.
"""

from pathlib import Path

from cifar_moe.data.download import env_data_dir

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
"""The recipe YAML files of the checkout holding these benchmarks."""

DEFAULT_SLICE_DIR = env_data_dir() or str(
    CONFIG_DIR.parents[1] / "shared" / "data" / "cifar-10-mini")
"""data_dir of the real 10% slice: ``$CIFAR_MOE_DATA``, else the one beside the checkout."""

"""Where the benchmarks find the checkout's recipes and the real CIFAR-10 slice.

The library knows neither: recipes are checkout files, and the slice's place is this
machine's business, given by ``$CIFAR_MOE_SLICE_DIR`` or ``--data-dir``.
"""

import os
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
"""The recipe YAML files of the checkout holding these benchmarks."""

SLICE_ENV = "CIFAR_MOE_SLICE_DIR"
DEFAULT_SLICE_DIR = os.environ.get(SLICE_ENV) or str(
    CONFIG_DIR.parents[1] / "shared" / "data" / "cifar-10-mini")
"""data_dir of the real 10% slice: ``$CIFAR_MOE_SLICE_DIR``, else the one beside the checkout."""

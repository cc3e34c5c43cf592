"""Where things are in a source checkout: configs and the real CIFAR-10 slice beside it."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The checkout holding ``cifar_moe/`` (valid for an editable install, as the README uses)."""

CONFIG_DIR = REPO_ROOT / "configs"
"""Recipe and network-preset YAML files."""

REAL_SLICE_DIR = REPO_ROOT.parent / "shared" / "data" / "cifar-10-mini"
"""data_dir of the real 10% slice (5,085 train / 500 test images) that sits beside the checkout."""


def real_slice_available() -> bool:
    """Whether the real slice is readable here (CI and the dev machines have it)."""
    return (REAL_SLICE_DIR / "cifar-10-batches-py" / "test_batch").is_file()

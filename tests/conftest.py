"""Shared fixtures: a generated CIFAR folder (runs anywhere) and the real slice (CI has it)."""

from pathlib import Path

import pytest

from cifar_moe.core.constants import BATCH_FOLDER, TEST_BATCH
from cifar_moe.data.download import DATA_ENV, env_data_dir, resolve_data_dir
from cifar_moe.data.synthetic import write_synthetic_cifar

SLICE_ENV = DATA_ENV
"""The variable the CLI and notebooks read (CIFAR_MOE_DATA; the old CIFAR_MOE_SLICE_DIR is
read as a fallback), naming the real slice's data_dir where it is not beside the checkout."""

REAL_SLICE_DIR = resolve_data_dir(
    env_data_dir() or Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar-10-mini")
"""data_dir of the real 10% slice (5,085 train / 500 test images): ../shared/... by default."""


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory) -> Path:
    """A data_dir holding a tiny generated folder in the exact CIFAR-10 pickle layout."""
    root = tmp_path_factory.mktemp("synthetic_cifar")
    write_synthetic_cifar(root, train_per_batch=40, test_size=50, seed=0)
    return root


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """data_dir of the real slice; skipped where it is absent (a user's clone), never on CI."""
    if not (REAL_SLICE_DIR / BATCH_FOLDER / TEST_BATCH).is_file():
        pytest.skip(f"real CIFAR-10 slice not found at {REAL_SLICE_DIR} (set ${SLICE_ENV})")
    return REAL_SLICE_DIR


@pytest.fixture
def tiny_fit_args(synthetic_data_dir, tmp_path):
    """``make(epochs=1, root=tmp_path)``: CLI args for a seconds-long fit of the tiny routed
    network on the generated folder (``tiny_run.tiny_args``); add a subcommand in front."""
    from tiny_run import tiny_args

    def make(epochs: int = 1, root=None) -> list[str]:
        return tiny_args(root or tmp_path, synthetic_data_dir, epochs)

    return make

"""Shared fixtures: a generated CIFAR folder (runs anywhere) and the real slice (CI has it)."""

from pathlib import Path

import pytest

from cifar_moe.data.synthetic import write_synthetic_cifar
from cifar_moe.paths import REAL_SLICE_DIR, real_slice_available


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory) -> Path:
    """A data_dir holding a tiny generated folder in the exact CIFAR-10 pickle layout."""
    root = tmp_path_factory.mktemp("synthetic_cifar")
    write_synthetic_cifar(root, train_per_batch=40, test_size=50, seed=0)
    return root


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """data_dir of the real slice; skipped where it is absent (a user's clone), never on CI."""
    if not real_slice_available():
        pytest.skip(f"real CIFAR-10 slice not found at {REAL_SLICE_DIR}")
    return REAL_SLICE_DIR

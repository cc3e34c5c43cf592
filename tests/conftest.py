"""Shared fixtures: a generated CIFAR folder (runs anywhere) and the real slice (CI has it)."""

from pathlib import Path

import pytest

from cifar_moe.data.synthetic import write_synthetic_cifar

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_SLICE = REPO_ROOT.parent / "shared" / "data" / "cifar-10-mini"
"""data_dir of the real 10% slice; its images sit in ``cifar-10-batches-py/`` below it."""


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory) -> Path:
    """A data_dir holding a tiny generated folder in the exact CIFAR-10 pickle layout."""
    root = tmp_path_factory.mktemp("synthetic_cifar")
    write_synthetic_cifar(root, train_per_batch=40, test_size=50, seed=0)
    return root


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """data_dir of the real slice; skipped where it is absent (a user's clone), never on CI."""
    if not (REAL_SLICE / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.skip(f"real CIFAR-10 slice not found at {REAL_SLICE}")
    return REAL_SLICE

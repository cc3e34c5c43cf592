"""A tiny generated folder in the exact CIFAR-10 batch layout, for tests that run anywhere."""

import pickle
from pathlib import Path

import numpy as np

from cifar_moe.core.constants import (
    BATCH_FOLDER,
    CIFAR10_CLASSES,
    META_FILE,
    TEST_BATCH,
    TRAIN_BATCHES,
)


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise plus a per-class colour tint, so a tiny network has something to learn."""
    n = len(labels)
    tints = np.linspace(30, 225, len(CIFAR10_CLASSES))
    base = rng.integers(0, 120, size=(n, 3, 32, 32))  # (N, 3, 32, 32)
    base[:, 0] += tints[labels][:, None, None].astype(np.int64) // 2
    base[:, 2] += tints[::-1][labels][:, None, None].astype(np.int64) // 2
    return np.clip(base, 0, 255).astype(np.uint8).reshape(n, 3072)  # (N, 3072) channel-major


def _write(path: Path, obj: dict) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_synthetic_cifar(
    root: str | Path, train_per_batch: int = 40, test_size: int = 50, seed: int = 0
) -> Path:
    """Write ``root/cifar-10-batches-py/`` with 5 train batches, a test batch and the meta.

    Returns the batch folder. Labels cycle through the classes, so every class is present.

    Args:
        root: folder that receives ``cifar-10-batches-py/``.
        train_per_batch: images in each of the 5 training batches.
        test_size: images in the test batch.
        seed: seed of the random pixels.
    """
    folder = Path(root) / BATCH_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    num_classes = len(CIFAR10_CLASSES)
    meta = {
        "label_names": list(CIFAR10_CLASSES),
        "num_cases_per_batch": train_per_batch,
        "num_vis": 3072,
    }
    _write(folder / META_FILE, meta)
    sizes = {name: train_per_batch for name in TRAIN_BATCHES} | {TEST_BATCH: test_size}
    for index, (name, size) in enumerate(sizes.items()):
        labels = (np.arange(size) + index) % num_classes
        rng.shuffle(labels)
        batch = {
            "batch_label": f"synthetic {name}",
            "labels": labels.tolist(),
            "data": _images(labels, rng),
        }
        _write(folder / name, batch)
    return folder

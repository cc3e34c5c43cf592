"""Dataset facts for CIFAR-10. Everything else that needs them imports them from here."""

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""Class names in label order, as in the original ``batches.meta``."""

CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
"""Per-channel RGB mean of the 50,000 training images, on the [0, 1] scale."""

CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
"""Per-channel RGB standard deviation of the 50,000 training images, on the [0, 1] scale."""

IMAGE_SHAPE: tuple[int, int, int] = (3, 32, 32)
"""(C, H, W) of one CIFAR image."""

BATCH_FOLDER = "cifar-10-batches-py"
"""Name of the extracted folder inside ``data_dir``."""

TARBALL = "cifar-10-python.tar.gz"
"""The archive the dataset ships as; it holds ``BATCH_FOLDER``."""

TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"

# How a run's best checkpoint is chosen and named: read by fit, study and export.
SELECT_METRIC = "val/acc"
"""Epoch metric the best checkpoint is chosen on; higher is better."""

BEST_PREFIX = "best-"
"""File-name start of a best checkpoint (``best-029.ckpt``); ``last.ckpt`` is the other kind."""

"""Reading the CIFAR-10 Python batch layout (``batches.meta``, ``data_batch_1..5``, ``test_batch``).

No checksums are checked: a user may point ``data_dir`` at a smaller folder of the same
layout. Every way a file can be wrong ends in one :class:`UserError` line naming the file.
"""

import pickle
from pathlib import Path

import numpy as np
import torch

from cifar_moe.core.constants import (
    CIFAR10_CLASSES,
    IMAGE_SHAPE,
    META_FILE,
    TARBALL,
    TEST_BATCH,
    TRAIN_BATCHES,
)
from cifar_moe.core.errors import UserError

ROW_LENGTH = int(np.prod(IMAGE_SHAPE))


def _fix(path: Path) -> str:
    """What to do about a bad file: the data_dir is two levels up from it."""
    data_dir = path.resolve().parent.parent
    return (
        f"re-extract {TARBALL} into {data_dir}, "
        "or point data.data_dir at a good copy"
    )


def _one_line(err: BaseException) -> str:
    # Exception texts may span lines or quote whole objects; the CLI prints one line.
    text = f"{type(err).__name__}: {err}".splitlines()[0] if str(err) else type(err).__name__
    return text[:120]


def _load_pickle(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path} is missing; {_fix(path)}")
    try:
        with open(path, "rb") as fh:
            # latin1 is how Python 3 must read the Python 2 pickles of the original archive.
            obj = pickle.load(fh, encoding="latin1")
    except Exception as err:  # any unpickling failure means the same thing to the user
        raise UserError(
            f"{path} is truncated or not a CIFAR-10 batch ({_one_line(err)}); {_fix(path)}"
        ) from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a CIFAR-10 dict; {_fix(path)}")
    # Files re-pickled with encoding="bytes" carry bytes keys (b"data").
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_class_names(folder: str | Path) -> list[str]:
    """Class names in label order from ``folder/batches.meta``."""
    path = Path(folder) / META_FILE
    names = _load_pickle(path).get("label_names")
    if not isinstance(names, list | tuple) or not names:
        raise UserError(f"{path} has no 'label_names' list; {_fix(path)}")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # per-class metrics and class_weights are keyed by name: they would merge
        raise UserError(f"{path} names a class more than once ({', '.join(twice)}); each "
                        f"label needs its own name; {_fix(path)}")
    return names


def _labels(path: Path, raw, count: int, num_classes: int) -> np.ndarray:
    try:
        given = np.asarray(raw)
        labels = given.astype(np.int64)
    except (TypeError, ValueError) as err:
        raise UserError(
            f"{path}: 'labels' are not integers ({_one_line(err)}); {_fix(path)}"
        ) from None
    if given.size and given.dtype.kind not in "iu":
        # Casting would truncate 2.7 to 2 (and True to 1) without a word: refuse them.
        raise UserError(f"{path}: 'labels' are {given.dtype}, not integers; {_fix(path)}")
    if labels.ndim != 1 or len(labels) != count:
        raise UserError(f"{path}: {labels.size} labels for {count} images; {_fix(path)}")
    if count and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"{path}: labels range {labels.min()}..{labels.max()}, "
            f"expected 0..{num_classes - 1}; {_fix(path)}"
        )
    return labels


def read_batch(
    path: str | Path, num_classes: int = len(CIFAR10_CLASSES)
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file -> uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    path = Path(path)
    batch = _load_pickle(path)
    missing = [key for key in ("data", "labels") if key not in batch]
    if missing:
        raise UserError(f"{path} lacks {' and '.join(map(repr, missing))}; {_fix(path)}")
    try:
        data = np.asarray(batch["data"])
    except ValueError as err:  # ragged nested lists
        reason = _one_line(err)
        raise UserError(f"{path}: 'data' is not an array ({reason}); {_fix(path)}") from None
    if data.ndim != 2 or data.shape[1] != ROW_LENGTH or data.dtype != np.uint8:
        raise UserError(
            f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, {ROW_LENGTH}); "
            f"{_fix(path)}"
        )
    labels = _labels(path, batch["labels"], len(data), num_classes)
    # Rows are channel-major (1024 R, 1024 G, 1024 B, each row-major 32x32).
    images = data.reshape(-1, *IMAGE_SHAPE)  # (N, 3072) -> (N, 3, 32, 32)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


def read_split(folder: str | Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All five training batches concatenated, or the test batch, of a batch folder.

    Returns uint8 images (N, 3, 32, 32) and int64 labels (N,); the label range is checked
    against the number of names in ``batches.meta``.
    """
    folder = Path(folder)
    num_classes = len(read_class_names(folder))
    names = TRAIN_BATCHES if train else (TEST_BATCH,)
    parts = [read_batch(folder / name, num_classes) for name in names]
    images = torch.cat([images for images, _ in parts])  # (N_total, 3, 32, 32)
    return images, torch.cat([labels for _, labels in parts])

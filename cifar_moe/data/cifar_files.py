"""Reading the CIFAR-10 Python batch layout (``batches.meta``, ``data_batch_1..5``, ``test_batch``).

No checksums are checked: a user may point ``data_dir`` at a smaller folder of the same
layout. Every way a file can be wrong ends in one :class:`UserError` line naming the file.
"""

import pickle
from pathlib import Path

import numpy as np
import torch

from cifar_moe.constants import IMAGE_SHAPE, META_FILE, TEST_BATCH, TRAIN_BATCHES
from cifar_moe.errors import UserError

ROW_LENGTH = int(np.prod(IMAGE_SHAPE))
FIX = "re-extract cifar-10-python.tar.gz there, or point data.data_dir at a good copy"


def _load_pickle(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path} is missing; {FIX}")
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh, encoding="latin1")
    except Exception as err:  # any unpickling failure means the same thing to the user
        raise UserError(
            f"{path} is truncated or not a CIFAR-10 batch ({type(err).__name__}); {FIX}"
        ) from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a CIFAR-10 batch dict; {FIX}")
    # Files re-pickled under Python 2 rules may carry bytes keys.
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_class_names(folder: str | Path) -> list[str]:
    """Class names in label order from ``batches.meta``."""
    path = Path(folder) / META_FILE
    names = _load_pickle(path).get("label_names")
    if not names:
        raise UserError(f"{path} has no 'label_names'; {FIX}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def read_batch(path: str | Path, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file -> uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    path = Path(path)
    batch = _load_pickle(path)
    if "data" not in batch or "labels" not in batch:
        raise UserError(f"{path} lacks 'data' or 'labels'; {FIX}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != ROW_LENGTH or data.dtype != np.uint8:
        raise UserError(
            f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, {ROW_LENGTH}); {FIX}"
        )
    if len(labels) != len(data):
        raise UserError(f"{path}: {len(labels)} labels for {len(data)} images; {FIX}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"{path}: labels range {labels.min()}..{labels.max()}, "
            f"expected 0..{num_classes - 1}; {FIX}"
        )
    images = torch.from_numpy(data.reshape(-1, *IMAGE_SHAPE).copy())  # (N, 3, 32, 32)
    return images, torch.from_numpy(labels)


def read_split(folder: str | Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All training batches (concatenated) or the test batch of a folder."""
    folder = Path(folder)
    num_classes = len(read_class_names(folder))
    names = TRAIN_BATCHES if train else (TEST_BATCH,)
    parts = [read_batch(folder / name, num_classes) for name in names]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

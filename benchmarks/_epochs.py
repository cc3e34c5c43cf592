"""Measured epochs for ``bench_suite.py --tiled R``: a tiled copy of the real slice, a
per-epoch timing callback, and one recipe's run through the real CLI ``fit`` path.

The child process (one fresh process per recipe, so peak memory is that recipe's) writes
its results to a JSON file; the parent reads the file, never the child's stdout.
"""

import json
import pickle
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _checkout import CONFIG_DIR
from _timing import device_name, forward_flops, mfu, peak_memory_mb, synthetic_train_rate
from lightning.pytorch.callbacks import Callback

from cifar_moe.cli.main import cli_main
from cifar_moe.core.constants import BATCH_FOLDER, META_FILE, TEST_BATCH, TRAIN_BATCHES
from cifar_moe.core.private_api import is_compiled
from cifar_moe.data.cifar_files import read_split

TRAIN_IMAGES = 50_000  # a full CIFAR-10 epoch; the rest of the tiled set is validation


def write_tiled(source_dir: str | Path, repeats: int, dest_dir: str | Path) -> int:
    """``dest_dir/cifar-10-batches-py``: the source's training images ``repeats`` times over
    the five batch files (timing only: the copies are identical); meta and test copied.
    Returns the number of training images written."""
    source, dest = Path(source_dir) / BATCH_FOLDER, Path(dest_dir) / BATCH_FOLDER
    dest.mkdir(parents=True, exist_ok=True)
    images, labels = read_split(source, train=True)  # (N, 3, 32, 32) uint8, (N,)
    rows = images.reshape(len(images), -1).numpy()  # (N, 3072): the file layout, CHW order
    rows, labels = np.tile(rows, (repeats, 1)), np.tile(labels.numpy(), repeats)
    for name, part in zip(TRAIN_BATCHES, np.array_split(np.arange(len(rows)), 5), strict=True):
        batch = {"batch_label": f"tiled {name}", "labels": labels[part].tolist(),
                 "data": rows[part]}
        with open(dest / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
    for name in (META_FILE, TEST_BATCH):
        shutil.copy(source / name, dest / name)
    return len(rows)


class EpochTimer(Callback):
    """Wall time of each training epoch (validation excluded) and of its validation pass,
    with the images trained on; rewrites ``out`` (JSON) after every epoch.

    Args:
        out: the JSON file to write.
    """

    def __init__(self, out: str) -> None:
        self.out, self.epochs, self._start, self._val_start = out, [], 0.0, 0.0
        self._images, self._val_s = 0, 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        self._start, self._images, self._val_s = time.perf_counter(), 0, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        labels = batch[1] if isinstance(batch, (list, tuple)) else batch
        self._images += len(labels)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        self._val_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        if not trainer.sanity_checking:
            self._val_s += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        total = time.perf_counter() - self._start  # includes the epoch-end validation
        self.epochs.append({"train_s": total - self._val_s, "val_s": self._val_s,
                            "epoch_s": total, "images": self._images})
        Path(self.out).write_text(json.dumps({"epochs": self.epochs}))


def fit_args(recipe: str, data_dir: str, epochs: int, val_size: int, root: str, out: str,
             limit: int | None, extra: list[str]) -> list[str]:
    """The ``fit`` command line of a recipe on the tiled folder, plus the timing callback."""
    timer = {"class_path": "_epochs.EpochTimer", "init_args": {"out": out}}
    args = ["fit", f"--config={CONFIG_DIR / recipe}.yaml", f"--data.data_dir={data_dir}",
            f"--data.val_size={val_size}", f"--trainer.max_epochs={epochs}",
            f"--trainer.default_root_dir={root}", f"--trainer.callbacks+={json.dumps(timer)}"]
    if limit:  # smoke runs only: partial epochs
        args += [f"--trainer.limit_train_batches={limit}",
                 f"--trainer.limit_val_batches={limit}"]
    return args + extra


def run_child(recipe: str, data_dir: str, total: int, epochs: int, limit: int | None,
              out: str, iters: int, extra: list[str]) -> None:
    """Fit ``recipe`` through ``cli_main`` on the tiled folder of ``total`` images, then time
    the same network on synthetic batches (same device, precision and layout); write all
    to ``out``."""
    val_size = total - TRAIN_IMAGES if total > TRAIN_IMAGES else max(total // 10, 1)
    with tempfile.TemporaryDirectory() as root:
        cli = cli_main(fit_args(recipe, data_dir, epochs, val_size, root, out, limit, extra))
    timer = next(c for c in cli.trainer.callbacks if isinstance(c, EpochTimer))
    device = cli.trainer.strategy.root_device
    net, precision = cli.model.net.to(device), str(cli.trainer.precision)
    batch = cli.datamodule.hparams.batch_size
    synthetic = synthetic_train_rate(net, batch, iters, warm=3, device=device,
                                     precision=precision, channels_last=cli.model.channels_last)
    flops = forward_flops(net, device)
    steady = timer.epochs[1:]
    train_s = sum(e["train_s"] for e in steady) / len(steady)
    rate = sum(e["images"] for e in steady) / sum(e["train_s"] for e in steady)
    result = {
        "recipe": recipe, "device": device_name(device), "torch": torch.__version__,
        "precision": precision, "batch": batch, "train_images": total - val_size,
        "auto": cli.auto_values, "epochs": timer.epochs, "steady_train_s": train_s,
        "steady_epoch_s": sum(e["epoch_s"] for e in steady) / len(steady),
        "first_train_s": timer.epochs[0]["train_s"], "img_s": rate, "synthetic_img_s": synthetic,
        "forward_flops": flops, "mfu": mfu(flops, rate, device_name(device), precision),
        "peak_memory_mb": peak_memory_mb(device), "limited": bool(limit),
        "device_path": cli.datamodule.uses_device_path, "channels_last": cli.model.channels_last,
        "compiled": is_compiled(net),
    }
    Path(out).write_text(json.dumps(result, indent=1))

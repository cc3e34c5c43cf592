"""The CIFAR-10 LightningDataModule: reads the Python batch layout into memory."""

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from cifar_moe.core.constants import BATCH_FOLDER, CIFAR10_CLASSES, META_FILE
from cifar_moe.core.errors import UserError
from cifar_moe.core.hardware import AUTO, Auto, facts_for_trainer, settle
from cifar_moe.data.augment import build_eval_transform, build_train_transform
from cifar_moe.data.augment_settings import DEFAULT_AUGMENT, AugmentSettings
from cifar_moe.data.batch_augment import DeviceBatches
from cifar_moe.data.checks import check_not_empty, check_settings
from cifar_moe.data.cifar_files import read_class_names, read_split
from cifar_moe.data.dataset import TensorImageDataset
from cifar_moe.data.download import batch_folder, ensure_cifar10, where_to_put
from cifar_moe.data.epoch_order import EpochOrder, EpochShuffle, SeededSamples
from cifar_moe.data.folds import NUM_FOLDS, validation_split
from cifar_moe.data.image_folder import ImageFolder, read_image_folder


class CIFAR10DataModule(L.LightningDataModule):
    """CIFAR-10 (or any folder in its Python batch layout), held in memory as uint8.

    Args:
        data_dir: folder holding ``cifar-10-batches-py/``; relative: to the project root.
        download: download the official archive when ``data_dir`` has neither.
        val_size: images held out of the training set for validation; 0 validates on test.
        split_seed: seed of the validation hold-out; the same seed gives the same split.
        val_fold: validate on this fold of ``num_folds`` disjoint folds of the training images
            (``data/folds.py``) and train on the rest; None uses val_size / split_seed.
        num_folds: how many folds ``val_fold`` counts in (10: about 508 slice images each).
        train_fraction: share of the training images kept (seeded, fixed across runs), for
            data-size curves; validation is unchanged.
        batch_size: training batch size.
        eval_batch_size: validation/test batch size; None uses batch_size.
        drop_last: drop each epoch's last partial training batch, so every step has one
            shape (with ``model.cuda_graphs``, one recorded graph instead of two).
        num_workers: DataLoader worker processes.
        pin_memory: pin host memory for faster copies (only used when CUDA is available).
        persistent_workers: keep workers alive between epochs (only when num_workers > 0).
        augment: training augmentation (:class:`AugmentSettings`), the same for both paths;
            ``augment: {flip_p: 0.3}`` in YAML, ``--data.augment.flip_p 0.3`` on the command line.
        device_augment: hold the training set on the training device and augment whole
            batches there (same settings, same distributions); off = per-image DataLoader;
            ``auto`` = on for a CUDA device only.
        predict_dir: folder of PNG/JPEG images (any size; resized to 32x32) that
            ``predict`` classifies; None predicts the test batch.
    """

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = True,
        val_size: int = 5000,
        split_seed: int = 0,
        val_fold: int | None = None,
        num_folds: int = NUM_FOLDS,
        train_fraction: float = 1.0,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        drop_last: bool = False,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        augment: AugmentSettings = DEFAULT_AUGMENT,
        device_augment: bool | Auto = AUTO,
        predict_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.augment = AugmentSettings.of(augment)  # a mapping too: a run's config, a checkpoint
        # Plain values in hparams, as checkpoints hold them and are read with weights_only=True.
        self.save_hyperparameters(ignore="augment")
        self.save_hyperparameters({"augment": self.augment.as_dict()})
        check_settings(self.hparams)
        # One settings object for both paths, so they cannot drift apart.
        self.train_transform = build_train_transform(self.augment)
        self.eval_transform = build_eval_transform()
        self.device_batches = DeviceBatches(self.augment)
        self.datasets: dict[str, TensorImageDataset] = {}
        self.train_indices = self.val_indices = None
        self.order = EpochOrder()  # training order and augmentation seeds, checkpointed
        self.predict_folder: ImageFolder | None = None

    @property
    def folder(self) -> Path:
        """The batch folder ``data_dir/cifar-10-batches-py``, or ``data_dir`` itself when it is
        that folder (it may not exist yet)."""
        return batch_folder(self.hparams.data_dir)

    @property
    def class_names(self) -> list[str]:
        """From ``batches.meta`` when the folder is there, else the CIFAR-10 names.

        The CLI reads this right after construction, before any download.
        """
        if (self.folder / META_FILE).is_file():
            return read_class_names(self.folder)
        return list(CIFAR10_CLASSES)

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(class_names)``; safe before the data exists."""
        return len(self.class_names)

    def prepare_data(self) -> None:
        """Download or extract the CIFAR folder when it is missing; reads nothing."""
        predicting = self.trainer is not None and self.trainer.predicting
        if self._needs_cifar("predict" if predicting else "fit"):
            ensure_cifar10(self.hparams.data_dir, self.hparams.download)

    def prepare_and_setup(self, stage: str) -> None:
        """``prepare_data`` then ``setup(stage)``, called by the CLI before the Trainer runs.

        The Trainer creates the run folder between those two hooks; reading first makes a
        bad folder or ``val_size`` fail with nothing written.
        """
        if self._needs_cifar(stage):
            ensure_cifar10(self.hparams.data_dir, self.hparams.download)
        self.setup(stage)

    def _needs_cifar(self, stage: str | None) -> bool:
        # predict of a predict_dir classifies those images alone: no CIFAR folder, no download.
        return not (stage == "predict" and self.hparams.predict_dir is not None)

    def setup(self, stage: str | None = None) -> None:
        """Read both splits into memory once and cut the seeded validation hold-out."""
        if not self._needs_cifar(stage):
            self._read_predict_dir()
            return
        if self.datasets:
            return
        if not self.folder.is_dir():
            raise UserError(f"data.data_dir {self.hparams.data_dir} has no {BATCH_FOLDER}/; "
                            f"call prepare_data() first (the Trainer and the CLI do), or "
                            f"{where_to_put(self.hparams.data_dir)}")
        train_images, train_labels = read_split(self.folder, train=True)
        test_images, test_labels = read_split(self.folder, train=False)
        check_not_empty(self.folder, len(train_labels), len(test_labels), stage)
        self.train_indices, self.val_indices = self._split(len(train_labels))
        self.datasets["test"] = TensorImageDataset(test_images, test_labels, self.eval_transform)
        self.datasets["train"] = TensorImageDataset(
            train_images[self.train_indices], train_labels[self.train_indices], self.train_transform
        )
        if self.val_indices is None:
            self.datasets["val"] = self.datasets["test"]
        else:
            self.datasets["val"] = TensorImageDataset(
                train_images[self.val_indices], train_labels[self.val_indices], self.eval_transform
            )

    def _split(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.hparams
        return validation_split(n, h.val_size, h.split_seed, h.val_fold, h.num_folds,
                                h.train_fraction)

    def _loader(self, split: str, train: bool) -> DataLoader:
        workers = self.hparams.num_workers
        dataset, sampler = self.datasets[split], None
        if train:  # order and augmentation from (seed, epoch, index): see epoch_order.py
            sampler, dataset = self._epoch_shuffle(len(dataset), keyed=True), SeededSamples(dataset)
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            drop_last=train and self.hparams.drop_last,
            num_workers=workers,
            pin_memory=self.hparams.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.hparams.persistent_workers and workers > 0,
            # Worker seeds come from here, not from the global stream a checkpoint restores.
            generator=torch.Generator().manual_seed(0),
        )

    def _epoch_shuffle(self, n: int, keyed: bool) -> EpochShuffle:
        return self.order.sampler(n, keyed, self.trainer)

    def state_dict(self) -> dict:
        return self.order.state_dict(self.trainer)

    def load_state_dict(self, state_dict: dict) -> None:
        self.order.load_state_dict(state_dict)

    @property
    def eval_batch_size(self) -> int:
        return self.hparams.eval_batch_size or self.hparams.batch_size

    @property
    def uses_device_path(self) -> bool:
        """``device_augment`` with ``auto`` settled for the trainer's device (off alone)."""
        facts = facts_for_trainer(self.trainer)
        return settle(self.hparams.device_augment, "device_augment", facts)

    def train_dataloader(self) -> DataLoader:
        n, h = len(self.datasets["train"]), self.hparams
        if h.drop_last and n < h.batch_size:
            raise UserError(f"data.drop_last is true but the {n} training images are fewer than "
                            f"data.batch_size {h.batch_size}, so no batch is left; lower "
                            "data.batch_size or set data.drop_last false")
        if self.uses_device_path:
            # Batches of indices only; the images never leave the device (see below).
            return DataLoader(range(n), h.batch_size, sampler=self._epoch_shuffle(n, keyed=False),
                              drop_last=h.drop_last, generator=torch.Generator().manual_seed(0))
        return self._loader("train", train=True)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if not isinstance(batch, torch.Tensor):  # an (images, labels) batch: already done
            return batch
        train = self.datasets["train"]
        return self.device_batches(train.images, train.labels, batch)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        if self.hparams.predict_dir is None:
            return self._loader("test", train=False)
        self._read_predict_dir()
        # In memory already, and normalising is cheap: workers would only add start-up time.
        return DataLoader(self.predict_folder.dataset(self.eval_transform),
                          batch_size=self.eval_batch_size, num_workers=0)

    @property
    def predict_names(self) -> list[str] | None:
        """File names of the ``predict_dir`` images in row order; None for the test batch."""
        return None if self.predict_folder is None else self.predict_folder.names

    def _read_predict_dir(self) -> None:
        if self.predict_folder is None:
            self.predict_folder = read_image_folder(self.hparams.predict_dir)
            self.predict_folder.report()


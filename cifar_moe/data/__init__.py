"""CIFAR-10 data: reading the batch layout, augmentation, the LightningDataModule."""

from cifar_moe.data.augment_settings import AugmentSettings
from cifar_moe.data.cifar_files import read_batch, read_class_names, read_split
from cifar_moe.data.datamodule import CIFAR10DataModule
from cifar_moe.data.synthetic import write_synthetic_cifar

__all__ = [
    "AugmentSettings",
    "CIFAR10DataModule",
    "read_batch",
    "read_class_names",
    "read_split",
    "write_synthetic_cifar",
]

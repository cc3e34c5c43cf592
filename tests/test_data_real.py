"""Data tier on the real 10% slice: the reader, the class names and the normalisation."""

import pytest
import torch

from cifar_moe.core.constants import BATCH_FOLDER, CIFAR10_CLASSES
from cifar_moe.data import AugmentSettings, CIFAR10DataModule, read_split
from cifar_moe.data.cifar_files import read_class_names

pytestmark = pytest.mark.real_data


def test_reads_real_slice(real_data_dir):
    folder = real_data_dir / BATCH_FOLDER
    images, labels = read_split(folder, train=True)
    test_images, test_labels = read_split(folder, train=False)
    assert (len(images), len(labels), len(test_images), len(test_labels)) == (5085, 5085, 500, 500)
    assert images.dtype == test_images.dtype == torch.uint8
    assert images.shape[1:] == test_images.shape[1:] == (3, 32, 32)
    assert labels.dtype == test_labels.dtype == torch.int64
    assert set(labels.tolist()) == set(test_labels.tolist()) == set(range(10))
    assert test_labels.bincount(minlength=10).min() > 30  # class-balanced within a few percent
    assert read_class_names(folder) == list(CIFAR10_CLASSES)
    assert images.float().std() > 40  # real photographs, not a constant


def test_real_slice_through_the_datamodule(real_data_dir):
    dm = CIFAR10DataModule(data_dir=str(real_data_dir), val_size=500, num_workers=0,
                           augment=AugmentSettings(flip_p=0.0, crop_padding=0))
    assert dm.class_names == list(CIFAR10_CLASSES) and dm.num_classes == 10
    dm.setup("fit")
    assert (len(dm.datasets["train"]), len(dm.datasets["val"])) == (4585, 500)
    images = torch.stack([dm.datasets["train"][i][0] for i in range(0, 4585, 5)])
    # The CIFAR-10 mean/std in constants.py hold for this slice too: ~0 mean, ~1 std.
    assert images.mean(dim=(0, 2, 3)).abs().max() < 0.1
    assert (images.std(dim=(0, 2, 3)) - 1).abs().max() < 0.1

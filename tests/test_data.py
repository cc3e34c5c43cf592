"""Data tier: reading the batch layout, the split, augmentation, download and bad files."""

import pickle
import shutil
import tarfile
import time

import pytest
import torch

from cifar_moe.constants import BATCH_FOLDER, CIFAR10_CLASSES
from cifar_moe.data import CIFAR10DataModule, read_split, write_synthetic_cifar
from cifar_moe.data import download as download_mod
from cifar_moe.errors import UserError

NO_AUG = {"flip_p": 0.0, "crop_padding": 0}


def _dm(data_dir, **kwargs) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(data_dir=str(data_dir), num_workers=0, **kwargs)
    dm.setup("fit")
    return dm


def test_reads_generated_folder(synthetic_data_dir):
    images, labels = read_split(synthetic_data_dir / BATCH_FOLDER, train=True)
    assert images.shape == (200, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))
    test_images, _ = read_split(synthetic_data_dir / BATCH_FOLDER, train=False)
    assert len(test_images) == 50


@pytest.mark.real_data
def test_reads_real_slice(real_data_dir):
    folder = real_data_dir / BATCH_FOLDER
    images, labels = read_split(folder, train=True)
    test_images, test_labels = read_split(folder, train=False)
    assert (len(images), len(test_images)) == (5085, 500)
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
    assert labels.dtype == torch.int64 and labels.min() == 0 and labels.max() == 9
    assert test_labels.bincount(minlength=10).min() > 30  # every class present
    assert CIFAR10DataModule(data_dir=str(real_data_dir)).class_names == list(CIFAR10_CLASSES)
    assert images.float().std() > 40  # real photographs, not a constant


def test_split_sizes_disjoint_and_seeded(synthetic_data_dir):
    dm = _dm(synthetic_data_dir, val_size=50, split_seed=3)
    train, val = set(dm.train_indices.tolist()), set(dm.val_indices.tolist())
    assert (len(train), len(val)) == (150, 50) and not train & val
    assert train | val == set(range(200))
    again = _dm(synthetic_data_dir, val_size=50, split_seed=3)
    assert torch.equal(again.val_indices, dm.val_indices)
    other = _dm(synthetic_data_dir, val_size=50, split_seed=4)
    assert not torch.equal(other.val_indices, dm.val_indices)


def test_val_size_zero_validates_on_test_set(synthetic_data_dir):
    dm = _dm(synthetic_data_dir, val_size=0)
    assert len(dm.datasets["train"]) == 200
    assert dm.datasets["val"] is dm.datasets["test"]


def test_val_size_too_large_is_a_clear_error(synthetic_data_dir):
    with pytest.raises(UserError, match=r"data\.val_size is 500 .* 200 images"):
        _dm(synthetic_data_dir, val_size=500)


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"flip_p": 1.5}, {"hue": 0.7}])
def test_bad_settings_are_clear_errors(bad):
    name = next(iter(bad))
    with pytest.raises(UserError, match=rf"data\.{name} is"):
        CIFAR10DataModule(**bad)


def test_train_augmentation_output(synthetic_data_dir):
    dm = _dm(synthetic_data_dir, val_size=50, brightness=0.3, contrast=0.3, saturation=0.3,
             hue=0.1, rotation_degrees=10)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.float32 and images.shape == (128, 3, 32, 32)
    assert torch.isfinite(images).all() and images.abs().max() < 3.0  # normalised range
    assert labels.dtype == torch.int64


@pytest.mark.parametrize("flip_p", [0.0, 1.0])
def test_flip_probability(synthetic_data_dir, flip_p):
    dm = _dm(synthetic_data_dir, val_size=50, flip_p=flip_p, crop_padding=0)
    raw = dm.datasets["train"].images[:20]
    out = torch.stack([dm.train_transform(img) for img in raw])
    expected = dm.eval_transform(raw.flip(-1) if flip_p else raw)
    torch.testing.assert_close(out, expected)


def test_eval_path_is_deterministic(synthetic_data_dir):
    dm = _dm(synthetic_data_dir, val_size=50, **NO_AUG)
    first = next(iter(dm.val_dataloader()))[0]
    second = next(iter(dm.val_dataloader()))[0]
    assert torch.equal(first, second)


def test_offline_download_fails_fast_and_leaves_nothing(tmp_path, monkeypatch):
    # An unroutable URL fails at once on any machine, online or not; no real host is asked.
    monkeypatch.setattr(download_mod, "CIFAR10_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        CIFAR10DataModule(data_dir=str(tmp_path / "data")).prepare_data()
    message = str(info.value)
    assert time.monotonic() - start < 15
    assert "\n" not in message and "could not download" in message
    assert "cifar-10-python.tar.gz" in message and str(tmp_path) in message
    assert list((tmp_path / "data").iterdir()) == []  # no half-written folder, no temp dir


def test_download_off_and_missing_names_the_setting(tmp_path):
    with pytest.raises(UserError, match=r"data\.data_dir .* data\.download is off"):
        CIFAR10DataModule(data_dir=str(tmp_path), download=False).prepare_data()


def test_local_tarball_is_extracted(tmp_path):
    write_synthetic_cifar(tmp_path / "src", train_per_batch=10, test_size=10)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with tarfile.open(data_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / BATCH_FOLDER, arcname=BATCH_FOLDER)
    dm = _dm(data_dir, val_size=10)
    assert len(dm.datasets["train"]) == 40
    assert sorted(p.name for p in data_dir.iterdir()) == [BATCH_FOLDER, "cifar-10-python.tar.gz"]


@pytest.fixture
def broken_copy(synthetic_data_dir, tmp_path):
    shutil.copytree(synthetic_data_dir / BATCH_FOLDER, tmp_path / BATCH_FOLDER)
    return tmp_path


def test_truncated_batch_names_the_file(broken_copy):
    path = broken_copy / BATCH_FOLDER / "data_batch_3"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError, match=r"data_batch_3 is truncated"):
        _dm(broken_copy, val_size=10)


def _rewrite(path, **changes):
    with open(path, "rb") as fh:
        batch = pickle.load(fh)
    batch.update(changes)
    with open(path, "wb") as fh:
        pickle.dump(batch, fh)


def test_labels_out_of_range_name_the_file(broken_copy):
    path = broken_copy / BATCH_FOLDER / "test_batch"
    _rewrite(path, labels=[12] * 50)
    with pytest.raises(UserError, match=r"test_batch: labels range 12\.\.12, expected 0\.\.9"):
        _dm(broken_copy, val_size=10)


def test_wrong_row_length_names_the_file(broken_copy):
    path = broken_copy / BATCH_FOLDER / "data_batch_1"
    _rewrite(path, data=torch.zeros(40, 1024, dtype=torch.uint8).numpy())
    with pytest.raises(UserError, match=r"data_batch_1: 'data' is uint8 \(40, 1024\)"):
        _dm(broken_copy, val_size=10)

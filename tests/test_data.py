"""Data tier on a generated folder: reading, split, augmentation, loaders, bad files."""

import math
import pickle
import shutil

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from cifar_moe.core.constants import BATCH_FOLDER, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from cifar_moe.core.errors import UserError
from cifar_moe.data import CIFAR10DataModule, read_split
from cifar_moe.data.augment import build_eval_transform, build_train_transform
from cifar_moe.data.augment_settings import AugmentSettings
from cifar_moe.data.cifar_files import read_batch

NO_AUG = {"flip_p": 0.0, "crop_padding": 0}


def _dm(data_dir, **kwargs) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(data_dir=str(data_dir), num_workers=0, **kwargs)
    dm.setup("fit")
    return dm


def _load(path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh)


def test_generated_folder_has_the_original_layout(synthetic_data_dir):
    folder = synthetic_data_dir / BATCH_FOLDER
    meta = _load(folder / "batches.meta")
    assert meta["label_names"] == list(CIFAR10_CLASSES) and meta["num_vis"] == 3072
    assert (folder / "data_batch_1").read_bytes()[:2] == b"\x80\x02"  # pickle protocol 2
    batch = _load(folder / "data_batch_1")
    assert set(batch) == {"data", "labels", "batch_label"}
    assert batch["data"].dtype == np.uint8 and batch["data"].shape == (40, 3072)
    assert isinstance(batch["labels"], list) and isinstance(batch["labels"][0], int)
    images, labels = read_split(folder, train=True)
    assert images.shape == (200, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))
    assert read_split(folder, train=False)[0].shape == (50, 3, 32, 32)
    # Rows are channel-major: the first 1024 bytes of a row are the red plane.
    assert torch.equal(images[0, 0].flatten(), torch.from_numpy(batch["data"][0, :1024]))


def test_generated_images_are_learnable(synthetic_data_dir):
    images, labels = read_split(synthetic_data_dir / BATCH_FOLDER, train=True)
    test_images, test_labels = read_split(synthetic_data_dir / BATCH_FOLDER, train=False)
    colour = images.float().mean(dim=(2, 3))  # (N, 3) mean RGB per image
    centroids = torch.stack([colour[labels == c].mean(0) for c in range(10)])  # (10, 3)
    guess = torch.cdist(test_images.float().mean(dim=(2, 3)), centroids).argmin(1)
    assert (guess == test_labels).float().mean() > 0.9  # chance is 0.1


def test_split_sizes_disjoint_and_seeded(synthetic_data_dir):
    dm = _dm(synthetic_data_dir, val_size=50, split_seed=3)
    train, val = set(dm.train_indices.tolist()), set(dm.val_indices.tolist())
    assert (len(train), len(val)) == (150, 50) and not train & val
    assert train | val == set(range(200))
    _, labels = read_split(synthetic_data_dir / BATCH_FOLDER, train=True)
    assert torch.equal(dm.datasets["val"].labels, labels[dm.val_indices])
    assert torch.equal(dm.datasets["train"].labels, labels[dm.train_indices])
    again = _dm(synthetic_data_dir, val_size=50, split_seed=3)
    assert torch.equal(again.val_indices, dm.val_indices)
    other = _dm(synthetic_data_dir, val_size=50, split_seed=4)
    assert not torch.equal(other.val_indices, dm.val_indices)


def test_val_size_zero_validates_on_test_set_and_too_large_is_an_error(synthetic_data_dir):
    dm = _dm(synthetic_data_dir, val_size=0)
    assert len(dm.datasets["train"]) == 200 and dm.datasets["val"] is dm.datasets["test"]
    val_labels = torch.cat([y for _, y in dm.val_dataloader()])
    assert torch.equal(val_labels, dm.datasets["test"].labels)
    for val_size in (200, 500):
        with pytest.raises(UserError, match=rf"data\.val_size is {val_size} .* 200 images"):
            _dm(synthetic_data_dir, val_size=val_size)


@pytest.mark.parametrize(("name", "value"), [
    ("batch_size", 0), ("eval_batch_size", 0), ("val_size", -1), ("num_workers", -1)])
def test_bad_settings_are_clear_errors(name, value):
    with pytest.raises(UserError, match=rf"^data\.{name} is [^\n]*$"):
        CIFAR10DataModule(**{name: value})


@pytest.mark.parametrize(("name", "value"), [
    ("flip_p", 1.5), ("flip_p", -0.1), ("crop_padding", -1), ("hue", 0.7), ("hue", -0.1),
    ("brightness", -0.2), ("contrast", -0.1), ("saturation", -0.1), ("rotation_degrees", -5.0)])
def test_bad_augment_settings_are_clear_errors(name, value):
    for build in (lambda: AugmentSettings(**{name: value}),
                  lambda: CIFAR10DataModule(augment={name: value})):  # a run config's mapping
        with pytest.raises(UserError, match=rf"^data\.augment\.{name} is {value}; use [^\n]*$"):
            build()


def test_augment_settings_reach_both_paths_and_stay_plain_in_checkpoints(tmp_path):
    settings = AugmentSettings(flip_p=0.3, crop_padding=2, hue=0.05, rotation_degrees=7.0)
    for given in (settings, settings.as_dict()):
        dm = CIFAR10DataModule(augment=given)
        assert dm.augment == settings and dm.device_batches.augment.settings == settings
        steps = dm.train_transform.transforms
        assert (steps[0].p, steps[1].padding, steps[2].hue, steps[3].degrees) == (
            0.3, [2, 2, 2, 2], (-0.05, 0.05), [-7.0, 7.0])
    # Lightning saves dict(hparams) into checkpoints; the CLI reads them with weights_only.
    assert dm.hparams["augment"] == settings.as_dict() == dm.hparams_initial["augment"]
    torch.save({"datamodule_hyper_parameters": dict(dm.hparams)}, tmp_path / "h.ckpt")
    loaded = torch.load(tmp_path / "h.ckpt", weights_only=True)
    assert AugmentSettings.of(loaded["datamodule_hyper_parameters"]["augment"]) == settings


def test_augment_mapping_with_an_unknown_key_is_one_line():
    with pytest.raises(UserError, match=r"^data\.augment has no setting jitter; use one of "
                                        r"flip_p, crop_padding, [^\n]*$"):
        AugmentSettings.of({"flip_p": 0.5, "jitter": 0.2})


def test_class_names_before_and_after_the_data_exists(tmp_path, broken_copy):
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "absent"))
    assert dm.class_names == list(CIFAR10_CLASSES) and dm.num_classes == 10
    assert not (tmp_path / "absent").exists()  # building the module writes nothing
    meta_path = broken_copy / BATCH_FOLDER / "batches.meta"
    meta = _load(meta_path) | {"label_names": list(reversed(CIFAR10_CLASSES))}
    meta_path.write_bytes(pickle.dumps(meta, protocol=2))
    assert CIFAR10DataModule(data_dir=str(broken_copy)).class_names[0] == "truck"


@pytest.mark.parametrize("option", [
    ({"flip_p": 0.5}, v2.RandomHorizontalFlip), ({"crop_padding": 2}, v2.RandomCrop),
    ({"hue": 0.1}, v2.ColorJitter), ({"brightness": 0.1}, v2.ColorJitter),
    ({"rotation_degrees": 5.0}, v2.RandomRotation),
])
def test_each_augmentation_is_off_able(option):
    kwargs, kind = option
    steps = build_train_transform(AugmentSettings(**(NO_AUG | kwargs))).transforms
    assert [type(s) for s in steps] == [kind, v2.Lambda]  # then the one normalisation
    assert len(build_train_transform(AugmentSettings(**NO_AUG)).transforms) == 1


def test_train_augmentation_output(synthetic_data_dir):
    dm = _dm(synthetic_data_dir, val_size=50, augment=AugmentSettings(
        brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1, rotation_degrees=10))
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.float32 and images.shape == (128, 3, 32, 32)
    assert labels.dtype == torch.int64 and labels.shape == (128,)
    mean, std = torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD)
    assert torch.isfinite(images).all()  # and within what [0, 1] pixels normalise to:
    assert ((0 - mean) / std).min() - 1e-4 <= images.min() <= images.max() <= (
        (1 - mean) / std).max() + 1e-4


@pytest.mark.parametrize("flip_p", [0.0, 1.0])
def test_flip_probability(synthetic_data_dir, flip_p):
    raw = read_split(synthetic_data_dir / BATCH_FOLDER, train=False)[0][:20]  # (20, 3, 32, 32)
    transform = build_train_transform(AugmentSettings(flip_p=flip_p, crop_padding=0))
    out = torch.stack([transform(img) for img in raw])
    expected = build_eval_transform()(torch.flip(raw, dims=[-1]) if flip_p else raw)
    torch.testing.assert_close(out, expected)
    assert not torch.equal(raw, torch.flip(raw, dims=[-1]))  # else the test proves nothing


def test_loaders(synthetic_data_dir):
    dm = _dm(synthetic_data_dir, val_size=50, batch_size=64, eval_batch_size=16)
    train = dm.train_dataloader()
    assert len(train) == math.ceil(150 / 64)  # drop_last=False keeps the short batch
    epochs = []
    for epoch in (0, 1, 1):
        train.sampler.set_epoch(epoch)  # what Lightning does before every epoch
        epochs.append(torch.cat([y for _, y in train]))
    assert sorted(epochs[0].tolist()) == sorted(dm.datasets["train"].labels.tolist())
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled every epoch
    assert torch.equal(epochs[1], epochs[2])  # an epoch's order depends on (seed, epoch) only
    val = [next(iter(dm.val_dataloader()))[0] for _ in range(2)]
    assert torch.equal(val[0], val[1])  # evaluation is deterministic
    for loader in (dm.test_dataloader(), dm.predict_dataloader()):
        assert len(loader) == math.ceil(50 / 16)
        images, labels = next(iter(loader))
        assert images.shape == (16, 3, 32, 32) and labels.dtype == torch.int64
        assert torch.equal(labels, dm.datasets["test"].labels[:16])  # test_batch, in order
    assert not train.pin_memory or torch.cuda.is_available()
    assert not train.persistent_workers  # num_workers=0 cannot keep workers
    dm.hparams.num_workers = 1
    assert dm.train_dataloader().persistent_workers and dm.train_dataloader().num_workers == 1


@pytest.fixture
def broken_copy(synthetic_data_dir, tmp_path):
    shutil.copytree(synthetic_data_dir / BATCH_FOLDER, tmp_path / "copy" / BATCH_FOLDER)
    return tmp_path / "copy"


def test_truncated_batch_names_the_file(broken_copy):
    path = broken_copy / BATCH_FOLDER / "data_batch_3"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError) as info:
        _dm(broken_copy, val_size=10)
    assert str(info.value).startswith(f"{path} is truncated or not a CIFAR-10 batch (")
    assert f"re-extract cifar-10-python.tar.gz into {broken_copy.resolve()}" in str(info.value)
    assert "\n" not in str(info.value)


def test_bytes_keys_are_accepted(broken_copy):
    path = broken_copy / BATCH_FOLDER / "data_batch_2"
    images, labels = read_batch(path)
    path.write_bytes(pickle.dumps({k.encode(): v for k, v in _load(path).items()}, protocol=2))
    again = read_batch(path)
    assert torch.equal(again[0], images) and torch.equal(again[1], labels)


@pytest.mark.parametrize(("name", "change", "pattern"), [
    ("test_batch", {"labels": [12] * 50}, r"test_batch: labels range 12\.\.12, expected 0\.\.9"),
    ("data_batch_5", {"labels": [-1] + [0] * 39}, r"data_batch_5: labels range -1\.\.0"),
    ("data_batch_1", {"data": np.zeros((40, 1024), np.uint8)},
     r"data_batch_1: 'data' is uint8 \(40, 1024\), expected uint8 \(N, 3072\)"),
    ("data_batch_4", {"labels": [0] * 39}, r"data_batch_4: 39 labels for 40 images"),
    ("data_batch_2", {"labels": None}, r"data_batch_2 lacks 'labels'"),
    ("data_batch_2", {"data": None, "labels": None}, r"data_batch_2 lacks 'data' and 'labels'"),
])
def test_bad_batch_contents_name_the_file(broken_copy, name, change, pattern):
    path = broken_copy / BATCH_FOLDER / name
    batch = {k: v for k, v in (_load(path) | change).items() if v is not None}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UserError, match=pattern) as info:
        _dm(broken_copy, val_size=10)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_drop_last_gives_only_full_training_batches(synthetic_data_dir):
    # 150 training images in batches of 64: 64, 64 and a partial 22 without drop_last.
    for device_path in (False, True):
        kept = _dm(synthetic_data_dir, val_size=50, batch_size=64, drop_last=True,
                   device_augment=device_path)
        sizes = [len(b if device_path else b[1]) for b in kept.train_dataloader()]
        assert sizes == [64, 64]
        full = _dm(synthetic_data_dir, val_size=50, batch_size=64, device_augment=device_path)
        assert [len(b if device_path else b[1]) for b in full.train_dataloader()] == [64, 64, 22]
    # validation keeps every image
    assert sum(len(b[1]) for b in kept.val_dataloader()) == 50
    with pytest.raises(UserError, match=r"data\.drop_last is true but the 150 training images "
                                        r"are fewer than data\.batch_size 256"):
        _dm(synthetic_data_dir, val_size=50, batch_size=256, drop_last=True).train_dataloader()

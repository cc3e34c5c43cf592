"""The strong recipe's switchable parts: reflect translate, cutout, TrivialAugment, the
whitening stem, flip+translate TTA, validation folds. Unit tier (fast) plus one tiny fit."""

import pytest
import torch

from cifar_moe.core.errors import UserError
from cifar_moe.core.normalization import normalize_uint8
from cifar_moe.data.augment import build_train_transform
from cifar_moe.data.augment_settings import AugmentSettings
from cifar_moe.data.batch_augment import BatchAugment, cutout
from cifar_moe.data.folds import fold_of_each, fold_split, subsample, validation_split
from cifar_moe.models import MoENet
from cifar_moe.models.stem import WhiteningStem
from cifar_moe.training.tta import tta_logits

WHITE = torch.full((6, 3, 32, 32), 255, dtype=torch.uint8)  # (B, 3, H, W)
ONLY_CROP = dict(flip_p=0.0, crop_padding=4)


@pytest.mark.parametrize("reflect", [False, True])
def test_reflect_translate_never_shows_a_zero_band(reflect):
    torch.manual_seed(0)
    settings = AugmentSettings(**ONLY_CROP, crop_reflect=reflect)
    many = WHITE.repeat(8, 1, 1, 1)  # 48 random offsets
    batch = BatchAugment(settings)(many)
    single = torch.stack([build_train_transform(settings)(image) for image in many])
    white = normalize_uint8(WHITE[:1])
    for out in (batch, single):
        all_white = torch.isclose(out, white.expand_as(out)).all()
        assert bool(all_white) == reflect  # zeros padding shows black borders somewhere


def test_cutout_zeroes_one_square_per_image_in_both_paths():
    torch.manual_seed(0)
    x = torch.ones(64, 3, 32, 32)
    out = cutout(x, 8)
    zeroed = (out == 0).all(dim=1).flatten(1).sum(dim=1)  # (B,) pixels zeroed per image
    assert (zeroed <= 64).all() and (zeroed > 0).all() and (zeroed == 64).any()
    assert ((out == 0) | (out == 1)).all()
    image = build_train_transform(AugmentSettings(flip_p=0, crop_padding=0, cutout=8))(WHITE[0])
    assert 0 < int((image == 0).all(dim=0).sum()) <= 64


def test_trivial_augment_changes_images_in_both_paths():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    settings = AugmentSettings(flip_p=0, crop_padding=0, trivial_augment=True)
    plain = normalize_uint8(images)
    batch = BatchAugment(settings)(images)
    single = torch.stack([build_train_transform(settings)(image) for image in images])
    assert batch.shape == single.shape == plain.shape
    assert not torch.equal(batch, plain) and not torch.equal(single, plain)


def test_whitening_stem_whitens_the_patches_of_its_images():
    torch.manual_seed(0)
    images = torch.randn(32, 3, 16, 16) * torch.tensor([1.0, 3.0, 0.2]).view(1, 3, 1, 1)
    stem = WhiteningStem()
    stem.init_from_images(images)
    features = stem.conv(images)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)  # (P, 12)
    features = features - features.mean(dim=0)
    covariance = features.T @ features / len(features)
    # eps (5e-4) shrinks the faintest direction (variance 0.04 here) by about 1 %
    assert torch.allclose(covariance, torch.eye(12), atol=0.015)
    assert not stem.conv.weight.requires_grad and stem.conv.bias.requires_grad


def test_whitening_stem_needs_its_width():
    with pytest.raises(UserError, match=r"stem_width is 48; use 24 with stem: whiten"):
        MoENet(stem="whiten", stem_width=48)


def test_flip_translate_tta_is_the_mean_of_six_views():
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    x = torch.randn(2, 3, 8, 8)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    views = [x, padded[..., :8, :8], padded[..., 2:, 2:]]
    flip_means = [(linear(v) + linear(v.flip(-1))) / 2 for v in views]
    expected = flip_means[0] / 2 + (flip_means[1] + flip_means[2]) / 4
    assert torch.allclose(tta_logits(linear, x, "flip_translate"), expected, atol=1e-6)


def test_folds_are_disjoint_cover_everything_and_never_depend_on_the_run():
    folds = fold_of_each(5085)
    sizes = torch.bincount(folds)
    assert sizes.tolist() == [509] * 5 + [508] * 5
    train, val = fold_split(5085, 3)
    assert len(set(train.tolist()) | set(val.tolist())) == 5085 and not set(train.tolist()) & set(
        val.tolist())
    assert torch.equal(fold_split(5085, 3)[1], val)  # the same images whatever the seed
    assert len(subsample(train, 0.25, seed=0)) == round(len(train) * 0.25)
    with pytest.raises(UserError, match=r"data\.val_fold is 10; use 0 \.\. 9"):
        validation_split(5085, 500, 0, 10, 10, 1.0)

"""`LitClassifier.classify`: raw uint8 tensors or PIL images in, names and probabilities out."""

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_moe.core.errors import UserError
from cifar_moe.data.augment import build_eval_transform
from cifar_moe.data.image_folder import to_model_size
from cifar_moe.models import MoENet
from cifar_moe.training.module import LitClassifier


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = MoENet(stem_width=8, widths=[8, 16], pool_after=[0, 1], num_experts=2,
                 block_dropout=0.3, classifier_dropout=0.5)
    return LitClassifier(net)


def _images(n, h=32, w=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=gen)


def _reference(model, images):
    """What testing does: the eval transform, the network in eval mode, softmax."""
    model.eval()
    with torch.no_grad():
        return model(build_eval_transform()(images)).softmax(dim=-1)


def test_classify_matches_the_evaluation_pipeline(model):
    images = _images(6)
    result = model.classify(images)
    expected = _reference(model, images)
    torch.testing.assert_close(result.probs, expected)
    assert result.names == [model.class_names[i] for i in expected.argmax(dim=-1).tolist()]
    torch.testing.assert_close(result.confidences, expected.max(dim=-1).values)
    assert not result.probs.requires_grad


def test_classify_restores_every_submodule_mode(model):
    model.train()
    model.net.classifier.eval()  # a mixed state, as after freezing one part
    before = {name: m.training for name, m in model.named_modules()}
    model.classify(_images(2))
    assert {name: m.training for name, m in model.named_modules()} == before
    model.eval()
    model.classify(_images(2))
    assert not any(m.training for m in model.modules())


def test_classify_ignores_dropout_and_batch_statistics(model):
    model.train()  # dropout and batch-statistics BN would make two calls differ
    images = _images(4)
    torch.testing.assert_close(model.classify(images).probs, model.classify(images).probs)


def test_single_images_pil_and_other_sizes(model):
    batch = _images(3)
    single = model.classify(batch[1])
    assert len(single.names) == 1 and single.probs.shape == (1, 10)
    torch.testing.assert_close(single.probs[0], model.classify(batch).probs[1])
    pil = Image.fromarray(batch[2].permute(1, 2, 0).numpy())
    torch.testing.assert_close(model.classify(pil).probs[0], model.classify(batch).probs[2])
    large = _images(2, 96, 64)
    grey = Image.fromarray(np.full((50, 40), 200, dtype=np.uint8))
    mixed = model.classify([large[0], grey, batch[0]])
    torch.testing.assert_close(mixed.probs[0], _reference(model, to_model_size(large[:1]))[0])
    grey_rgb = torch.full((1, 3, 50, 40), 200, dtype=torch.uint8)
    torch.testing.assert_close(mixed.probs[1], _reference(model, to_model_size(grey_rgb))[0])


def test_classify_with_flip_tta_averages_logits(model):
    images = _images(5)
    model.tta = "flip"
    got = model.classify(images).probs
    model.eval()
    with torch.no_grad():
        x = build_eval_transform()(images)
        expected = ((model(x) + model(x.flip(-1))) / 2).softmax(dim=-1)
    torch.testing.assert_close(got, expected)
    model.tta = "none"
    assert (model.classify(images).probs - got).abs().max() > 1e-4


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (torch.rand(2, 3, 32, 32), "float32 tensor"),
        (torch.zeros(2, 1, 32, 32, dtype=torch.uint8), "shape (2, 1, 32, 32)"),
        ([], "empty list"),
        ("cat.png", "got a str"),
    ],
)
def test_bad_inputs_are_one_clear_error(model, bad, fragment):
    with pytest.raises(UserError, match="classify") as info:
        model.classify(bad)
    assert fragment in str(info.value)

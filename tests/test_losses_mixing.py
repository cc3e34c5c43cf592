"""Unit tests of the losses, the mixing switch and the LR schedules the recipes use."""

import pytest
import torch
import torch.nn.functional as F

from cifar_moe.core.constants import CIFAR10_CLASSES
from cifar_moe.core.errors import UserError
from cifar_moe.training.losses import (
    FocalLoss,
    class_weight_vector,
    cross_entropy_loss,
    smooth_targets,
)
from cifar_moe.training.mixing import BatchMixer
from cifar_moe.training.schedules import OneCycleThenHold

C = len(CIFAR10_CLASSES)


@pytest.fixture
def logits_labels():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(16, C, generator=gen, dtype=torch.float64), torch.arange(16) % C


def _written_out_ce(logits, targets, smoothing):
    """The cross-entropy this project used to write by hand: -sum_c smooth(t)_c log p_c."""
    if targets.ndim == 1:  # one-hot in the logits' float64, so the reference loses nothing
        targets = F.one_hot(targets, C).to(logits.dtype)
    target = smooth_targets(targets, C, smoothing)
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_torch_ce_equals_the_written_out_formula_on_hard_and_mixed_targets(
    logits_labels, smoothing
):
    logits, labels = logits_labels
    mixed = 0.37 * F.one_hot(labels, C).double() + 0.63 * F.one_hot((labels + 3) % C, C).double()
    loss = cross_entropy_loss(smoothing)
    for targets in (labels, mixed):
        expected = _written_out_ce(logits, targets, smoothing)
        torch.testing.assert_close(loss(logits, targets), expected, rtol=0, atol=1e-12)


def test_module_cross_entropy_is_torch_ce_with_the_configured_smoothing(logits_labels):
    from cifar_moe.models import MoENet
    from cifar_moe.training.module import LitClassifier

    net = MoENet(stem_width=8, widths=[8], pool_after=[0], num_classes=C)
    model = LitClassifier(net, loss="cross_entropy", label_smoothing=0.2)
    logits, labels = logits_labels
    soft = F.softmax(torch.randn(16, C, dtype=torch.float64), dim=-1)  # any distribution
    for targets in (labels, soft):
        torch.testing.assert_close(model.loss_fn(logits, targets),
                                   _written_out_ce(logits, targets, 0.2), rtol=0, atol=1e-12)


def test_unknown_loss_in_a_notebook_is_a_clear_error():
    # The CLI's type check never sees a LitClassifier built by hand; it used to train CE.
    from cifar_moe.models import MoENet
    from cifar_moe.training.module import LitClassifier

    net = MoENet(stem_width=8, widths=[8], pool_after=[0], num_classes=C)
    with pytest.raises(UserError, match=r"model\.loss is 'focall'; use cross_entropy or focal"):
        LitClassifier(net, loss="focall")


def test_focal_gamma0_no_weights_equals_ce(logits_labels):
    logits, labels = logits_labels
    focal = FocalLoss(C, gamma=0.0, label_smoothing=0.1)(logits, labels)
    ref = F.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(focal.double(), ref)


def test_focal_down_weights_easy_examples(logits_labels):
    logits, labels = logits_labels
    easy = logits.clone()
    easy[torch.arange(16), labels] += 10.0  # confidently right
    ce, focal = cross_entropy_loss(), FocalLoss(C, gamma=2.0)
    assert focal(easy, labels) < 0.01 * ce(easy, labels)


@pytest.mark.parametrize("form", ["per_class", "smoothed_ce"])
def test_focal_gamma0_equals_ce_on_soft_targets_in_both_forms(logits_labels, form):
    logits, labels = logits_labels
    soft = 0.3 * F.one_hot(labels, C).double() + 0.7 * F.one_hot((labels + 1) % C, C).double()
    focal = FocalLoss(C, gamma=0.0, label_smoothing=0.1, form=form)
    for targets in (labels, soft):
        ref = F.cross_entropy(logits, targets, label_smoothing=0.1)
        torch.testing.assert_close(focal(logits, targets).double(), ref)


def test_focal_smoothed_ce_form_is_the_factor_on_smoothed_ce(logits_labels):
    logits, labels = logits_labels
    weights = class_weight_vector({"cat": 1.2, "bird": 1.1}, CIFAR10_CLASSES).double()
    ce = F.cross_entropy(logits, labels, label_smoothing=0.1, reduction="none")
    expected = (weights[labels] * (1 - torch.exp(-ce)) ** 2 * ce).mean()
    loss = FocalLoss(C, gamma=2.0, label_smoothing=0.1, class_weights=weights, form="smoothed_ce")
    torch.testing.assert_close(loss(logits, labels).double(), expected)


def _optimal_true_class_prob(loss) -> float:
    """Minimise the loss of one hard-labelled sample over its logits; p of the true class."""
    logits = torch.zeros(1, C, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [logits], max_iter=500, tolerance_grad=1e-12, line_search_fn="strong_wolfe"
    )
    label = torch.tensor([0])

    def closure():
        opt.zero_grad()
        value = loss(logits, label)
        value.backward()
        return value

    opt.step(closure)
    return logits.detach().softmax(-1)[0, 0].item()


def test_focal_optimum_per_form_against_smoothed_ce():
    # README / configs/focal_onecycle.yaml: 0.69 for the report's form, 0.91 for CE.
    ce = _optimal_true_class_prob(cross_entropy_loss(0.1))
    per_class = _optimal_true_class_prob(FocalLoss(C, 2.0, 0.1, form="per_class"))
    smoothed = _optimal_true_class_prob(FocalLoss(C, 2.0, 0.1, form="smoothed_ce"))
    assert ce == pytest.approx(0.91, abs=0.005)
    assert per_class == pytest.approx(0.69, abs=0.01)
    assert smoothed == pytest.approx(ce, abs=1e-4)


def test_unknown_focal_form_is_a_clear_error():
    with pytest.raises(UserError, match=r"model\.focal_form.*per_class or smoothed_ce"):
        FocalLoss(C, form="smoothed")


@pytest.mark.parametrize("loss_name", ["ce", "per_class", "smoothed_ce"])
def test_blended_loss_is_two_label_formula(logits_labels, loss_name):
    logits, a = logits_labels
    b = (a + 3) % C
    weights = class_weight_vector({"cat": 1.2, "bird": 1.1}, CIFAR10_CLASSES)
    loss = (
        cross_entropy_loss(0.1)
        if loss_name == "ce"
        else FocalLoss(C, 2.0, 0.1, class_weights=weights.double(), form=loss_name)
    )
    lam = 0.37
    soft = lam * F.one_hot(a, C).double() + (1 - lam) * F.one_hot(b, C).double()
    expected = lam * loss(logits, a) + (1 - lam) * loss(logits, b)
    torch.testing.assert_close(loss(logits, soft), expected)


def test_class_weights_by_name():
    w = class_weight_vector({"cat": 1.2, "dog": 1.1}, CIFAR10_CLASSES)
    assert w[CIFAR10_CLASSES.index("cat")] == pytest.approx(1.2)
    assert w[CIFAR10_CLASSES.index("dog")] == pytest.approx(1.1)
    assert w.sum() == pytest.approx(C + 0.3)


def test_unknown_class_name_is_a_clear_error():
    with pytest.raises(UserError, match=r"model\.class_weights.*'kat'.*airplane"):
        class_weight_vector({"kat": 1.2}, CIFAR10_CLASSES)


def test_mixing_switches_off_at_epoch():
    mixer = BatchMixer(C, mixup_alpha=0.1, until_epoch=25)
    assert mixer.active(0) and mixer.active(24)
    assert not mixer.active(25) and not mixer.active(35)
    assert not BatchMixer(C).active(0)  # nothing configured: never mixes


def test_a_run_shorter_than_the_mixing_window_gets_one_line():
    mixer = BatchMixer(C, mixup_alpha=0.1, until_epoch=25)
    assert mixer.schedule_warning(10) == (
        "model.mix_until_epoch (25) is beyond trainer.max_epochs (10): "
        "mixing never switches off in this run")
    assert mixer.schedule_warning(25) is None  # epochs 0-24 mixed, then the run ends
    assert mixer.schedule_warning(-1) is None  # -1: no epoch limit
    assert BatchMixer(C, mixup_alpha=0.1).schedule_warning(10) is None


def test_cutmix_lambda_is_pasted_area_fraction():
    torch.manual_seed(0)
    images = torch.zeros(8, 3, 32, 32)
    images[::2] = 1.0  # neighbours differ, so the pasted area is countable
    labels = torch.tensor([0, 1] * 4)
    mixed, soft = BatchMixer(C, cutmix_alpha=1.0)(images, labels)
    # Each image pasted from its neighbour: the changed-pixel fraction is 1 - lambda.
    changed = (mixed != images).float().mean(dim=(1, 2, 3))
    own = soft[torch.arange(8), labels]
    torch.testing.assert_close(1 - changed, own)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(8))


def test_both_mixers_pick_per_batch():
    torch.manual_seed(0)
    mixer = BatchMixer(C, mixup_alpha=0.2, cutmix_alpha=1.0, cutmix_prob=0.5)
    images, labels = torch.rand(4, 3, 32, 32), torch.arange(4)
    kinds = set()
    for _ in range(20):
        mixed, _ = mixer(images, labels)
        # cutmix keeps some pixels exactly; mixup (lambda < 1) changes every pixel
        kinds.add(bool((mixed == images).any()))
    assert kinds == {True, False}


def _lr_momentum(scheduler_class, steps, **kwargs):
    """(lr, momentum) the optimizer trains each of ``steps`` steps with."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01, momentum=0.9)
    scheduler = scheduler_class(optimizer, 0.2, pct_start=0.25, **kwargs)
    used = []
    for _ in range(steps):
        used.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]))
        optimizer.step()
        scheduler.step()
    return used


def test_one_cycle_then_hold_without_hold_is_one_cycle():
    cycle = torch.optim.lr_scheduler.OneCycleLR
    assert _lr_momentum(OneCycleThenHold, 100, total_steps=100) == \
        _lr_momentum(cycle, 100, total_steps=100)


def test_one_cycle_then_hold_runs_the_cycle_then_holds_its_end():
    held = _lr_momentum(OneCycleThenHold, 100, total_steps=100, hold=0.25,
                        final_div_factor=4.0)
    cycle = _lr_momentum(torch.optim.lr_scheduler.OneCycleLR, 75, total_steps=75,
                         final_div_factor=4.0)
    assert held[:75] == cycle  # the cycle over the first three quarters
    end = (0.2 / 25 / 4, 0.95)  # start LR / final_div_factor; momentum back at its maximum
    assert all(step == pytest.approx(end) for step in held[74:]), held[74:]


@pytest.mark.parametrize("hold", [-0.1, 1.0])
def test_one_cycle_hold_outside_0_1_is_a_clear_error(hold):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    with pytest.raises(UserError, match=r"model\.scheduler\.init_args\.hold is "):
        OneCycleThenHold(optimizer, 0.2, total_steps=100, hold=hold)

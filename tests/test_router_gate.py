"""Router gates (issue 34: ``router_gate``), and the routed block's fewer-operator forms
(issue 37) computing what the plain forms computed."""

import pytest
import torch
from torch import nn

from cifar_moe.core.errors import UserError
from cifar_moe.models import ExpertConv2d, MoENet, Router
from cifar_moe.models.router import BatchStandardize, RouterSettings, find_routers


def _router(gate: str) -> Router:
    torch.manual_seed(0)
    return Router(16, num_experts=4, zero_init=False, gate=gate)


def test_top1_forward_weights_are_the_one_hot_of_the_soft_argmax():
    x = torch.randn(32, 16, 4, 4)
    soft, top1 = _router("soft"), _router("top1")
    top1.load_state_dict(soft.state_dict())
    y_soft, y_hard = soft(x), top1(x)
    expected = torch.nn.functional.one_hot(y_soft.argmax(dim=1), 4).float()
    assert torch.allclose(y_hard, expected, atol=1e-6)
    assert len(set(y_soft.argmax(dim=1).tolist())) > 1  # not one expert for every image


def test_top1_gradients_are_the_softmax_gradients_and_reach_the_router():
    x = torch.randn(32, 16, 4, 4)
    probe = torch.randn(32, 4)  # any downstream use of the weights
    grads = {}
    for gate in ("soft", "top1"):
        router = _router(gate)
        (router(x) * probe).sum().backward()
        grads[gate] = [p.grad.clone() for p in router.parameters()]
    assert all(g.abs().sum() > 0 for g in grads["top1"])
    for soft, hard in zip(grads["soft"], grads["top1"], strict=True):
        assert torch.allclose(soft, hard, atol=1e-6)  # straight-through: softmax's gradient


def test_soft_gate_is_the_default_and_unchanged():
    torch.manual_seed(0)
    router = Router(16, num_experts=4, zero_init=False)
    x = torch.randn(8, 16, 4, 4)
    expected = torch.softmax(router.mlp(x.mean(dim=(2, 3))) / router.tau, dim=-1)
    assert router.gate == "soft" and RouterSettings().gate == "soft"
    assert torch.allclose(router(x), expected)


def test_moenet_router_gate_reaches_every_router():
    net = MoENet(stem_width=8, widths=[8, 16], pool_after=[0, 1], router_gate="top1")
    assert [r.gate for r in find_routers(net)] == ["top1", "top1"]
    for r in find_routers(net):
        r.record = True
    net(torch.randn(4, 3, 32, 32))
    weights = [r.last_weights for r in find_routers(net)]
    assert all(torch.allclose(w.max(dim=1).values, torch.ones(4), atol=1e-6) for w in weights)


def test_unknown_gate_is_one_line_naming_the_valid_ones():
    with pytest.raises(UserError) as err:
        MoENet(router_gate="top2")
    assert str(err.value).count("\n") == 0
    assert "router_gate" in str(err.value) and "soft, top1" in str(err.value)


@pytest.mark.parametrize("train", [True, False])
def test_batch_standardize_equals_batchnorm1d_without_affine(train):
    ours, theirs = BatchStandardize(6), nn.BatchNorm1d(6, affine=False)
    ours.train(train), theirs.train(train)
    for _ in range(3):  # running statistics updated alike, then used alike
        x = torch.randn(16, 6) * 3 + 1
        assert torch.allclose(ours(x), theirs(x), atol=1e-6)
    assert torch.allclose(ours.running_mean, theirs.running_mean)
    assert torch.allclose(ours.running_var, theirs.running_var)


def test_mixture_in_channels_last_equals_contiguous_with_gradients():
    torch.manual_seed(0)
    conv = ExpertConv2d(8, 12, num_experts=3, impl="mixture").double()
    x = torch.randn(4, 8, 6, 6, dtype=torch.float64)
    a = torch.softmax(torch.randn(4, 3, dtype=torch.float64), dim=1)
    results = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        conv.zero_grad()
        xi = x.clone().contiguous(memory_format=fmt).requires_grad_()
        ai = a.clone().requires_grad_()
        out = conv(xi, ai)
        out.pow(2).sum().backward()
        results.append((out.detach(), xi.grad, ai.grad, conv.weight.grad.clone()))
    for first, second in zip(*results, strict=True):
        assert torch.allclose(first, second)

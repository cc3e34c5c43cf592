"""Unit tier for the network: shapes, gradients, router behaviour, implementation equivalence."""

import pytest
import torch
import torch.nn.functional as F

from cifar_moe.errors import UserError
from cifar_moe.models import ExpertConv2d, MoENet, PlainExpertBlock, ResidualExpertBlock, Router
from cifar_moe.models.presets import build_net

PRESETS = {
    "seed_a": {},
    "seed_b": {},
    "k1_control": {"num_experts": 1},
}
PRESET_NAMES = {"seed_a": "seed_a", "seed_b": "seed_b", "k1_control": "seed_b"}

# The README's table states these; a change of preset must change both.
PARAMETERS = {"seed_a": 5_294_650, "seed_b": 19_831_810, "k1_control": 6_184_746,
              "resnet18": 11_173_962}


def _build(name, **kw):
    if name == "resnet18":
        return build_net("resnet18", **kw)
    return build_net(PRESET_NAMES[name], **PRESETS[name], **kw)


@pytest.mark.parametrize("name", [*PRESETS, "resnet18"])
def test_preset_shape_and_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    net = _build(name, num_classes=7)
    logits = net(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, 7) and torch.isfinite(logits).all()
    logits.square().sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


@pytest.mark.parametrize("name", list(PARAMETERS))
def test_parameter_counts_match_readme(name):
    assert sum(p.numel() for p in _build(name).parameters()) == PARAMETERS[name]


def test_router_rows_are_per_sample_distributions():
    torch.manual_seed(0)
    router = Router(16, num_experts=4, reduction=4)
    x = torch.randn(2, 16, 8, 8)
    x[1] = -3 * x[1] + 1  # a very different second sample
    w = router(x)
    assert w.shape == (2, 4) and (w > 0).all()
    torch.testing.assert_close(w.sum(dim=1), torch.ones(2))
    assert not torch.allclose(w[0], w[1])


def test_router_temperature_changes_sharpness():
    torch.manual_seed(0)
    router = Router(16, num_experts=4)
    x = torch.randn(8, 16, 4, 4)
    sharp_max = (router.tau, router(x).max(dim=1).values)
    router.tau = 30.0
    flat = router(x)
    router.tau = 0.1
    sharp = router(x)
    assert (flat.max(dim=1).values < sharp_max[1]).all()
    assert (sharp.max(dim=1).values > sharp_max[1]).all()
    assert (flat.max(dim=1).values - 0.25 < 0.05).all()  # near uniform at tau 30


def test_k1_router_is_a_parameter_free_no_op():
    router = Router(16, num_experts=1)
    assert not list(router.parameters())
    assert torch.equal(router(torch.randn(3, 16, 4, 4)), torch.ones(3, 1))


@pytest.mark.parametrize("impl", ["mixture", "aggregate"])
def test_k1_expert_conv_equals_plain_conv(impl):
    conv = ExpertConv2d(5, 6, num_experts=1, impl=impl)
    x = torch.randn(3, 5, 9, 9)
    torch.testing.assert_close(conv(x, torch.ones(3, 1)), F.conv2d(x, conv.weight, padding=1))


def test_experts_are_initialised_independently():
    conv = ExpertConv2d(8, 8, num_experts=4)
    experts = conv.weight.detach().chunk(4, dim=0)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(experts[i], experts[j])


def _grads(module, x, routing=None):
    module.zero_grad()
    x = x.clone().requires_grad_(True)
    out = module(x) if routing is None else module(x, routing)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return out.detach(), x.grad, {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("batch", [1, 5, 8])
def test_implementations_agree_on_the_expert_conv(batch):
    torch.manual_seed(batch)
    conv = ExpertConv2d(6, 7, num_experts=3).double()
    x = torch.randn(batch, 6, 10, 10, dtype=torch.float64)
    logits = torch.randn(batch, 3, dtype=torch.float64, requires_grad=True)
    results = {}
    for impl in ("mixture", "aggregate"):
        conv.impl = impl
        logits.grad = None
        out, gx, gp = _grads(conv, x, logits.softmax(dim=1))
        results[impl] = (out, gx, gp["weight"], logits.grad.clone())
    for a, b in zip(results["mixture"], results["aggregate"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("block_cls", [PlainExpertBlock, ResidualExpertBlock])
@pytest.mark.parametrize(("train", "batch"), [(True, 5), (False, 1), (False, 5)])
def test_implementations_agree_in_blocks(block_cls, train, batch):
    torch.manual_seed(0)
    block = block_cls(8, 12, num_experts=3, dropout=0.0).double().train(train)
    x = torch.randn(batch, 8, 6, 6, dtype=torch.float64)
    mixture = _grads(block, x)
    block.experts.impl = "aggregate"
    aggregate = _grads(block, x)
    torch.testing.assert_close(mixture[0], aggregate[0], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(mixture[1], aggregate[1], atol=1e-10, rtol=1e-10)
    for name, grad in mixture[2].items():
        torch.testing.assert_close(grad, aggregate[2][name], atol=1e-10, rtol=1e-10)


def test_implementations_agree_in_a_whole_network():
    torch.manual_seed(0)
    net = MoENet(stem_width=8, widths=[8, 16, 16], pool_after=[0, 1], num_experts=3,
                 block="residual").double().eval()
    x = torch.randn(5, 3, 16, 16, dtype=torch.float64)
    expected = net(x)
    torch.testing.assert_close(net.set_impl("aggregate")(x), expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"num_experts": 0}, "num_experts"),
        ({"widths": []}, "widths"),
        ({"pool_after": [7]}, "pool_after"),
        ({"block": "dense"}, "block"),
        ({"impl": "fast"}, "impl"),
        ({"block_dropout": 1.0}, "block_dropout"),
    ],
)
def test_bad_network_arguments_are_one_line_errors(kwargs, setting):
    with pytest.raises(UserError, match=rf"model\.net\.init_args\.{setting} is"):
        MoENet(**kwargs)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(UserError, match="seed_a, seed_b, resnet18"):
        build_net("seed_c")

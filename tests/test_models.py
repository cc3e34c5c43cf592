"""Unit tier for the network: presets, shapes, gradients, router, init, argument checks.

The expert conv's weights (init, spread, shared experts) are tested in
``test_expert_weights.py``; its two implementations are compared in ``test_models_impls.py``.
"""

import pytest
import torch
import yaml

from cifar_moe.core.errors import UserError
from cifar_moe.models import ExpertConv2d, MoENet, Router
from cifar_moe.models.presets import PRESET_DIR, available_presets, build_net
from cifar_moe.models.router import find_routers

PRESETS = ["resnet18", "seed_a", "seed_b", "slice", "slice_v1", "slice_v2"]
# Every network the README tabulates; the K=1 control is seed_b with one expert, an
# override (configs/controls/k1.yaml), so its numbers are never typed twice.
NETS = {"seed_a": {}, "seed_b": {}, "k1_control": {"num_experts": 1}, "resnet18": {},
        "slice": {}, "slice_v1": {}, "slice_v2": {}}

# The README's table states these; a change of preset must change both.
PARAMETERS = {"seed_a": 5_294_638, "seed_b": 19_831_786, "k1_control": 6_184_746,
              "resnet18": 11_173_962, "slice": 3_169_026, "slice_v1": 1_872_058,
              "slice_v2": 4_365_250}


def test_every_preset_is_covered():
    assert sorted(PRESETS) == available_presets()


def _net(name, **kw):
    return build_net("seed_b" if name == "k1_control" else name, **NETS[name], **kw)


@pytest.mark.parametrize("name", NETS)
def test_preset_shape_and_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    net = _net(name, num_classes=7)
    x = torch.randn(3, 3, 32, 32)
    logits = net(x)
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    # Routers start with a zeroed last layer, so their first layer gets gradient from the
    # second step on: take one step, then check every parameter.
    logits.square().sum().backward()
    torch.optim.SGD(net.parameters(), lr=0.01).step()
    net.zero_grad()
    net(x).square().sum().backward()
    # A frozen parameter (the whitening stem's filters, set from the data) takes none.
    missing = [n for n, p in net.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not missing


@pytest.mark.parametrize("name", NETS)
def test_parameter_counts_match_readme(name):
    assert sum(p.numel() for p in _net(name).parameters()) == PARAMETERS[name]


def test_k1_control_has_no_routing():
    net = _net("k1_control")
    routers = [m for m in net.modules() if isinstance(m, Router)]
    assert len(routers) == 6 and not any(r.mlp for r in routers) and not find_routers(net)


def test_presets_leave_num_classes_to_the_data_module():
    for name in PRESETS:
        spec = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())
        assert "num_classes" not in (spec.get("init_args") or {})


def test_router_rows_are_per_sample_distributions():
    torch.manual_seed(0)
    router = Router(16, num_experts=4, reduction=4, zero_init=False)
    x = torch.randn(2, 16, 8, 8)
    x[1] = -3 * x[1] + 1  # a very different second sample
    w = router(x)
    assert w.shape == (2, 4) and (w > 0).all()
    torch.testing.assert_close(w.sum(dim=1), torch.ones(2))
    assert not torch.allclose(w[0], w[1])


def test_router_temperature_changes_sharpness():
    torch.manual_seed(0)
    router = Router(16, num_experts=4, zero_init=False)
    x = torch.randn(8, 16, 4, 4)
    base = router(x).max(dim=1).values
    router.tau = 30.0
    flat = router(x).max(dim=1).values
    router.tau = 0.1
    sharp = router(x).max(dim=1).values
    assert (flat < base).all() and (sharp > base).all()
    assert (flat - 0.25 < 0.05).all()  # near uniform at tau 30


def test_router_records_only_when_asked():
    router = Router(16, num_experts=3)
    x = torch.randn(4, 16, 4, 4)
    router(x)
    assert router.last_weights is None
    router.record = True
    w = router(x)
    assert torch.equal(router.last_weights, w) and not router.last_weights.requires_grad


def test_k1_router_is_a_parameter_free_no_op():
    router = Router(16, num_experts=1)
    assert not list(router.parameters())
    assert torch.equal(router(torch.randn(3, 16, 4, 4)), torch.ones(3, 1))


def test_find_routers_reaches_every_routed_block_in_order():
    net = build_net("seed_b")
    routers = find_routers(net)
    assert len(routers) == 6 and [r.num_experts for r in routers] == [4] * 6
    assert routers[0] is net.blocks[0].router and not find_routers(build_net("resnet18"))


def test_routed_blocks_route_only_those_blocks():
    kw = {"widths": [8, 16, 16], "pool_after": [0, 1], "expert_shared": True,
          "expert_init_spread": 0.1}
    torch.manual_seed(0)
    net = MoENet(routed_blocks=[0, 2], **kw)
    blocks = [m for m in net.blocks if hasattr(m, "router")]
    assert [b.experts.num_experts for b in blocks] == [2, 1, 2]
    assert find_routers(net) == [blocks[0].router, blocks[2].router]
    # Every parameter still learns (the static block has a plain kernel, no router).
    x = torch.randn(3, 3, 32, 32)
    net(x).square().sum().backward()
    torch.optim.SGD(net.parameters(), lr=0.01).step()
    net.zero_grad()
    net(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() for p in net.parameters())
    # None routes every block and draws exactly what listing every block draws.
    torch.manual_seed(0)
    every = MoENet(routed_blocks=[0, 1, 2], **kw).state_dict()
    torch.manual_seed(0)
    default = MoENet(**kw).state_dict()
    assert every.keys() == default.keys()
    assert all(torch.equal(every[k], default[k]) for k in every)


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"num_experts": 0}, "num_experts"),
        ({"widths": []}, "widths"),
        ({"pool_after": [6]}, "pool_after"),
        ({"pool_after": [-1]}, "pool_after"),
        ({"widths": [8] * 6, "pool_after": [0, 1, 2, 3, 4, 5]}, "pool_after"),  # 32 -> 0
        ({"block": "dense"}, "block"),
        ({"impl": "fast"}, "impl"),
        ({"block_dropout": 1.0}, "block_dropout"),
        ({"classifier_dropout": -0.1}, "classifier_dropout"),
        ({"reduction": 0}, "reduction"),
        ({"bottleneck_ratio": 0}, "bottleneck_ratio"),
        ({"num_classes": 0}, "num_classes"),
        ({"expert_init_spread": 0.0}, "expert_init_spread"),
        ({"expert_init_spread": 1.5}, "expert_init_spread"),
        ({"routed_blocks": []}, "routed_blocks"),
        ({"routed_blocks": [3]}, "routed_blocks"),
    ],
)
def test_bad_network_arguments_are_one_line_errors(kwargs, setting):
    with pytest.raises(UserError, match=rf"model\.net\.init_args\.{setting} is") as info:
        MoENet(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_impl_after_construction_is_a_user_error():
    with pytest.raises(UserError, match="impl is 'fast'"):
        ExpertConv2d(4, 4, num_experts=2).impl = "fast"


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(UserError, match="resnet18, seed_a, seed_b"):
        build_net("seed_c")

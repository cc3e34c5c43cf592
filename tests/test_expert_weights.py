"""Unit tier for the expert conv's weights: each expert's init, the init spread between
experts, shared experts, and K = 1 as a plain conv."""

import pytest
import torch
import torch.nn.functional as F

from cifar_moe.models import ExpertConv2d
from cifar_moe.models.presets import build_net


@pytest.mark.parametrize("name", ["seed_a", "seed_b"])
def test_every_expert_is_initialised_independently(name):
    convs = [m for m in build_net(name).modules() if isinstance(m, ExpertConv2d)]
    assert convs
    for conv in convs:
        experts = conv.weight.detach().chunk(conv.num_experts, dim=0)
        for i in range(len(experts)):
            for j in range(i + 1, len(experts)):
                assert not torch.equal(experts[i], experts[j])


def test_expert_init_uses_the_fan_of_one_expert():
    torch.manual_seed(0)
    conv = ExpertConv2d(64, 64, num_experts=4)
    # He fan_out for one expert: std = sqrt(2 / (C_out * 3 * 3)); over K * C_out it would halve.
    expected = (2 / (64 * 9)) ** 0.5
    for expert in conv.weight.detach().chunk(4, dim=0):
        assert expert.std().item() == pytest.approx(expected, rel=0.05)


def test_init_spread_one_draws_the_experts_as_before():
    # The default must not move the random stream: seeded runs stay reproducible.
    torch.manual_seed(0)
    conv = ExpertConv2d(8, 16, num_experts=2)
    torch.manual_seed(0)
    expected = torch.empty(32, 8, 3, 3)
    for expert in expected.chunk(2, dim=0):
        torch.nn.init.kaiming_normal_(expert, mode="fan_out", nonlinearity="relu")
    assert torch.equal(conv.weight.detach(), expected)
    # K = 1 has nothing to spread: the static control draws the same kernel at any spread.
    torch.manual_seed(0)
    single = ExpertConv2d(8, 16, num_experts=1, init_spread=0.1).weight.detach()
    assert torch.equal(single, expected[:16])


@pytest.mark.parametrize("spread", [0.1, 0.5])
def test_init_spread_sets_how_far_experts_start_apart(spread):
    torch.manual_seed(0)
    conv = ExpertConv2d(64, 64, num_experts=4, init_spread=spread)
    experts = conv.weight.detach().chunk(4, dim=0)
    he_std = (2 / (64 * 9)) ** 0.5
    # The uniform mixture starts at the scale independent experts give it (He / sqrt(K)),
    # so the spread changes how alike the experts are, not the effective learning rate.
    assert sum(experts).div(4).std().item() == pytest.approx(he_std / 2, rel=0.05)
    gain = (0.25 / (1 - spread**2 + spread**2 / 4)) ** 0.5
    for i, expert in enumerate(experts):
        for other in experts[i + 1:]:
            apart = (expert - other).std().item()
            assert apart == pytest.approx(spread * gain * 2**0.5 * he_std, rel=0.05)


@pytest.mark.parametrize("impl", ["mixture", "aggregate"])
def test_shared_experts_are_the_same_function_with_the_whole_gradient_on_the_shared_kernel(
        impl):
    torch.manual_seed(0)
    shared = ExpertConv2d(6, 8, num_experts=3, impl=impl, init_spread=0.3, shared=True).double()
    assert shared.shared_weight.abs().sum() > 0 and shared.weight.abs().sum() > 0
    plain = ExpertConv2d(6, 8, num_experts=3, impl=impl).double()
    plain.weight.data.copy_(shared.expert_weights().detach())
    convs = [plain, shared]
    x = torch.randn(4, 6, 8, 8, dtype=torch.float64)
    weights = torch.softmax(torch.randn(4, 3, dtype=torch.float64), dim=-1)
    outs = [conv(x, weights) for conv in convs]
    torch.testing.assert_close(outs[1], outs[0])
    for out in outs:
        out.square().sum().backward()
    # d/dS of W_k = S + V_k is the sum of the experts' gradients: every sample reaches S.
    torch.testing.assert_close(shared.weight.grad, plain.weight.grad)
    torch.testing.assert_close(shared.shared_weight.grad, sum(plain.weight.grad.chunk(3)))


def test_expert_spread_is_zero_for_copies_and_about_one_for_independent_experts():
    torch.manual_seed(0)
    conv = ExpertConv2d(32, 32, num_experts=2, shared=True)
    assert conv.spread().item() == pytest.approx(1.0, abs=0.05)  # independent draws
    conv.weight.data.zero_()  # only the shared kernel is left: K identical experts
    conv.shared_weight.data.normal_()
    assert conv.spread().item() == 0.0
    # Spread s at K = 2: W_k - mean is s (E_1 - E_2) / 2 against a mean of about unit size.
    assert ExpertConv2d(32, 32, num_experts=2, init_spread=0.1).spread().item() == \
        pytest.approx(0.1 / 2**0.5, rel=0.1)


@pytest.mark.parametrize("impl", ["mixture", "aggregate", "auto"])
def test_k1_expert_conv_equals_plain_conv(impl):
    conv = ExpertConv2d(5, 6, num_experts=1, impl=impl)
    x = torch.randn(3, 5, 9, 9)
    torch.testing.assert_close(conv(x, torch.ones(3, 1)), F.conv2d(x, conv.weight, padding=1))

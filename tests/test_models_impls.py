"""The expert-conv implementations compute one function: outputs and gradients in float64.

Compared w.r.t. the input, the expert weights and the routing weights, for a lone
``ExpertConv2d``, for both blocks and for a whole network, in train and eval mode, at batch
sizes 1 and 5 (odd, so no implementation can lean on an even split).
"""

import pytest
import torch

from cifar_moe.models import ExpertConv2d, MoENet, PlainExpertBlock, ResidualExpertBlock
from cifar_moe.models.expert_conv import AUTO_MIN_PIXELS

TIGHT = {"atol": 1e-10, "rtol": 1e-10}
OTHERS = ["aggregate", "auto"]  # each compared against "mixture"


def _run(module, x, routing=None, seed=0):
    """Output, input gradient and parameter gradients of a fixed weighted sum of the output."""
    module.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)  # identical dropout masks for every implementation
    out = module(x) if routing is None else module(x, routing)
    probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    (out * probe).sum().backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return out.detach(), x.grad, grads


def _assert_same(a, b):
    torch.testing.assert_close(a[0], b[0], **TIGHT)
    torch.testing.assert_close(a[1], b[1], **TIGHT)
    assert a[2].keys() == b[2].keys()
    for name, grad in a[2].items():
        torch.testing.assert_close(grad, b[2][name], **TIGHT, msg=name)


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize(("batch", "size"), [(1, 10), (5, 10), (8, 10), (5, 16)])
def test_expert_conv_agrees_including_routing_gradients(other, batch, size):
    torch.manual_seed(batch)
    conv = ExpertConv2d(6, 7, num_experts=3).double()
    x = torch.randn(batch, 6, size, size, dtype=torch.float64)
    logits = torch.randn(batch, 3, dtype=torch.float64, requires_grad=True)
    results = {}
    for impl in ("mixture", other):
        conv.impl = impl
        logits.grad = None
        results[impl] = (*_run(conv, x, logits.softmax(dim=1)), logits.grad.clone())
    _assert_same(results["mixture"], results[other])
    torch.testing.assert_close(results["mixture"][3], results[other][3], **TIGHT)


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize("block_cls", [PlainExpertBlock, ResidualExpertBlock])
@pytest.mark.parametrize(("train", "batch"), [(True, 1), (True, 5), (False, 1), (False, 5)])
def test_blocks_agree(other, block_cls, train, batch):
    torch.manual_seed(0)
    block = block_cls(8, 12, num_experts=3, dropout=0.2).double().train(train)
    x = torch.randn(batch, 8, 16, 16, dtype=torch.float64)
    mixture = _run(block, x)
    block.experts.impl = other
    _assert_same(mixture, _run(block, x))


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize(("train", "batch"), [(True, 5), (False, 1), (False, 5)])
def test_whole_networks_agree(other, train, batch):
    torch.manual_seed(0)
    net = MoENet(stem_width=8, widths=[8, 16, 16], pool_after=[0, 1], num_experts=3,
                 block="residual", block_dropout=0.1, classifier_dropout=0.1, impl="mixture")
    net = net.double().train(train)
    x = torch.randn(batch, 3, 32, 32, dtype=torch.float64)
    mixture = _run(net, x)
    twin = MoENet(stem_width=8, widths=[8, 16, 16], pool_after=[0, 1], num_experts=3,
                  block="residual", block_dropout=0.1, classifier_dropout=0.1, impl=other)
    twin = twin.double().train(train)
    twin.load_state_dict(net.state_dict())  # one parameter layout for every implementation
    _assert_same(mixture, _run(twin, x))


@pytest.mark.parametrize(
    ("size", "device", "expected"),
    [(15, "cpu", "_mixture"), (16, "cpu", "_aggregate"), (16, "meta", "_mixture")],
)
def test_auto_picks_by_pixels_and_device(size, device, expected, monkeypatch):
    assert 15 * 15 < AUTO_MIN_PIXELS <= 16 * 16
    conv = ExpertConv2d(4, 4, num_experts=2, impl="auto")
    called = []
    for name in ("_mixture", "_aggregate"):
        monkeypatch.setattr(conv, name, lambda x, r, w, name=name: called.append(name) or x)
    # "meta" stands in for a GPU: any device but the CPU takes the mixture path.
    conv(torch.empty(2, 4, size, size, device=device), torch.full((2, 2), 0.5, device=device))
    assert called == [expected]

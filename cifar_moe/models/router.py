"""The router: per-sample expert weights from the block input."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cifar_moe.routing.stats import balance_penalty


def find_routers(module: nn.Module) -> list["Router"]:
    """Routers that actually route (K > 1), in forward order."""
    return [m for m in module.modules() if isinstance(m, Router) and m.num_experts > 1]


class Router(nn.Module):
    """GAP -> [BatchNorm] -> Linear(C, C // r) -> ReLU -> Linear(C // r, K) -> [BatchNorm]
    -> softmax(z / tau).

    Weights are per sample, (B, K), and never averaged over the batch. ``tau`` is a plain
    attribute so a schedule can anneal it. With K = 1 the router is a no-op with no
    parameters (it returns ones), which makes the K = 1 control a static conv net.

    Why the defaults (``benchmarks/routing_diagnostics.py`` measures all three): the pooled
    input of a block is post-ReLU, so every image shares a large positive mean, and with
    He init the logits' shared part outweighs their image-dependent part 2-4x. Each router
    starts with the same preference for every image, the preferred expert gets most of the
    gradient, and the preference feeds itself until the other experts are dead.
    ``input_norm`` standardises each pooled channel over the batch, so the MLP sees how an
    image differs from the others; ``logit_norm`` standardises each expert's logit over the
    batch, so no expert is preferred for all images alike and the scale cannot run away
    (softmax stays soft and every expert keeps a gradient); ``zero_init`` starts exactly
    uniform. The old behaviour is ``input_norm=zero_init=logit_norm=False``.

    Args:
        in_channels: channels of the block input it pools.
        num_experts: K, the number of experts it weighs.
        reduction: r, the bottleneck ratio of its MLP.
        tau: softmax temperature; above 1 flattens, below 1 sharpens.
        input_norm: standardise the pooled input per channel (BatchNorm1d, no affine).
        zero_init: zero the last layer, so routing starts uniform (1/K for every sample).
        logit_norm: standardise each expert's logit over the batch (BatchNorm1d, no affine,
            running statistics in eval): no expert is preferred for every image alike, and
            the logits' scale cannot run away, so the softmax stays soft.
        aux_kind: regulariser on each training batch's weights (``balance_penalty`` kinds).
        aux_weight: its weight in the loss; 0 turns it off.
    """

    def __init__(self, in_channels: int, num_experts: int, reduction: int = 4, tau: float = 1.0,
                 input_norm: bool = True, zero_init: bool = True, logit_norm: bool = True,
                 aux_kind: str = "entropy", aux_weight: float = 0.0):
        super().__init__()
        self.zero_init = zero_init
        self.aux_kind, self.aux_weight = aux_kind, aux_weight
        # The weighted regulariser of the last training forward, with its graph; the
        # network's ``aux_loss()`` collects and clears it.
        self.aux_loss: Tensor | None = None
        self.num_experts = num_experts
        # A buffer, so a checkpoint taken mid-anneal evaluates at the temperature it had.
        self.register_buffer("_tau", torch.tensor(float(tau)))
        # Off unless a callback asks, so it costs nothing.
        self.record = False  # keep the latest (B, K) weights, detached, for analytics
        self.last_weights: Tensor | None = None
        self.mlp = None
        if num_experts > 1:
            hidden = max(in_channels // reduction, 1)
            norm = BatchStandardize(in_channels) if input_norm else nn.Identity()
            self.mlp = nn.Sequential(
                norm,
                nn.Linear(in_channels, hidden),
                nn.ReLU(inplace=True),
                # Standardised logits make a bias a no-op (its gradient is exactly 0).
                nn.Linear(hidden, num_experts, bias=not logit_norm),
                BatchStandardize(num_experts) if logit_norm else nn.Identity(),
            )
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """He init (fan_in) on the first layer; the last is zeroed when ``zero_init``."""
        if self.mlp is None:
            return
        first, last = self.mlp[1], self.mlp[3]  # mlp: norm, linear, relu, linear, norm
        nn.init.kaiming_normal_(first.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(first.bias)
        if self.zero_init:
            nn.init.zeros_(last.weight)
        else:
            nn.init.kaiming_normal_(last.weight, mode="fan_in", nonlinearity="relu")
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    @property
    def tau(self) -> float:
        return float(self._tau)

    @tau.setter
    def tau(self, value: float) -> None:
        self._tau.fill_(float(value))

    def forward(self, x: Tensor) -> Tensor:
        if self.mlp is None:
            weights = x.new_ones(x.shape[0], 1)
        else:
            logits = self.mlp(x.mean(dim=(2, 3)))  # (B, K)
            weights = F.softmax(logits.float() / self._tau, dim=-1).to(x.dtype)
        if self.record:
            self.last_weights = weights.detach()
        if self.training and self.aux_weight > 0 and self.mlp is not None:
            self.aux_loss = self.aux_weight * balance_penalty(weights.float(), self.aux_kind)
        return weights

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, tau={self.tau}"


class BatchStandardize(nn.BatchNorm1d):
    """BatchNorm1d without affine parameters that also trains on a batch of one image.

    A single-image training batch has no spread to standardise by, so it uses the running
    statistics, as evaluation does.

    Args:
        num_features: features of the (B, F) input.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, affine=False)

    def forward(self, x: Tensor) -> Tensor:  # (B, F)
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, eps=self.eps)
        return super().forward(x)

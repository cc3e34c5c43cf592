"""The router: per-sample expert weights from the block input."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Router(nn.Module):
    """Global average pool -> Linear(C, C // r) -> ReLU -> Linear(C // r, K) -> softmax(z / tau).

    Weights are per sample, (B, K), and never averaged over the batch. ``tau`` is a plain
    attribute so a schedule can anneal it. With K = 1 the router is a no-op with no
    parameters (it returns ones), which makes the K = 1 control a static conv net.

    Args:
        in_channels: channels of the block input it pools.
        num_experts: K, the number of experts it weighs.
        reduction: r, the bottleneck ratio of its MLP.
        tau: softmax temperature; above 1 flattens, below 1 sharpens.
    """

    def __init__(self, in_channels: int, num_experts: int, reduction: int = 4, tau: float = 1.0):
        super().__init__()
        self.num_experts = num_experts
        # A buffer, so a checkpoint taken mid-anneal evaluates at the temperature it had.
        self.register_buffer("_tau", torch.tensor(float(tau)))
        # Both flags are off unless a callback or regulariser asks, so they cost nothing.
        self.record = False  # keep the latest (B, K) weights, detached, for analytics
        self.keep_graph = False  # keep them with their graph, for a balance regulariser
        self.last_weights: Tensor | None = None
        self.live_weights: Tensor | None = None
        self.mlp = None
        if num_experts > 1:
            hidden = max(in_channels // reduction, 1)
            self.mlp = nn.Sequential(
                nn.Linear(in_channels, hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, num_experts),
            )

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
        if self.keep_graph:
            self.live_weights = weights
        return weights

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, tau={self.tau}"


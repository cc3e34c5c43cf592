"""The router: per-sample expert weights from the block input."""

from dataclasses import asdict, dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cifar_moe.core.errors import UserError
from cifar_moe.models.penalties import Penalty, balance_penalty, check_penalty

Gate = Literal["soft", "top1"]
GATES: tuple[str, ...] = get_args(Gate)


def check_gate(gate: str) -> None:
    """One line naming the valid gates for an unknown one."""
    if gate not in GATES:
        raise UserError(f"model.net.init_args.router_gate is {gate!r}; use one of "
                        f"{', '.join(GATES)}")


@dataclass(frozen=True)
class RouterSettings:
    """Every router setting a block passes on, typed once (``MoENet``'s ``router_*`` args).

    Args:
        reduction: r, the bottleneck ratio of the router MLP (hidden = C // r).
        tau: softmax temperature; above 1 flattens, below 1 sharpens.
        input_norm: standardise the pooled input per channel over the batch.
        zero_init: zero the last layer, so routing starts uniform.
        logit_norm: standardise each expert's logit over the batch.
        aux_kind: regulariser on each training batch's weights (``penalties.PENALTIES``).
        aux_weight: its weight in the loss; 0 turns it off.
        gate: ``soft`` (softmax weights) or ``top1`` (straight-through hard top-1).
    """

    reduction: int = 4
    tau: float = 1.0
    input_norm: bool = True
    zero_init: bool = True
    logit_norm: bool = True
    aux_kind: Penalty = "entropy"
    aux_weight: float = 0.0
    gate: Gate = "soft"

    def __post_init__(self) -> None:
        check_penalty(self.aux_kind)
        check_gate(self.gate)
        for ok, name, value, fix in (
            (self.reduction >= 1, "reduction", self.reduction, "use 1 or more"),
            (self.tau > 0, "router_tau", self.tau, "use a temperature above 0"),
            (self.aux_weight >= 0, "router_aux_weight", self.aux_weight, "use 0 (off) or more"),
        ):
            if not ok:
                raise UserError(f"model.net.init_args.{name} is {value!r}; {fix}")

    def router_kwargs(self) -> dict:
        """The keyword arguments of :class:`Router` (all but its sizes)."""
        return asdict(self)


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
        gate: ``soft``: the softmax weights. ``top1``: straight-through hard top-1, the
            one-hot of the softmax's argmax forward and the softmax's gradient backward.
    """

    def __init__(self, in_channels: int, num_experts: int, reduction: int = 4, tau: float = 1.0,
                 input_norm: bool = True, zero_init: bool = True, logit_norm: bool = True,
                 aux_kind: Penalty = "entropy", aux_weight: float = 0.0, gate: Gate = "soft"):
        super().__init__()
        check_penalty(aux_kind)
        check_gate(gate)
        self.gate = gate
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
            weights = gate_weights(self.mlp(x.mean(dim=(2, 3))), self._tau, self.gate, x.dtype)
        if self.record:
            self.last_weights = weights.detach()
        if self.training and self.aux_weight > 0 and self.mlp is not None:
            self.aux_loss = self.aux_weight * balance_penalty(weights.float(), self.aux_kind)
        return weights

    def extra_repr(self) -> str:
        gate = "" if self.gate == "soft" else f", gate={self.gate}"
        return f"num_experts={self.num_experts}, tau={self.tau}{gate}"


def gate_weights(logits: Tensor, tau: Tensor, gate: str, dtype: torch.dtype) -> Tensor:
    """(B, K) routing weights from (B, K) logits: softmax(logits / tau) in float32, or its
    straight-through top-1 (``y_hard - y_soft.detach() + y_soft``), cast to ``dtype``.

    Casts are skipped where the dtype already matches: each is a recorded operator.
    """
    if logits.dtype != torch.float32:
        logits = logits.float()
    weights = F.softmax(logits / tau, dim=-1)  # (B, K)
    if gate == "top1":
        hard = torch.zeros_like(weights).scatter_(-1, weights.argmax(dim=-1, keepdim=True), 1.0)
        weights = hard - weights.detach() + weights  # forward: one-hot; backward: softmax's
    return weights if weights.dtype == dtype else weights.to(dtype)


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
        if self.momentum is None:  # a cumulative average needs BatchNorm's step counter
            return super().forward(x)
        # BatchNorm1d's own arithmetic less its step counter (``num_batches_tracked``, read
        # only when momentum is None): one operator (a launch on a GPU) fewer per step.
        return F.batch_norm(x, self.running_mean, self.running_var, training=self.training,
                            momentum=self.momentum, eps=self.eps)
